#pragma once

#include "core/tensor.h"

namespace qat::ops {

// y = x w^T + b, as torch.nn.functional.linear. x: [N, K], w: [M, K], b: [M] or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);

}  // namespace qat::ops
