#include "nn/linear.h"

#include <cmath>

#include "core/ops/linear.h"
#include "nn/init.h"

namespace qat::nn {

Linear::Linear(int64_t in_features, int64_t out_features, LinearOptions options)
    : in_features(in_features), out_features(out_features), options(options) {
  QAT_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got ",
            in_features, " -> ", out_features);
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  if (options.bias()) bias = register_parameter("bias", Tensor::empty({out_features}));
  reset_parameters();
}

void Linear::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    init::uniform_(bias, -bound, bound);
  }
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features) +
         ", out_features=" + std::to_string(out_features) + ", bias=" + py_bool(options.bias());
}

Tensor Linear::forward_impl(const Tensor& input) { return ops::linear(input, weight, bias); }

}  // namespace qat::nn
