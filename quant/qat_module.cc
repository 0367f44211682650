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

// Loops over fewer elements stay on one thread (OpenMP start-up costs more than they take).
constexpr int64_t kParallelGrain = 1 << 15;

// The input codes q = round(x / s) as float32 and max |q|: the input is q * s (the input
// quantizer's output, or a relu / pool of it).
Tensor codes_of(const Tensor& input, float s, float* max_abs) {
  const Tensor x = input.to(DType::kFloat32);
  Tensor codes = Tensor::empty(x.shape());
  const float* xv = x.data<float>();
  float* qv = codes.data<float>();
  const int64_t n = x.numel();
  float max_code = 0.0f;
#pragma omp parallel for schedule(static) reduction(max : max_code) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    qv[i] = std::nearbyint(xv[i] / s);
    max_code = std::max(max_code, std::fabs(qv[i]));
  }
  *max_abs = max_code;
  return codes;
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
  const bool tnn_kernel = runs_tnn_kernel();
  // Without a gradient to carry and with the output observer off, the fake-quant output below
  // would be computed only to be replaced by the kernel's: skip it (it has no side effects
  // then, as the scale TNN's kernel reads stays as it is).
  if (tnn_kernel && !(is_grad_enabled() && y.requires_grad()) &&
      !activation_post_process_->observer_enabled() &&
      !activation_post_process_->options().learnable_scale()) {
    return tnn_kernel_output(input);
  }
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
  if (!tnn_kernel) return out;
  Tensor exact = tnn_kernel_output(input);
  if (!is_grad_enabled() || !out.requires_grad()) return exact;
  // exact's value with out's gradient.
  return ops::add(out, ops::sub(exact, out).detach());
}

bool QatModule::runs_tnn_kernel() const {
  return qconfig_.target == Target::kTNN && input_quantizer_ && activation_post_process_ &&
         !is_training() && input_quantizer_->fake_quant_enabled() &&
         weight_fake_quant_->fake_quant_enabled() && activation_post_process_->fake_quant_enabled();
}

Tensor QatModule::tnn_kernel_output(const Tensor& input) const {
  NoGradGuard no_grad;
  const float s_in = input_quantizer_->scale().to_vector<float>().at(0);
  const float s_out = activation_post_process_->scale().to_vector<float>().at(0);
  const QParams weight_qparams = weight_fake_quant_->qparams();
  const FoldedWeights folded = fold();
  const Tensor weight_codes = quantize_weight(folded.weight, weight_qparams);
  const Tensor bias = folded.bias.defined()
                          ? int32_bias(folded.bias.to(DType::kFloat32), s_in, weight_qparams)
                          : Tensor();
  float input_max = 0.0f;
  const Tensor input_codes = codes_of(input, s_in, &input_max);
  // The exact int32 sums by float32 convs of the codes (quant::exact_accumulators, the
  // simulator's path); when no weight split keeps them within 2^24, float64 (exact to 2^53).
  Tensor acc = exact_accumulators(weight_codes, input_max, bias, [&](const Tensor& digit) {
    return accumulate(input_codes, digit);
  });
  if (!acc.defined()) acc = accumulate_float64(input_codes, weight_codes, bias);
  const Tensor codes = tnn_requantize_planes(acc, tnn_accumulator_scale(s_in, weight_qparams),
                                             s_out, options_.activation());
  Tensor out = Tensor::empty(codes.shape());
  const int8_t* cv = codes.data<int8_t>();
  float* ov = out.data<float>();
  const int64_t n = out.numel();
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) ov[i] = static_cast<float>(cv[i]) * s_out;
  return out;
}

Tensor QatModule::accumulate_float64(const Tensor& input_codes, const Tensor& weight_codes,
                                     const Tensor& bias_int32) const {
  const Tensor sums = accumulate(input_codes.to(DType::kFloat64), weight_codes.to(DType::kFloat64));
  Tensor acc = Tensor::empty(sums.shape(), DType::kInt32);
  const double* sv = sums.data<double>();
  int32_t* av = acc.data<int32_t>();
  const int64_t out_channels = weight_codes.size(0);
  const int64_t planes = sums.size(0) * out_channels, inner = sums.numel() / planes;
  const int32_t* b = bias_int32.defined() ? bias_int32.data<int32_t>() : nullptr;
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int32_t channel_bias = b ? b[plane % out_channels] : 0;
    for (int64_t i = plane * inner; i < (plane + 1) * inner; ++i)
      av[i] = static_cast<int32_t>(sv[i]) + channel_bias;
  }
  return acc;
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
