#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/arg.h"
#include "nn/module.h"
#include "nn/sequential.h"

namespace qat::zoo {

// torchvision's _make_divisible (min_value = divisor): the multiple of `divisor` nearest to
// `value`, at least `divisor`, one step up when rounding down would lose more than 10%.
int64_t make_divisible(double value, int64_t divisor);

struct Conv2dNormActivationOptions {
  QAT_ARG(int64_t, stride) = 1;
  QAT_ARG(int64_t, groups) = 1;
};

// torchvision.ops.Conv2dNormActivation as MobileNetV2 builds it: a Sequential of
// Conv2d (padding (k - 1) / 2, no bias), BatchNorm2d and ReLU6, children "0", "1", "2".
class Conv2dNormActivation : public nn::Sequential {
 public:
  Conv2dNormActivation(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                       Conv2dNormActivationOptions options = {});
  std::string type_name() const override { return "Conv2dNormActivation"; }
};

struct MobileNetV2Options {
  QAT_ARG(int64_t, num_classes) = 1000;
  QAT_ARG(double, width_mult) = 1.0;
  QAT_ARG(int64_t, round_nearest) = 8;
  QAT_ARG(double, dropout) = 0.2;
  QAT_ARG(int64_t, in_channels) = 3;
  // For 28x28 / 32x32 images: the first conv has stride 1 instead of 2 (same keys and shapes).
  QAT_ARG(bool, small_input) = false;
};

// torchvision.models.MobileNetV2 (0.14) with the default inverted-residual setting: same
// architecture, state_dict keys (features.N..., classifier.1) and initialization
// (kaiming_normal_ fan_out convs, BN 1/0, Linear N(0, 0.01) and zero bias).
// Input [N, in_channels, H, W] -> logits [N, num_classes].
class MobileNetV2 : public nn::Module {
 public:
  // torchvision.models.mobilenetv2.InvertedResidual: `conv` is
  // [Conv2dNormActivation 1x1 expand (only if expand_ratio != 1),] Conv2dNormActivation 3x3
  // depthwise, Conv2d 1x1 project, BatchNorm2d; plus the input when stride is 1 and the channel
  // counts match (use_res_connect).
  class InvertedResidual : public nn::Module {
   public:
    InvertedResidual(int64_t in_channels, int64_t out_channels, int64_t stride,
                     int64_t expand_ratio);
    std::string type_name() const override { return "InvertedResidual"; }

    const int64_t stride;
    const bool use_res_connect;
    std::shared_ptr<nn::Sequential> conv;

   protected:
    Tensor forward_impl(const Tensor& input) override;
  };

  explicit MobileNetV2(MobileNetV2Options options = {});
  std::string type_name() const override { return "MobileNetV2"; }

  const MobileNetV2Options options;
  const int64_t last_channel;  // channels of features.18 and the classifier's input
  std::shared_ptr<nn::Sequential> features;
  std::shared_ptr<nn::Sequential> classifier;  // Dropout, Linear

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torchvision.models.mobilenet_v2 (without pretrained weights).
std::shared_ptr<MobileNetV2> mobilenet_v2(MobileNetV2Options options = {});

}  // namespace qat::zoo
