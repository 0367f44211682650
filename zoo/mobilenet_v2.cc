#include "zoo/mobilenet_v2.h"

#include <algorithm>
#include <array>

#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/linear.h"

namespace qat::zoo {
namespace {

// One row of torchvision's inverted_residual_setting: n blocks with expand ratio t and c output
// channels (before width_mult); the first block of the stage has stride s.
struct StageSetting {
  int64_t t, c, n, s;
};

constexpr std::array<StageSetting, 7> kStages = {{
    {1, 16, 1, 1},
    {6, 24, 2, 2},
    {6, 32, 3, 2},
    {6, 64, 4, 2},
    {6, 96, 3, 1},
    {6, 160, 3, 2},
    {6, 320, 1, 1},
}};

// The init loop at the end of MobileNetV2.__init__ (over self.modules()). It runs in the
// constructor, before a shared_ptr owns the model, so it walks each child's subtree instead.
void init_weights(const nn::Module& model) {
  for (const auto& child : model.children()) {
    for (const auto& [name, module] : child->named_modules()) {
      if (auto* conv = dynamic_cast<nn::Conv2d*>(module.get())) {
        nn::init::kaiming_normal_(conv->weight, 0.0, nn::init::FanMode::kFanOut);
        if (conv->bias.defined()) nn::init::zeros_(conv->bias);
      } else if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(module.get())) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      } else if (auto* linear = dynamic_cast<nn::Linear*>(module.get())) {
        nn::init::normal_(linear->weight, 0.0, 0.01);
        nn::init::zeros_(linear->bias);
      }
    }
  }
}

}  // namespace

int64_t make_divisible(double value, int64_t divisor) {
  QAT_CHECK(divisor > 0, "make_divisible: divisor must be positive, got ", divisor);
  // int(v + divisor / 2) // divisor * divisor, as Python computes it for positive v.
  const int64_t rounded = static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor;
  const int64_t result = std::max(divisor, rounded);
  return result < 0.9 * value ? result + divisor : result;
}

Conv2dNormActivation::Conv2dNormActivation(int64_t in_channels, int64_t out_channels,
                                           int64_t kernel_size,
                                           Conv2dNormActivationOptions options) {
  append(std::make_shared<nn::Conv2d>(in_channels, out_channels, kernel_size,
                                      nn::Conv2dOptions()
                                          .stride(options.stride())
                                          .padding((kernel_size - 1) / 2)
                                          .groups(options.groups())
                                          .bias(false)));
  append(std::make_shared<nn::BatchNorm2d>(out_channels));
  append(std::make_shared<nn::ReLU6>());
}

MobileNetV2::InvertedResidual::InvertedResidual(int64_t in_channels, int64_t out_channels,
                                                int64_t stride, int64_t expand_ratio)
    : stride(stride), use_res_connect(stride == 1 && in_channels == out_channels) {
  QAT_CHECK(stride == 1 || stride == 2, "InvertedResidual: stride should be 1 or 2, got ", stride);
  const int64_t hidden_dim = in_channels * expand_ratio;
  conv = register_module("conv", std::make_shared<nn::Sequential>());
  if (expand_ratio != 1) {
    conv->append(std::make_shared<Conv2dNormActivation>(in_channels, hidden_dim, 1));
  }
  conv->append(std::make_shared<Conv2dNormActivation>(
      hidden_dim, hidden_dim, 3, Conv2dNormActivationOptions().stride(stride).groups(hidden_dim)));
  conv->append(
      std::make_shared<nn::Conv2d>(hidden_dim, out_channels, 1, nn::Conv2dOptions().bias(false)));
  conv->append(std::make_shared<nn::BatchNorm2d>(out_channels));
}

Tensor MobileNetV2::InvertedResidual::forward_impl(const Tensor& input) {
  Tensor out = conv->forward(input);
  return use_res_connect ? ops::add(input, out) : out;
}

MobileNetV2::MobileNetV2(MobileNetV2Options options)
    : options(options),
      last_channel(
          make_divisible(1280 * std::max(1.0, options.width_mult()), options.round_nearest())) {
  QAT_CHECK(options.width_mult() > 0, "MobileNetV2: width_mult must be positive, got ",
            options.width_mult());
  int64_t in_channels = make_divisible(32 * options.width_mult(), options.round_nearest());
  features = register_module("features", std::make_shared<nn::Sequential>());
  features->append(std::make_shared<Conv2dNormActivation>(
      options.in_channels(), in_channels, 3,
      Conv2dNormActivationOptions().stride(options.small_input() ? 1 : 2)));
  for (const StageSetting& stage : kStages) {
    const int64_t out_channels =
        make_divisible(stage.c * options.width_mult(), options.round_nearest());
    for (int64_t i = 0; i < stage.n; ++i) {
      features->append(std::make_shared<InvertedResidual>(in_channels, out_channels,
                                                          i == 0 ? stage.s : 1, stage.t));
      in_channels = out_channels;
    }
  }
  features->append(std::make_shared<Conv2dNormActivation>(in_channels, last_channel, 1));
  classifier = register_module(
      "classifier", std::make_shared<nn::Sequential>(
                        std::make_shared<nn::Dropout>(options.dropout()),
                        std::make_shared<nn::Linear>(last_channel, options.num_classes())));
  init_weights(*this);
}

Tensor MobileNetV2::forward_impl(const Tensor& input) {
  // Pooling and flattening are functional in torchvision's _forward_impl, so they are here.
  Tensor x = ops::adaptive_avg_pool2d(features->forward(input), {1, 1});
  return classifier->forward(ops::flatten(x, 1));
}

std::shared_ptr<MobileNetV2> mobilenet_v2(MobileNetV2Options options) {
  return std::make_shared<MobileNetV2>(options);
}

}  // namespace qat::zoo
