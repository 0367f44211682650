#include "nn/pooling.h"

#include "core/ops/pool.h"

namespace qat::nn {
namespace {

IntPair resolve_stride(const IntPair& stride, const IntPair& kernel_size) {
  return stride == IntPair(0) ? kernel_size : stride;
}

}  // namespace

MaxPool2d::MaxPool2d(IntPair kernel_size, MaxPool2dOptions options)
    : kernel_size(kernel_size),
      stride(resolve_stride(options.stride(), kernel_size)),
      options(options) {
  QAT_CHECK(kernel_size.h > 0 && kernel_size.w > 0, "MaxPool2d: kernel_size must be positive, got ",
            kernel_size.tuple_str());
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + kernel_size.str() + ", stride=" + stride.str() +
         ", padding=" + options.padding().str() + ", dilation=" + options.dilation().str() +
         ", ceil_mode=" + py_bool(options.ceil_mode());
}

Tensor MaxPool2d::forward_impl(const Tensor& input) {
  return ops::max_pool2d(input, kernel_size.array(), stride.array(), options.padding().array(),
                         options.dilation().array(), options.ceil_mode());
}

AvgPool2d::AvgPool2d(IntPair kernel_size, AvgPool2dOptions options)
    : kernel_size(kernel_size),
      stride(resolve_stride(options.stride(), kernel_size)),
      options(options) {
  QAT_CHECK(kernel_size.h > 0 && kernel_size.w > 0, "AvgPool2d: kernel_size must be positive, got ",
            kernel_size.tuple_str());
}

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + kernel_size.str() + ", stride=" + stride.str() +
         ", padding=" + options.padding().str();
}

Tensor AvgPool2d::forward_impl(const Tensor& input) {
  return ops::avg_pool2d(input, kernel_size.array(), stride.array(), options.padding().array(),
                         options.ceil_mode(), options.count_include_pad());
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(IntPair output_size) : output_size(output_size) {
  QAT_CHECK(output_size.h > 0 && output_size.w > 0,
            "AdaptiveAvgPool2d: output_size must be positive, got ", output_size.tuple_str());
}

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + output_size.str(); }

Tensor AdaptiveAvgPool2d::forward_impl(const Tensor& input) {
  return ops::adaptive_avg_pool2d(input, output_size.array());
}

}  // namespace qat::nn
