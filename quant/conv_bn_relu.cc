#include "quant/conv_bn_relu.h"

#include <cmath>
#include <utility>

#include "core/autograd.h"
#include "core/ops/batch_norm.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"

namespace qat::quant {
namespace {

// sqrt(running_var + eps) in float32, as PyTorch computes torch.sqrt(bn.running_var + bn.eps):
// eps rounded to float32, a float32 add, a correctly rounded float32 sqrt.
Tensor running_std(const nn::BatchNorm2d& bn) {
  const float eps = static_cast<float>(bn.options.eps());
  Tensor out = Tensor::empty({bn.num_features});
  const float* var = bn.running_var.data<float>();
  float* std = out.data<float>();
  for (int64_t c = 0; c < bn.num_features; ++c) std[c] = std::sqrt(var[c] + eps);
  return out;
}

// 1 where s == 0 (gamma == 0), 0 elsewhere: [OC]; undefined when no channel has s == 0.
Tensor zero_scale_mask(const Tensor& scale_factor) {
  const float* s = scale_factor.data<float>();
  Tensor mask;
  for (int64_t c = 0; c < scale_factor.numel(); ++c) {
    if (s[c] != 0.0f) continue;
    if (!mask.defined()) mask = Tensor::zeros(scale_factor.shape());
    mask.data<float>()[c] = 1.0f;
  }
  return mask;
}

}  // namespace

ConvBn2d::ConvBn2d(std::shared_ptr<nn::Conv2d> conv, std::shared_ptr<nn::BatchNorm2d> bn,
                   const QConfig& qconfig, const QatModuleOptions& options)
    : QatModule(qconfig, options), conv_(std::move(conv)), bn_(std::move(bn)) {
  QAT_CHECK(conv_ != nullptr && bn_ != nullptr, "ConvBn2d: conv and bn must not be null");
  QAT_CHECK(bn_->options.affine() && bn_->options.track_running_stats(),
            "ConvBn2d: bn must be affine and track running stats (gamma and running_var define "
            "the folded weight), got affine=",
            nn::py_bool(bn_->options.affine()),
            ", track_running_stats=", nn::py_bool(bn_->options.track_running_stats()));
  QAT_CHECK(bn_->num_features == conv_->out_channels, "ConvBn2d: bn has ", bn_->num_features,
            " features, conv has ", conv_->out_channels, " output channels");
}

Tensor ConvBn2d::scale_factor() const { return ops::div(bn_->weight, running_std(*bn_)); }

Tensor ConvBn2d::forward_impl(const Tensor& input) {
  // This module decides BN's mode (the float model's bn may be in another one).
  const bool batch_stats = is_training() && !bn_frozen_;
  if (!batch_stats) return finish_output(folded_forward(input), input);

  const int64_t oc = conv_->out_channels;
  const Shape per_weight_row = {oc, 1, 1, 1};
  const Shape per_output_channel = {1, oc, 1, 1};
  const ops::Conv2dParams params = conv_->conv_params();

  const Tensor s = scale_factor();
  const Tensor scaled_weight = ops::mul(conv_->weight, ops::reshape(s, per_weight_row));
  Tensor y = ops::conv2d(input, weight_fake_quant()->forward(scaled_weight), Tensor(), params);
  const Tensor dead = zero_scale_mask(s);
  bn_->num_batches_tracked.data<int64_t>()[0] += 1;
  if (!dead.defined()) {
    // BN(y / s + b) as one op: batch_norm_scaled_input takes the per-channel 1 / s and b and
    // never materializes y / s + b (nor its gradient), which saves several passes over y.
    const Tensor inv_s = ops::div(Tensor::ones({oc}), s);
    y = ops::batch_norm_scaled_input(y, inv_s, conv_->bias, bn_->running_mean, bn_->running_var,
                                     bn_->weight, bn_->bias, bn_->options.momentum(),
                                     bn_->options.eps());
    return finish_output(y, input);
  }
  // s + dead is s where s != 0 and 1 where s == 0 (see the header); the dead channels' float
  // conv costs a second conv, only while some gamma is exactly 0.
  y = ops::div(y, ops::reshape(ops::add(s, dead), per_output_channel));
  const Tensor dead_weight = ops::mul(conv_->weight, dead.view(per_weight_row));
  y = ops::add(y, ops::conv2d(input, dead_weight, Tensor(), params));
  if (conv_->bias.defined()) y = ops::add(y, ops::reshape(conv_->bias, per_output_channel));
  y = ops::batch_norm(y, bn_->running_mean, bn_->running_var, bn_->weight, bn_->bias,
                      /*training=*/true, bn_->options.momentum(), bn_->options.eps());
  return finish_output(y, input);
}

Tensor ConvBn2d::accumulate(const Tensor& input_codes, const Tensor& weight_codes) const {
  return ops::conv2d(input_codes, weight_codes, Tensor(), conv_->conv_params());
}

// With running statistics (eval, or BN frozen) BN is affine, so the layer is exactly the folded
// conv the deployed model runs: conv(x, fq(W·s), b') with s = γ/σ and b' = β + (b − μ)·s.
// Computing it in that form (rather than the approximate path's conv/s then BN) makes the
// fake-quant graph agree bit for bit with convert's integer model. Gradients still reach W, γ, β
// and the conv bias: the two forms are the same function of them. A channel with γ = 0 gets
// W' = 0 and b' = β, as fold() gives.
Tensor ConvBn2d::folded_forward(const Tensor& input) {
  const int64_t oc = conv_->out_channels;
  const Tensor s = scale_factor();
  const Tensor weight =
      weight_fake_quant()->forward(ops::mul(conv_->weight, ops::reshape(s, {oc, 1, 1, 1})));
  const Tensor centered = conv_->bias.defined() ? ops::sub(conv_->bias, bn_->running_mean)
                                                : ops::neg(bn_->running_mean);
  const Tensor bias = ops::add(bn_->bias, ops::mul(centered, s));
  return ops::conv2d(input, weight, bias, conv_->conv_params());
}

FoldedWeights ConvBn2d::fold() const {
  NoGradGuard no_grad;
  const Tensor s = scale_factor();
  FoldedWeights out;
  out.weight = ops::mul(conv_->weight, s.view({conv_->out_channels, 1, 1, 1}));
  out.bias = Tensor::empty({conv_->out_channels});
  const float* scale = s.data<float>();
  const float* beta = bn_->bias.data<float>();
  const float* mean = bn_->running_mean.data<float>();
  const float* conv_bias = conv_->bias.defined() ? conv_->bias.data<float>() : nullptr;
  float* bias = out.bias.data<float>();
  for (int64_t c = 0; c < conv_->out_channels; ++c) {
    bias[c] = beta[c] + ((conv_bias ? conv_bias[c] : 0.0f) - mean[c]) * scale[c];
  }
  return out;
}

std::string ConvBn2d::extra_repr() const {
  return conv_->extra_repr() + ", bn=" + bn_->to_string() + (bn_frozen_ ? ", bn_frozen=True" : "");
}

void freeze_bn_stats(nn::Module& root) {
  for (const auto& entry : root.named_modules()) {
    if (auto* m = dynamic_cast<ConvBn2d*>(entry.second.get())) m->freeze_bn();
  }
}

void update_bn_stats(nn::Module& root) {
  for (const auto& entry : root.named_modules()) {
    if (auto* m = dynamic_cast<ConvBn2d*>(entry.second.get())) m->unfreeze_bn();
  }
}

}  // namespace qat::quant
