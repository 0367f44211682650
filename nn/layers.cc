#include "nn/layers.h"

#include "core/ops/loss.h"
#include "core/ops/shape_ops.h"

namespace qat::nn {

Dropout::Dropout(double p) : p(p) {
  QAT_CHECK(p >= 0 && p <= 1, "Dropout: probability has to be between 0 and 1, but got ", p);
}

std::string Dropout::extra_repr() const { return "p=" + py_float(p) + ", inplace=False"; }

Tensor Dropout::forward_impl(const Tensor& input) { return ops::dropout(input, p, is_training()); }

Flatten::Flatten(int64_t start_dim, int64_t end_dim) : start_dim(start_dim), end_dim(end_dim) {}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
}

Tensor Flatten::forward_impl(const Tensor& input) {
  return ops::flatten(input, start_dim, end_dim);
}

}  // namespace qat::nn
