#include "quant/conv_relu.h"

#include <utility>

#include "core/ops/conv.h"

namespace qat::quant {

Conv2d::Conv2d(std::shared_ptr<nn::Conv2d> conv, const QConfig& qconfig,
               const QatModuleOptions& options)
    : QatModule(qconfig, options), conv_(std::move(conv)) {
  QAT_CHECK(conv_ != nullptr, "quant::Conv2d: conv must not be null");
}

Tensor Conv2d::forward_impl(const Tensor& input) {
  const Tensor weight = weight_fake_quant()->forward(conv_->weight);
  return finish_output(ops::conv2d(input, weight, conv_->bias, conv_->conv_params()), input);
}

Tensor Conv2d::accumulate(const Tensor& input_codes, const Tensor& weight_codes) const {
  return ops::conv2d(input_codes, weight_codes, Tensor(), conv_->conv_params());
}

FoldedWeights Conv2d::fold() const {
  return {conv_->weight.clone(), conv_->bias.defined() ? conv_->bias.clone() : Tensor()};
}

}  // namespace qat::quant
