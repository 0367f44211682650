#include "zoo/resnet.h"

#include <utility>

#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"
#include "nn/init.h"

namespace qat::zoo {
namespace {

std::shared_ptr<nn::Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return std::make_shared<nn::Conv2d>(in, out, 3,
                                      nn::Conv2dOptions().stride(stride).padding(1).bias(false));
}

std::shared_ptr<nn::Conv2d> conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return std::make_shared<nn::Conv2d>(in, out, 1, nn::Conv2dOptions().stride(stride).bias(false));
}

int64_t expansion(ResNetBlock block) {
  return block == ResNetBlock::kBasicBlock ? BasicBlock::kExpansion : Bottleneck::kExpansion;
}

// Without a downsample the residual add needs the block to keep the input's shape.
void check_identity_fits(const char* type, int64_t inplanes, int64_t out_planes, int64_t stride,
                         const std::shared_ptr<nn::Sequential>& downsample) {
  QAT_CHECK(downsample || (stride == 1 && inplanes == out_planes), type,
            ": expected a downsample for a block that changes the shape (", inplanes, " -> ",
            out_planes, " channels, stride ", stride, "), got none");
}

// The loops at the end of torchvision's ResNet.__init__. BatchNorm2d already starts at
// weight 1, bias 0 and Linear keeps its default init, so only convs and the residual BNs change.
void init_weights(const std::vector<std::shared_ptr<nn::Module>>& children,
                  bool zero_init_residual) {
  for (const std::shared_ptr<nn::Module>& child : children) {
    for (const auto& [name, module] : child->named_modules()) {
      if (auto* conv = dynamic_cast<nn::Conv2d*>(module.get())) {
        nn::init::kaiming_normal_(conv->weight, 0.0, nn::init::FanMode::kFanOut,
                                  nn::init::Nonlinearity::kReLU);
      }
      if (!zero_init_residual) continue;
      if (auto* basic = dynamic_cast<BasicBlock*>(module.get())) {
        nn::init::zeros_(basic->bn2->weight);
      }
      if (auto* bottleneck = dynamic_cast<Bottleneck*>(module.get())) {
        nn::init::zeros_(bottleneck->bn3->weight);
      }
    }
  }
}

std::shared_ptr<nn::Module> make_block(ResNetBlock block, int64_t inplanes, int64_t planes,
                                       int64_t stride, std::shared_ptr<nn::Sequential> downsample) {
  if (block == ResNetBlock::kBasicBlock) {
    return std::make_shared<BasicBlock>(inplanes, planes, stride, std::move(downsample));
  }
  return std::make_shared<Bottleneck>(inplanes, planes, stride, std::move(downsample));
}

}  // namespace

// Registration order = torchvision __init__ order = state_dict (and repr) order.
BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<nn::Sequential> downsample)
    : stride(stride) {
  check_identity_fits("BasicBlock", inplanes, planes * kExpansion, stride, downsample);
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  relu = register_module("relu", std::make_shared<nn::ReLU>());
  conv2 = register_module("conv2", conv3x3(planes, planes));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  if (downsample) this->downsample = register_module("downsample", std::move(downsample));
}

Tensor BasicBlock::forward_impl(const Tensor& input) {
  Tensor out = relu->forward(bn1->forward(conv1->forward(input)));
  out = bn2->forward(conv2->forward(out));
  const Tensor identity = downsample ? downsample->forward(input) : input;
  return relu->forward(ops::add(out, identity));
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<nn::Sequential> downsample)
    : stride(stride) {
  check_identity_fits("Bottleneck", inplanes, planes * kExpansion, stride, downsample);
  conv1 = register_module("conv1", conv1x1(inplanes, planes));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * kExpansion));
  bn3 = register_module("bn3", std::make_shared<nn::BatchNorm2d>(planes * kExpansion));
  relu = register_module("relu", std::make_shared<nn::ReLU>());
  if (downsample) this->downsample = register_module("downsample", std::move(downsample));
}

Tensor Bottleneck::forward_impl(const Tensor& input) {
  Tensor out = relu->forward(bn1->forward(conv1->forward(input)));
  out = relu->forward(bn2->forward(conv2->forward(out)));
  out = bn3->forward(conv3->forward(out));
  const Tensor identity = downsample ? downsample->forward(input) : input;
  return relu->forward(ops::add(out, identity));
}

ResNet::ResNet(ResNetBlock block, const std::vector<int64_t>& layers, ResNetOptions options)
    : block(block), options(options) {
  QAT_CHECK(layers.size() == 4, "ResNet: expected 4 stage depths (layer1..layer4), got ",
            layers.size());
  for (int64_t blocks : layers) {
    QAT_CHECK(blocks >= 1, "ResNet: every stage needs at least one block, got ", blocks);
  }
  const int64_t in = options.in_channels();
  conv1 = register_module(
      "conv1", options.small_input()
                   ? conv3x3(in, inplanes_)
                   : std::make_shared<nn::Conv2d>(
                         in, inplanes_, 7, nn::Conv2dOptions().stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(inplanes_));
  relu = register_module("relu", std::make_shared<nn::ReLU>());
  if (!options.small_input()) {
    maxpool = register_module(
        "maxpool", std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions().stride(2).padding(1)));
  }
  layer1 = register_module("layer1", make_layer(64, layers[0], 1));
  layer2 = register_module("layer2", make_layer(128, layers[1], 2));
  layer3 = register_module("layer3", make_layer(256, layers[2], 2));
  layer4 = register_module("layer4", make_layer(512, layers[3], 2));
  avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair(1, 1)));
  fc = register_module("fc",
                       std::make_shared<nn::Linear>(512 * expansion(block), options.num_classes()));
  init_weights(children(), options.zero_init_residual());
}

std::shared_ptr<nn::Sequential> ResNet::make_layer(int64_t planes, int64_t blocks, int64_t stride) {
  const int64_t out_planes = planes * expansion(block);
  std::shared_ptr<nn::Sequential> downsample;
  if (stride != 1 || inplanes_ != out_planes) {
    downsample = std::make_shared<nn::Sequential>(conv1x1(inplanes_, out_planes, stride),
                                                  std::make_shared<nn::BatchNorm2d>(out_planes));
  }
  auto layer = std::make_shared<nn::Sequential>(
      make_block(block, inplanes_, planes, stride, std::move(downsample)));
  inplanes_ = out_planes;
  for (int64_t i = 1; i < blocks; ++i)
    layer->append(make_block(block, inplanes_, planes, 1, nullptr));
  return layer;
}

Tensor ResNet::forward_impl(const Tensor& input) {
  QAT_CHECK(input.dim() == 4 && input.size(1) == options.in_channels(),
            "ResNet: expected input [N, ", options.in_channels(), ", H, W], got ",
            shape_str(input.shape()));
  Tensor x = relu->forward(bn1->forward(conv1->forward(input)));
  if (maxpool) x = maxpool->forward(x);
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  return fc->forward(ops::flatten(avgpool->forward(x), 1));
}

std::shared_ptr<ResNet> resnet18(ResNetOptions options) {
  return std::make_shared<ResNet>(ResNetBlock::kBasicBlock, std::vector<int64_t>{2, 2, 2, 2},
                                  options);
}

std::shared_ptr<ResNet> resnet34(ResNetOptions options) {
  return std::make_shared<ResNet>(ResNetBlock::kBasicBlock, std::vector<int64_t>{3, 4, 6, 3},
                                  options);
}

std::shared_ptr<ResNet> resnet50(ResNetOptions options) {
  return std::make_shared<ResNet>(ResNetBlock::kBottleneck, std::vector<int64_t>{3, 4, 6, 3},
                                  options);
}

}  // namespace qat::zoo
