#pragma once

#include <memory>
#include <string>

#include "nn/conv2d.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"

namespace qat::quant {

// Conv2d (-> ReLU / ReLU6) for quantization-aware training, for convs without a BN to fold:
// torch.ao.nn.qat.Conv2d / torch.nn.intrinsic.qat.ConvReLU2d.
//   y = activation(conv(x, fake_quant(W), b)), then the output fake quant
// Holds `conv` without registering it (see qat_module.h for the naming scheme).
class Conv2d : public QatModule {
 public:
  Conv2d(std::shared_ptr<nn::Conv2d> conv, const QConfig& qconfig,
         const QatModuleOptions& options = QatModuleOptions());

  FoldedWeights fold() const override;  // copies of W and b

  const std::shared_ptr<nn::Conv2d>& conv() const { return conv_; }

  std::string type_name() const override { return fused_type_name("Conv", "2d"); }
  std::string extra_repr() const override { return conv_->extra_repr(); }

 protected:
  Tensor forward_impl(const Tensor& input) override;
  Tensor accumulate(const Tensor& input_codes, const Tensor& weight_codes) const override;

 private:
  std::shared_ptr<nn::Conv2d> conv_;
};

}  // namespace qat::quant
