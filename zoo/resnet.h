#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/arg.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/pooling.h"
#include "nn/sequential.h"

// torchvision 0.14's ResNet (torchvision/models/resnet.py): the same modules, registration order,
// state_dict keys and default initialization, so torchvision checkpoints load unchanged.
namespace qat::zoo {

// The residual block of resnet18/34: two 3x3 convs. `downsample` (Sequential(conv1x1, BN), or
// nullptr) projects the identity when the stride or the channel count changes. Like torchvision,
// one ReLU child is called twice; graph tracing gives each call site its own node.
class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;  // output channels = planes * kExpansion

  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride = 1,
             std::shared_ptr<nn::Sequential> downsample = nullptr);
  std::string type_name() const override { return "BasicBlock"; }

  const int64_t stride;
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Conv2d> conv2;
  std::shared_ptr<nn::BatchNorm2d> bn2;
  std::shared_ptr<nn::Sequential> downsample;  // nullptr (and not registered) if not needed

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// The residual block of resnet50: 1x1 reduce, 3x3, 1x1 expand (x4). The stride sits on the 3x3
// conv (torchvision's "ResNet v1.5"), not on the first 1x1 as in the original paper.
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;

  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride = 1,
             std::shared_ptr<nn::Sequential> downsample = nullptr);
  std::string type_name() const override { return "Bottleneck"; }

  const int64_t stride;
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Conv2d> conv2;
  std::shared_ptr<nn::BatchNorm2d> bn2;
  std::shared_ptr<nn::Conv2d> conv3;
  std::shared_ptr<nn::BatchNorm2d> bn3;
  std::shared_ptr<nn::ReLU> relu;              // called three times
  std::shared_ptr<nn::Sequential> downsample;  // nullptr (and not registered) if not needed

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

enum class ResNetBlock { kBasicBlock, kBottleneck };

struct ResNetOptions {
  QAT_ARG(int64_t, num_classes) = 1000;
  QAT_ARG(int64_t, in_channels) = 3;
  // Stem for 28x28 / 32x32 images (the usual CIFAR variant): conv1 becomes 3x3, stride 1,
  // padding 1, and the max-pool is dropped. State_dict keys stay the same; only conv1.weight's
  // shape changes ([64, in_channels, 3, 3]).
  QAT_ARG(bool, small_input) = false;
  // Zero the last BN weight of every block (bn2 / bn3), so each block starts as the identity
  // (Goyal et al. 2017, "Accurate, Large Minibatch SGD").
  QAT_ARG(bool, zero_init_residual) = false;
};

// torchvision.models.ResNet on [N, in_channels, H, W] -> logits [N, num_classes]. `layers` holds
// the number of blocks of layer1..layer4 ({2, 2, 2, 2} for resnet18). Convs are initialized with
// kaiming_normal_(mode=fan_out, nonlinearity=relu), BN with weight 1 / bias 0, fc with the
// Linear default.
class ResNet : public nn::Module {
 public:
  ResNet(ResNetBlock block, const std::vector<int64_t>& layers, ResNetOptions options = {});
  std::string type_name() const override { return "ResNet"; }

  const ResNetBlock block;
  const ResNetOptions options;
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::MaxPool2d> maxpool;  // nullptr (and not registered) with small_input
  std::shared_ptr<nn::Sequential> layer1;
  std::shared_ptr<nn::Sequential> layer2;
  std::shared_ptr<nn::Sequential> layer3;
  std::shared_ptr<nn::Sequential> layer4;
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  // torchvision's _make_layer: `blocks` blocks, the first with `stride` and a downsample when
  // the shape changes. Advances inplanes_.
  std::shared_ptr<nn::Sequential> make_layer(int64_t planes, int64_t blocks, int64_t stride);

  int64_t inplanes_ = 64;  // input channels of the next block
};

// torchvision.models.resnet18/34/50 (untrained).
std::shared_ptr<ResNet> resnet18(ResNetOptions options = {});
std::shared_ptr<ResNet> resnet34(ResNetOptions options = {});
std::shared_ptr<ResNet> resnet50(ResNetOptions options = {});

}  // namespace qat::zoo
