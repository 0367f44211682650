#pragma once

#include <string>

#include "core/arg.h"
#include "nn/int_pair.h"
#include "nn/module.h"

namespace qat::nn {

struct MaxPool2dOptions {
  QAT_ARG(IntPair, stride) = 0;  // 0: kernel_size, as PyTorch's stride=None
  QAT_ARG(IntPair, padding) = 0;
  QAT_ARG(IntPair, dilation) = 1;
  QAT_ARG(bool, ceil_mode) = false;  // GoogLeNet's max pools use ceil_mode=true
};

// torch.nn.MaxPool2d on [N, C, H, W] (padding counts as -inf).
//   std::make_shared<MaxPool2d>(3, MaxPool2dOptions().stride(2).padding(1))
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(IntPair kernel_size, MaxPool2dOptions options = {});
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override;

  const IntPair kernel_size;
  const IntPair stride;  // resolved: kernel_size when the options left it 0
  const MaxPool2dOptions options;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

struct AvgPool2dOptions {
  QAT_ARG(IntPair, stride) = 0;  // 0: kernel_size, as PyTorch's stride=None
  QAT_ARG(IntPair, padding) = 0;
  QAT_ARG(bool, ceil_mode) = false;
  QAT_ARG(bool, count_include_pad) = true;
};

// torch.nn.AvgPool2d on [N, C, H, W].
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(IntPair kernel_size, AvgPool2dOptions options = {});
  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;

  const IntPair kernel_size;
  const IntPair stride;  // resolved: kernel_size when the options left it 0
  const AvgPool2dOptions options;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torch.nn.AdaptiveAvgPool2d: [N, C, H, W] -> [N, C, OH, OW] with PyTorch's bins.
// AdaptiveAvgPool2d(1) is the global average pool of ResNet and GoogLeNet.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(IntPair output_size);
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override;

  const IntPair output_size;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::nn
