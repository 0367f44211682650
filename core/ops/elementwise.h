#pragma once

#include <vector>

#include "core/tensor.h"

namespace qat::ops {

// Binary ops with NumPy/PyTorch broadcasting (align trailing dims; size-1 dims expand).
// Both inputs must have the same floating dtype. Gradients are summed back to each input's shape.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

// Tensor-scalar forms.
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);

Tensor neg(const Tensor& x);
Tensor relu(const Tensor& x);  // backward mask: x > 0 (PyTorch)
// nn.ReLU6 is F.hardtanh(x, 0, 6): gradient passes where 0 < x < 6 (strict, hardtanh_backward).
Tensor relu6(const Tensor& x);
// torch.clamp: gradient passes where min <= x <= max (inclusive, unlike hardtanh). NaN stays NaN;
// min > max gives max everywhere, as in PyTorch.
Tensor clamp(const Tensor& x, double min, double max);

// Reductions. sum()/mean() reduce everything to a 0-d tensor; so does an empty `dims`, as
// torch.sum(x, dim=[]). Sums accumulate in double.
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);

}  // namespace qat::ops
