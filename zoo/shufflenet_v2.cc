#include "zoo/shufflenet_v2.h"

#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"

namespace qat::zoo {
namespace {

std::shared_ptr<nn::Conv2d> conv1x1(int64_t in_channels, int64_t out_channels) {
  return std::make_shared<nn::Conv2d>(in_channels, out_channels, 1,
                                      nn::Conv2dOptions().bias(false));
}

// InvertedResidual.depthwise_conv: 3x3, padding 1, one group per channel, no bias.
std::shared_ptr<nn::Conv2d> depthwise_conv3x3(int64_t channels, int64_t stride) {
  return std::make_shared<nn::Conv2d>(
      channels, channels, 3,
      nn::Conv2dOptions().stride(stride).padding(1).groups(channels).bias(false));
}

std::shared_ptr<nn::BatchNorm2d> bn(int64_t channels) {
  return std::make_shared<nn::BatchNorm2d>(channels);
}

std::shared_ptr<nn::ReLU> relu() { return std::make_shared<nn::ReLU>(); }

// One stride-2 block, then repeats - 1 stride-1 blocks.
std::shared_ptr<nn::Sequential> make_stage(int64_t in_channels, int64_t out_channels,
                                           int64_t repeats) {
  auto stage = std::make_shared<nn::Sequential>(
      std::make_shared<ShuffleNetV2::InvertedResidual>(in_channels, out_channels, 2));
  for (int64_t i = 1; i < repeats; ++i) {
    stage->append(std::make_shared<ShuffleNetV2::InvertedResidual>(out_channels, out_channels, 1));
  }
  return stage;
}

}  // namespace

ShuffleNetV2::InvertedResidual::InvertedResidual(int64_t in_channels, int64_t out_channels,
                                                 int64_t stride)
    : stride(stride) {
  QAT_CHECK(stride >= 1 && stride <= 3, "InvertedResidual: stride must be in [1, 3], got ", stride);
  const int64_t branch_features = out_channels / 2;
  QAT_CHECK(stride != 1 || in_channels == 2 * branch_features,
            "InvertedResidual: with stride 1, in_channels must equal out_channels // 2 * 2, got ",
            in_channels, " and ", out_channels);
  branch1 = register_module("branch1", std::make_shared<nn::Sequential>());
  if (stride > 1) {
    branch1->append(depthwise_conv3x3(in_channels, stride));
    branch1->append(bn(in_channels));
    branch1->append(conv1x1(in_channels, branch_features));
    branch1->append(bn(branch_features));
    branch1->append(relu());
  }
  branch2 = register_module(
      "branch2",
      std::make_shared<nn::Sequential>(
          conv1x1(stride > 1 ? in_channels : branch_features, branch_features), bn(branch_features),
          relu(), depthwise_conv3x3(branch_features, stride), bn(branch_features),
          conv1x1(branch_features, branch_features), bn(branch_features), relu()));
}

Tensor ShuffleNetV2::InvertedResidual::forward_impl(const Tensor& input) {
  Tensor out;
  if (stride == 1) {
    const std::vector<Tensor> halves = ops::chunk(input, 2, 1);
    out = ops::cat({halves[0], branch2->forward(halves[1])}, 1);
  } else {
    out = ops::cat({branch1->forward(input), branch2->forward(input)}, 1);
  }
  return ops::channel_shuffle(out, 2);
}

ShuffleNetV2::ShuffleNetV2(const std::vector<int64_t>& stages_repeats,
                           const std::vector<int64_t>& stages_out_channels,
                           ShuffleNetV2Options options)
    : options(options) {
  QAT_CHECK(stages_repeats.size() == 3,
            "ShuffleNetV2: expected stages_repeats as list of 3 positive ints, got ",
            stages_repeats.size(), " values");
  QAT_CHECK(stages_out_channels.size() == 5,
            "ShuffleNetV2: expected stages_out_channels as list of 5 positive ints, got ",
            stages_out_channels.size(), " values");
  const std::vector<int64_t>& channels = stages_out_channels;
  conv1 = register_module(
      "conv1",
      std::make_shared<nn::Sequential>(
          std::make_shared<nn::Conv2d>(
              options.in_channels(), channels[0], 3,
              nn::Conv2dOptions().stride(options.small_input() ? 1 : 2).padding(1).bias(false)),
          bn(channels[0]), relu()));
  if (!options.small_input()) {
    maxpool = register_module(
        "maxpool", std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions().stride(2).padding(1)));
  }
  stage2 = register_module("stage2", make_stage(channels[0], channels[1], stages_repeats[0]));
  stage3 = register_module("stage3", make_stage(channels[1], channels[2], stages_repeats[1]));
  stage4 = register_module("stage4", make_stage(channels[2], channels[3], stages_repeats[2]));
  conv5 = register_module("conv5", std::make_shared<nn::Sequential>(
                                       conv1x1(channels[3], channels[4]), bn(channels[4]), relu()));
  fc = register_module("fc", std::make_shared<nn::Linear>(channels[4], options.num_classes()));
}

Tensor ShuffleNetV2::forward_impl(const Tensor& input) {
  Tensor x = conv1->forward(input);
  if (maxpool) x = maxpool->forward(x);
  x = stage4->forward(stage3->forward(stage2->forward(x)));
  x = conv5->forward(x);
  // Global pooling is a functional mean in torchvision's _forward_impl.
  return fc->forward(ops::mean(x, {2, 3}));
}

std::shared_ptr<ShuffleNetV2> shufflenet_v2_x0_5(ShuffleNetV2Options options) {
  return std::make_shared<ShuffleNetV2>(std::vector<int64_t>{4, 8, 4},
                                        std::vector<int64_t>{24, 48, 96, 192, 1024}, options);
}

std::shared_ptr<ShuffleNetV2> shufflenet_v2_x1_0(ShuffleNetV2Options options) {
  return std::make_shared<ShuffleNetV2>(std::vector<int64_t>{4, 8, 4},
                                        std::vector<int64_t>{24, 116, 232, 464, 1024}, options);
}

std::shared_ptr<ShuffleNetV2> shufflenet_v2_x1_5(ShuffleNetV2Options options) {
  return std::make_shared<ShuffleNetV2>(std::vector<int64_t>{4, 8, 4},
                                        std::vector<int64_t>{24, 176, 352, 704, 1024}, options);
}

std::shared_ptr<ShuffleNetV2> shufflenet_v2_x2_0(ShuffleNetV2Options options) {
  return std::make_shared<ShuffleNetV2>(std::vector<int64_t>{4, 8, 4},
                                        std::vector<int64_t>{24, 244, 488, 976, 2048}, options);
}

}  // namespace qat::zoo
