#pragma once

#include <vector>

#include "core/tensor.h"

namespace qat::ops {

// Differentiable shape changes. reshape/flatten return views (shared storage).
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed
Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1);

// Copies (tensors are always contiguous). Negative dims count from the end.
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
// Pieces of the given sizes along dim (sizes must sum to x.size(dim)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// torch.chunk: ceil(size / chunks) per piece, the last one smaller (may return fewer pieces;
// an empty dim gives `chunks` empty pieces). Unused pieces contribute a zero gradient.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
// ShuffleNet's channel shuffle on [N, C, H, W]: view [N, g, C/g, H, W], swap dims 1 and 2.
Tensor channel_shuffle(const Tensor& x, int64_t groups);

}  // namespace qat::ops
