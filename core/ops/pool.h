#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace qat::ops {

// All on [N, C, H, W]; output sizes follow PyTorch's pooling_output_shape (incl. ceil_mode's
// rule that the last window must start inside the input or left padding).
// stride {0, 0} means stride = kernel, as PyTorch's stride=None.
Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                  std::array<int64_t, 2> padding = {0, 0}, std::array<int64_t, 2> dilation = {1, 1},
                  bool ceil_mode = false);

// count_include_pad as PyTorch: the divisor counts padded positions inside the padded input
// (but not the extra positions ceil_mode adds past it).
Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                  std::array<int64_t, 2> padding = {0, 0}, bool ceil_mode = false,
                  bool count_include_pad = true);

// PyTorch's adaptive bins: start = floor(i * H / OH), end = ceil((i + 1) * H / OH).
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

}  // namespace qat::ops
