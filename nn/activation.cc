#include "nn/activation.h"

#include "core/ops/elementwise.h"

namespace qat::nn {

Tensor ReLU::forward_impl(const Tensor& input) { return ops::relu(input); }

Tensor ReLU6::forward_impl(const Tensor& input) { return ops::relu6(input); }

}  // namespace qat::nn
