#include "quant/linear.h"

#include <utility>

#include "core/ops/linear.h"

namespace qat::quant {

Linear::Linear(std::shared_ptr<nn::Linear> linear, const QConfig& qconfig,
               const QatModuleOptions& options)
    : QatModule(qconfig, options), linear_(std::move(linear)) {
  QAT_CHECK(linear_ != nullptr, "quant::Linear: linear must not be null");
}

Tensor Linear::forward_impl(const Tensor& input) {
  const Tensor weight = weight_fake_quant()->forward(linear_->weight);
  return finish_output(ops::linear(input, weight, linear_->bias), input);
}

Tensor Linear::accumulate(const Tensor& input_codes, const Tensor& weight_codes) const {
  return ops::linear(input_codes, weight_codes, Tensor());
}

FoldedWeights Linear::fold() const {
  return {linear_->weight.clone(), linear_->bias.defined() ? linear_->bias.clone() : Tensor()};
}

}  // namespace qat::quant
