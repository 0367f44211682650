#include "zoo/googlenet.h"

#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"
#include "nn/init.h"

namespace qat::zoo {
namespace {

// torchvision's _transform_input: input normalized with the ImageNet mean/std becomes
// (x - 0.5) / 0.5, the normalization the original Inception weights were trained with.
// Channel c: x * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5, computed with the same per-channel
// scalar ops as torchvision.
Tensor transform_input(const Tensor& x) {
  constexpr double kMean[3] = {0.485, 0.456, 0.406};
  constexpr double kStd[3] = {0.229, 0.224, 0.225};
  std::vector<Tensor> channels = ops::split(x, {1, 1, 1}, 1);
  for (int c = 0; c < 3; ++c) {
    channels[c] = ops::add(ops::mul(channels[c], kStd[c] / 0.5), (kMean[c] - 0.5) / 0.5);
  }
  return ops::cat(channels, 1);
}

// torchvision's init_weights loop; BatchNorm2d already starts at weight 1, bias 0.
void init_weights(const nn::Module& module) {
  for (const std::shared_ptr<nn::Module>& child : module.children()) {
    if (auto conv = std::dynamic_pointer_cast<nn::Conv2d>(child)) {
      nn::init::trunc_normal_(conv->weight, 0.0, 0.01, -2.0, 2.0);
    } else if (auto linear = std::dynamic_pointer_cast<nn::Linear>(child)) {
      nn::init::trunc_normal_(linear->weight, 0.0, 0.01, -2.0, 2.0);
    }
    init_weights(*child);
  }
}

}  // namespace

BasicConv2d::BasicConv2d(int64_t in_channels, int64_t out_channels, nn::IntPair kernel_size,
                         nn::Conv2dOptions options) {
  conv = register_module("conv", std::make_shared<nn::Conv2d>(in_channels, out_channels,
                                                              kernel_size, options.bias(false)));
  bn = register_module(
      "bn", std::make_shared<nn::BatchNorm2d>(out_channels, nn::BatchNorm2dOptions().eps(0.001)));
}

Tensor BasicConv2d::forward_impl(const Tensor& input) {
  return ops::relu(bn->forward(conv->forward(input)));
}

Inception::Inception(int64_t in_channels, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3,
                     int64_t ch5x5red, int64_t ch5x5, int64_t pool_proj) {
  const auto padding1 = nn::Conv2dOptions().padding(1);
  branch1 = register_module("branch1", std::make_shared<BasicConv2d>(in_channels, ch1x1, 1));
  branch2 =
      register_module("branch2", std::make_shared<nn::Sequential>(
                                     std::make_shared<BasicConv2d>(in_channels, ch3x3red, 1),
                                     std::make_shared<BasicConv2d>(ch3x3red, ch3x3, 3, padding1)));
  branch3 =
      register_module("branch3", std::make_shared<nn::Sequential>(
                                     std::make_shared<BasicConv2d>(in_channels, ch5x5red, 1),
                                     std::make_shared<BasicConv2d>(ch5x5red, ch5x5, 3, padding1)));
  branch4 = register_module("branch4",
                            std::make_shared<nn::Sequential>(
                                std::make_shared<nn::MaxPool2d>(
                                    3, nn::MaxPool2dOptions().stride(1).padding(1).ceil_mode(true)),
                                std::make_shared<BasicConv2d>(in_channels, pool_proj, 1)));
}

Tensor Inception::forward_impl(const Tensor& input) {
  return ops::cat({branch1->forward(input), branch2->forward(input), branch3->forward(input),
                   branch4->forward(input)},
                  1);
}

InceptionAux::InceptionAux(int64_t in_channels, int64_t num_classes, double dropout) {
  conv = register_module("conv", std::make_shared<BasicConv2d>(in_channels, 128, 1));
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(2048, 1024));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(1024, num_classes));
  this->dropout = register_module("dropout", std::make_shared<nn::Dropout>(dropout));
}

Tensor InceptionAux::forward_impl(const Tensor& input) {
  Tensor x = ops::adaptive_avg_pool2d(input, {4, 4});  // [N, C, 4, 4]
  x = ops::flatten(conv->forward(x), 1);               // [N, 128 * 4 * 4]
  x = ops::relu(fc1->forward(x));                      // [N, 1024]
  return fc2->forward(dropout->forward(x));            // [N, num_classes]
}

GoogLeNet::GoogLeNet(GoogLeNetOptions options) : options(options) {
  QAT_CHECK(options.num_classes() > 0, "GoogLeNet: num_classes must be positive, got ",
            options.num_classes());
  QAT_CHECK(!options.transform_input() || options.in_channels() == 3,
            "GoogLeNet: transform_input needs in_channels == 3 (it re-normalizes RGB), got "
            "in_channels=",
            options.in_channels());
  const int64_t num_classes = options.num_classes();
  const auto stride2_ceil = nn::MaxPool2dOptions().stride(2).ceil_mode(true);
  const bool small = options.small_input();
  conv1 = register_module(
      "conv1", small ? std::make_shared<BasicConv2d>(options.in_channels(), 64, 3,
                                                     nn::Conv2dOptions().padding(1))
                     : std::make_shared<BasicConv2d>(options.in_channels(), 64, 7,
                                                     nn::Conv2dOptions().stride(2).padding(3)));
  if (!small)
    maxpool1 = register_module("maxpool1", std::make_shared<nn::MaxPool2d>(3, stride2_ceil));
  conv2 = register_module("conv2", std::make_shared<BasicConv2d>(64, 64, 1));
  conv3 = register_module(
      "conv3", std::make_shared<BasicConv2d>(64, 192, 3, nn::Conv2dOptions().padding(1)));
  if (!small)
    maxpool2 = register_module("maxpool2", std::make_shared<nn::MaxPool2d>(3, stride2_ceil));

  // Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), as torchvision.
  inception3a =
      register_module("inception3a", std::make_shared<Inception>(192, 64, 96, 128, 16, 32, 32));
  inception3b =
      register_module("inception3b", std::make_shared<Inception>(256, 128, 128, 192, 32, 96, 64));
  maxpool3 = register_module("maxpool3", std::make_shared<nn::MaxPool2d>(3, stride2_ceil));
  inception4a =
      register_module("inception4a", std::make_shared<Inception>(480, 192, 96, 208, 16, 48, 64));
  inception4b =
      register_module("inception4b", std::make_shared<Inception>(512, 160, 112, 224, 24, 64, 64));
  inception4c =
      register_module("inception4c", std::make_shared<Inception>(512, 128, 128, 256, 24, 64, 64));
  inception4d =
      register_module("inception4d", std::make_shared<Inception>(512, 112, 144, 288, 32, 64, 64));
  inception4e =
      register_module("inception4e", std::make_shared<Inception>(528, 256, 160, 320, 32, 128, 128));
  maxpool4 = register_module("maxpool4", std::make_shared<nn::MaxPool2d>(2, stride2_ceil));
  inception5a =
      register_module("inception5a", std::make_shared<Inception>(832, 256, 160, 320, 32, 128, 128));
  inception5b =
      register_module("inception5b", std::make_shared<Inception>(832, 384, 192, 384, 48, 128, 128));

  if (options.aux_logits()) {
    aux1 = register_module("aux1",
                           std::make_shared<InceptionAux>(512, num_classes, options.dropout_aux()));
    aux2 = register_module("aux2",
                           std::make_shared<InceptionAux>(528, num_classes, options.dropout_aux()));
  }
  avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(1));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(options.dropout()));
  fc = register_module("fc", std::make_shared<nn::Linear>(1024, num_classes));

  init_weights(*this);
}

// Shape comments: torchvision's, for 224x224 input (small_input keeps 32x32 through conv3).
Tensor GoogLeNet::forward_impl(const Tensor& input) {
  QAT_CHECK(input.dim() == 4 && input.size(1) == options.in_channels(),
            "GoogLeNet: expected input [N, ", options.in_channels(), ", H, W], got ",
            shape_str(input.shape()));
  last_aux_logits_ = {};
  const bool run_aux = options.aux_logits() && is_training();

  Tensor x = options.transform_input() ? transform_input(input) : input;
  x = conv1->forward(x);                                  // [N, 64, 112, 112]
  if (maxpool1) x = maxpool1->forward(x);                 // [N, 64, 56, 56]
  x = conv2->forward(x);                                  // [N, 64, 56, 56]
  x = conv3->forward(x);                                  // [N, 192, 56, 56]
  if (maxpool2) x = maxpool2->forward(x);                 // [N, 192, 28, 28]
  x = inception3a->forward(x);                            // [N, 256, 28, 28]
  x = inception3b->forward(x);                            // [N, 480, 28, 28]
  x = maxpool3->forward(x);                               // [N, 480, 14, 14]
  x = inception4a->forward(x);                            // [N, 512, 14, 14]
  if (run_aux) last_aux_logits_.aux1 = aux1->forward(x);  // [N, num_classes]
  x = inception4b->forward(x);                            // [N, 512, 14, 14]
  x = inception4c->forward(x);                            // [N, 512, 14, 14]
  x = inception4d->forward(x);                            // [N, 528, 14, 14]
  if (run_aux) last_aux_logits_.aux2 = aux2->forward(x);  // [N, num_classes]
  x = inception4e->forward(x);                            // [N, 832, 14, 14]
  x = maxpool4->forward(x);                               // [N, 832, 7, 7]
  x = inception5a->forward(x);                            // [N, 832, 7, 7]
  x = inception5b->forward(x);                            // [N, 1024, 7, 7]
  x = ops::flatten(avgpool->forward(x), 1);               // [N, 1024]
  return fc->forward(dropout->forward(x));                // [N, num_classes]
}

std::shared_ptr<GoogLeNet> googlenet(GoogLeNetOptions options) {
  return std::make_shared<GoogLeNet>(options);
}

}  // namespace qat::zoo
