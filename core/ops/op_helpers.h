#pragma once

#include <cstdint>

#include "core/check.h"
#include "core/dtype.h"
#include "core/shape.h"

// Private to the ops in this package: dtype dispatch and dim checks with the op's name.
namespace qat::ops::detail {

// Calls fn(T{}) with T = float or double for a float32/float64 dtype; any other dtype is an
// error naming `api`. Kernels are instantiated for exactly these two types.
template <class Fn>
void dispatch_floating(DType dtype, const char* api, Fn&& fn) {
  QAT_CHECK(is_floating(dtype), api, ": expected a float32 or float64 tensor, got ",
            dtype_name(dtype));
  if (dtype == DType::kFloat32) {
    fn(float{});
  } else {
    fn(double{});
  }
}

// normalize_dim, with the error naming `api`.
inline int64_t wrap_dim(const char* api, int64_t dim, int64_t rank) {
  QAT_CHECK(-rank <= dim && dim < rank, api, ": dim ", dim, " out of range for a tensor of rank ",
            rank);
  return normalize_dim(dim, rank);
}

// Product of shape[begin:end]: the outer / inner extents around a dim.
inline int64_t numel_between(const Shape& shape, int64_t begin, int64_t end) {
  int64_t n = 1;
  for (int64_t d = begin; d < end; ++d) n *= shape[d];
  return n;
}

}  // namespace qat::ops::detail
