#include "zoo/small_cnn.h"

#include "core/ops/shape_ops.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/pooling.h"

namespace qat::zoo {
namespace {

void append_stage(nn::Sequential& seq, int64_t in_channels, int64_t out_channels) {
  seq.append(std::make_shared<nn::Conv2d>(in_channels, out_channels, 3,
                                          nn::Conv2dOptions().padding(1).bias(false)));
  seq.append(std::make_shared<nn::BatchNorm2d>(out_channels));
  seq.append(std::make_shared<nn::ReLU>());
  seq.append(std::make_shared<nn::MaxPool2d>(2));
}

}  // namespace

SmallCnn::SmallCnn(int64_t in_channels, int64_t num_classes) {
  features = register_module("features", std::make_shared<nn::Sequential>());
  append_stage(*features, in_channels, 32);
  append_stage(*features, 32, 64);
  append_stage(*features, 64, 128);
  fc = register_module("fc", std::make_shared<nn::Linear>(128 * 3 * 3, num_classes));
}

Tensor SmallCnn::forward_impl(const Tensor& input) {
  QAT_CHECK(input.dim() == 4 && input.size(2) == 28 && input.size(3) == 28,
            "SmallCnn expects [N, C, 28, 28] input, got ", shape_str(input.shape()));
  return fc->forward(ops::flatten(features->forward(input), 1));
}

}  // namespace qat::zoo
