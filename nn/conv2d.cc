#include "nn/conv2d.h"

#include <cmath>

#include "nn/init.h"

namespace qat::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size,
               Conv2dOptions options)
    : in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      options(options) {
  const int64_t groups = options.groups();
  QAT_CHECK(in_channels > 0 && out_channels > 0, "Conv2d: channels must be positive, got ",
            in_channels, " -> ", out_channels);
  QAT_CHECK(kernel_size.h > 0 && kernel_size.w > 0, "Conv2d: kernel_size must be positive, got ",
            kernel_size.tuple_str());
  QAT_CHECK(groups > 0 && in_channels % groups == 0 && out_channels % groups == 0,
            "Conv2d: in_channels=", in_channels, " and out_channels=", out_channels,
            " must both be divisible by groups=", groups);
  weight = register_parameter(
      "weight", Tensor::empty({out_channels, in_channels / groups, kernel_size.h, kernel_size.w}));
  if (options.bias()) bias = register_parameter("bias", Tensor::empty({out_channels}));
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound);
  }
}

ops::Conv2dParams Conv2d::conv_params() const {
  ops::Conv2dParams p;
  p.stride = options.stride().array();
  p.padding = options.padding().array();
  p.dilation = options.dilation().array();
  p.groups = options.groups();
  return p;
}

// As _ConvNd.extra_repr: non-default padding, dilation, groups and bias only.
std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                  ", kernel_size=" + kernel_size.tuple_str() +
                  ", stride=" + options.stride().tuple_str();
  if (options.padding() != IntPair(0)) s += ", padding=" + options.padding().tuple_str();
  if (options.dilation() != IntPair(1)) s += ", dilation=" + options.dilation().tuple_str();
  if (options.groups() != 1) s += ", groups=" + std::to_string(options.groups());
  if (!options.bias()) s += ", bias=False";
  return s;
}

Tensor Conv2d::forward_impl(const Tensor& input) {
  return ops::conv2d(input, weight, bias, conv_params());
}

}  // namespace qat::nn
