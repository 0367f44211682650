#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/arg.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/pooling.h"
#include "nn/sequential.h"

namespace qat::zoo {

struct ShuffleNetV2Options {
  QAT_ARG(int64_t, num_classes) = 1000;
  QAT_ARG(int64_t, in_channels) = 3;
  // For 28x28 / 32x32 images: conv1 has stride 1 instead of 2 (same keys and shapes) and the
  // stem max-pool is left out.
  QAT_ARG(bool, small_input) = false;
};

// torchvision.models.ShuffleNetV2 (0.14): same architecture, state_dict keys (conv1.{0,1},
// stage{2,3,4}.i.branch{1,2}.*, conv5.{0,1}, fc) and default layer initialization.
// Input [N, in_channels, H, W] -> logits [N, num_classes].
class ShuffleNetV2 : public nn::Module {
 public:
  // torchvision.models.shufflenetv2.InvertedResidual. Stride 1: the input's second channel half
  // goes through branch2 and is concatenated after the untouched first half; branch1 is an
  // empty Sequential. Stride > 1: cat(branch1(x), branch2(x)). Both end in channel_shuffle(2).
  class InvertedResidual : public nn::Module {
   public:
    InvertedResidual(int64_t in_channels, int64_t out_channels, int64_t stride);
    std::string type_name() const override { return "InvertedResidual"; }

    const int64_t stride;
    std::shared_ptr<nn::Sequential> branch1;  // dw 3x3, BN, 1x1, BN, ReLU (stride > 1 only)
    std::shared_ptr<nn::Sequential> branch2;  // 1x1, BN, ReLU, dw 3x3, BN, 1x1, BN, ReLU

   protected:
    Tensor forward_impl(const Tensor& input) override;
  };

  // stages_repeats: blocks of stage2..4 (3 values); stages_out_channels: output channels of
  // conv1, stage2..4 and conv5 (5 values), as torchvision's constructor.
  ShuffleNetV2(const std::vector<int64_t>& stages_repeats,
               const std::vector<int64_t>& stages_out_channels, ShuffleNetV2Options options = {});
  std::string type_name() const override { return "ShuffleNetV2"; }

  const ShuffleNetV2Options options;
  std::shared_ptr<nn::Sequential> conv1;
  std::shared_ptr<nn::MaxPool2d> maxpool;  // null (and not registered) when small_input
  std::shared_ptr<nn::Sequential> stage2;
  std::shared_ptr<nn::Sequential> stage3;
  std::shared_ptr<nn::Sequential> stage4;
  std::shared_ptr<nn::Sequential> conv5;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torchvision.models.shufflenet_v2_x{0_5,1_0,1_5,2_0} (without pretrained weights).
std::shared_ptr<ShuffleNetV2> shufflenet_v2_x0_5(ShuffleNetV2Options options = {});
std::shared_ptr<ShuffleNetV2> shufflenet_v2_x1_0(ShuffleNetV2Options options = {});
std::shared_ptr<ShuffleNetV2> shufflenet_v2_x1_5(ShuffleNetV2Options options = {});
std::shared_ptr<ShuffleNetV2> shufflenet_v2_x2_0(ShuffleNetV2Options options = {});

}  // namespace qat::zoo
