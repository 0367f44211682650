#pragma once

#include <memory>
#include <string>

#include "nn/linear.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"

namespace qat::quant {

// Linear (-> ReLU / ReLU6) for quantization-aware training: torch.ao.nn.qat.Linear /
// torch.nn.intrinsic.qat.LinearReLU.
//   y = activation(x fake_quant(W)^T + b), then the output fake quant
// Holds `linear` without registering it (see qat_module.h for the naming scheme).
class Linear : public QatModule {
 public:
  Linear(std::shared_ptr<nn::Linear> linear, const QConfig& qconfig,
         const QatModuleOptions& options = QatModuleOptions());

  FoldedWeights fold() const override;  // copies of W and b

  const std::shared_ptr<nn::Linear>& linear() const { return linear_; }

  std::string type_name() const override { return fused_type_name("Linear", ""); }
  std::string extra_repr() const override { return linear_->extra_repr(); }

 protected:
  Tensor forward_impl(const Tensor& input) override;
  Tensor accumulate(const Tensor& input_codes, const Tensor& weight_codes) const override;

 private:
  std::shared_ptr<nn::Linear> linear_;
};

}  // namespace qat::quant
