#pragma once

#include <cstdint>
#include <string>

#include "core/arg.h"
#include "core/ops/conv.h"
#include "nn/int_pair.h"
#include "nn/module.h"

namespace qat::nn {

struct Conv2dOptions {
  QAT_ARG(IntPair, stride) = 1;
  QAT_ARG(IntPair, padding) = 0;
  QAT_ARG(IntPair, dilation) = 1;
  QAT_ARG(int64_t, groups) = 1;
  QAT_ARG(bool, bias) = true;
};

// torch.nn.Conv2d on NCHW input (zero padding): same parameter names, shapes and default init.
//   std::make_shared<Conv2d>(3, 64, 7, Conv2dOptions().stride(2).padding(3).bias(false))
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size,
         Conv2dOptions options = {});

  // weight: kaiming_uniform_(a = sqrt(5)); bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  void reset_parameters();
  ops::Conv2dParams conv_params() const;  // stride, padding, dilation, groups for ops::conv2d
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;

  const int64_t in_channels;
  const int64_t out_channels;
  const IntPair kernel_size;
  const Conv2dOptions options;
  Tensor weight;  // [out_channels, in_channels / groups, KH, KW]
  Tensor bias;    // [out_channels]; undefined (and not registered) when options.bias() is false

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::nn
