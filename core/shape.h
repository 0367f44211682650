#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qat {

// Sizes of a contiguous row-major (NCHW) tensor, outermost first.
using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"
// Resolves a negative dim (-1 = last) and checks it is in range for a tensor of rank `rank`.
int64_t normalize_dim(int64_t dim, int64_t rank);
// Row-major strides in elements: strides[d] = prod(shape[d+1:]).
std::vector<int64_t> contiguous_strides(const Shape& shape);

}  // namespace qat
