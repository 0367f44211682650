#include "quant/qat_module.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "quant/int8_arithmetic.h"

namespace qat::quant {
namespace {

// Calls fn(fq) for every FakeQuantize under root (root included).
template <class Fn>
void for_each_fake_quantize(nn::Module& root, Fn&& fn) {
  for (const auto& entry : root.named_modules()) {
    if (auto* fq = dynamic_cast<FakeQuantize*>(entry.second.get())) fn(*fq);
  }
}

}  // namespace

QatModule::QatModule(const QConfig& qconfig, const QatModuleOptions& options)
    : qconfig_(qconfig), options_(options) {
  qconfig_.validate();
  weight_fake_quant_ = register_module("weight_fake_quant", qconfig_.weight.make_fake_quantize());
  if (options_.quantize_output()) {
    activation_post_process_ =
        register_module("activation_post_process", qconfig_.activation.make_fake_quantize());
  }
}

Tensor QatModule::finish_output(const Tensor& y, const Tensor& input) {
  Tensor out = y;
  switch (options_.activation()) {
    case FusedActivation::kNone:
      break;
    case FusedActivation::kReLU:
      out = ops::relu(out);
      break;
    case FusedActivation::kReLU6:
      out = ops::relu6(out);
      break;
  }
  if (activation_post_process_) out = activation_post_process_->forward(out);
  if (!runs_tnn_kernel()) return out;
  Tensor exact = tnn_kernel_output(input);
  if (!is_grad_enabled() || !out.requires_grad()) return exact;
  // exact's value with out's gradient.
  return ops::add(out, ops::sub(exact, out).detach());
}

bool QatModule::runs_tnn_kernel() const {
  return qconfig_.target == Target::kTNN && input_quantizer_ && activation_post_process_ &&
         !is_training() && input_quantizer_->fake_quant_enabled() &&
         weight_fake_quant_->fake_quant_enabled() &&
         activation_post_process_->fake_quant_enabled();
}

Tensor QatModule::tnn_kernel_output(const Tensor& input) const {
  NoGradGuard no_grad;
  const float s_in = input_quantizer_->scale().to_vector<float>().at(0);
  const float s_out = activation_post_process_->scale().to_vector<float>().at(0);
  const QParams weight_qparams = weight_fake_quant_->qparams();
  const FoldedWeights folded = fold();
  const Tensor weight_codes = quantize_weight(folded.weight, weight_qparams).to(DType::kFloat32);

  // The input codes: the input is q * s_in (the input quantizer's output, or a relu / pool of
  // it), so q = round(x / s_in).
  const Tensor x = input.to(DType::kFloat32);
  Tensor input_codes = Tensor::empty(x.shape());
  const float* xv = x.data<float>();
  float* qv = input_codes.data<float>();
  float input_max = 0.0f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    qv[i] = std::nearbyint(xv[i] / s_in);
    input_max = std::max(input_max, std::fabs(qv[i]));
  }
  // Integer sums are exact in float32 while every partial sum stays within 2^24, which
  // max|q| * sum|w_q| over an output channel bounds, whatever order the kernel adds in;
  // beyond that, float64 (exact up to 2^53).
  const int64_t out_channels = weight_codes.size(0);
  const int64_t inner = weight_codes.numel() / out_channels;
  const float* w = weight_codes.data<float>();
  double weight_l1_max = 0.0;
  for (int64_t c = 0; c < out_channels; ++c) {
    double l1 = 0.0;
    for (int64_t i = c * inner; i < (c + 1) * inner; ++i) l1 += std::fabs(w[i]);
    weight_l1_max = std::max(weight_l1_max, l1);
  }
  const bool exact_in_float32 = input_max * weight_l1_max <= 16777216.0;
  const DType sum_dtype = exact_in_float32 ? DType::kFloat32 : DType::kFloat64;
  const Tensor sums = accumulate(input_codes.to(sum_dtype), weight_codes.to(sum_dtype))
                          .to(DType::kFloat64);

  Tensor acc = Tensor::empty(sums.shape(), DType::kInt32);
  const double* sv = sums.data<double>();
  int32_t* av = acc.data<int32_t>();
  const int64_t per_channel = sums.numel() / (sums.size(0) * out_channels);
  const Tensor bias = folded.bias.defined() ? int32_bias(folded.bias.to(DType::kFloat32), s_in,
                                                         weight_qparams)
                                            : Tensor();
  const int32_t* b = bias.defined() ? bias.data<int32_t>() : nullptr;
  for (int64_t i = 0; i < acc.numel(); ++i) {
    const int32_t channel_bias = b ? b[(i / per_channel) % out_channels] : 0;
    av[i] = static_cast<int32_t>(sv[i]) + channel_bias;
  }
  const Tensor codes = tnn_requantize(acc, tnn_accumulator_scale(s_in, weight_qparams), s_out,
                                      options_.activation());
  Tensor out = Tensor::empty(codes.shape());
  const int8_t* cv = codes.data<int8_t>();
  float* ov = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) ov[i] = static_cast<float>(cv[i]) * s_out;
  return out;
}

std::string QatModule::fused_type_name(const std::string& base, const std::string& suffix) const {
  switch (options_.activation()) {
    case FusedActivation::kReLU:
      return base + "ReLU" + suffix;
    case FusedActivation::kReLU6:
      return base + "ReLU6";
    case FusedActivation::kNone:
      break;
  }
  return base + suffix;
}

void enable_observer(nn::Module& root, bool enabled) {
  for_each_fake_quantize(root, [enabled](FakeQuantize& fq) { fq.enable_observer(enabled); });
}

void disable_observer(nn::Module& root) { enable_observer(root, false); }

void enable_fake_quant(nn::Module& root, bool enabled) {
  for_each_fake_quantize(root, [enabled](FakeQuantize& fq) { fq.enable_fake_quant(enabled); });
}

void disable_fake_quant(nn::Module& root) { enable_fake_quant(root, false); }

}  // namespace qat::quant
