#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace qat::ops {

struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};

// y = conv2d(x, w) + b, as torch.nn.functional.conv2d (zero padding, cross-correlation).
// x: [N, C, H, W], w: [OC, C/groups, KH, KW], b: [OC] or undefined -> y: [N, OC, OH, OW].
// float32 runs oneDNN; float64 runs the reference kernel (gradcheck).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& params = {});

}  // namespace qat::ops
