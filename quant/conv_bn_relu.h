#pragma once

#include <memory>
#include <string>

#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"

namespace qat::quant {

// Conv2d -> BatchNorm2d (-> ReLU / ReLU6) for quantization-aware training:
// torch.nn.intrinsic.qat.ConvBn2d / ConvBnReLU2d with PyTorch's _forward_approximate. With
// s = gamma / sqrt(running_var + eps) per output channel:
//   y = BN(conv(x, fake_quant(W * s)) / s + b)
// so training sees the int8 weight that deployment uses, and BN normalizes with batch
// statistics (updating the running ones) in training, with the running statistics once frozen
// or in eval -- where y equals the folded conv: conv(x, fake_quant(W')) + b' (fold()).
//
// gamma = 0 (e.g. torchvision's zero_init_residual) makes PyTorch divide 0 by 0 and return NaN.
// Here a channel with s = 0 divides by 1 instead (its quantized weights W * s are all 0, so the
// first term is exactly 0) and adds the float conv(x, W) of that channel: the pre-BN value
// that conv(x, fake_quant(W * s)) / s approximates for s != 0. BN then outputs beta for the
// channel in both modes, which is also what the folded conv gives (W' = 0, b' = beta); the
// batch statistics stay meaningful, gamma still gets its gradient sum(dy * x_hat), and x and W
// get none through that channel (as for a small gamma, where it scales with gamma).
//
// Holds `conv` and `bn` without registering them (see qat_module.h for the naming scheme):
// state_dict() holds weight_fake_quant.* and activation_post_process.* only.
class ConvBn2d : public QatModule {
 public:
  // bn must be affine, track running stats and have conv->out_channels features.
  ConvBn2d(std::shared_ptr<nn::Conv2d> conv, std::shared_ptr<nn::BatchNorm2d> bn,
           const QConfig& qconfig, const QatModuleOptions& options = QatModuleOptions());

  // BN normalizes with (and stops updating) its running statistics, also in train() mode
  // (PyTorch's freeze_bn_stats()); unfreeze_bn() undoes it (update_bn_stats()).
  void freeze_bn() { bn_frozen_ = true; }
  void unfreeze_bn() { bn_frozen_ = false; }
  bool bn_frozen() const { return bn_frozen_; }

  // W' = W * s, b' = beta + (b - running_mean) * s, with s computed exactly as forward() does,
  // so W' equals the tensor the weight fake quant sees, bit for bit.
  FoldedWeights fold() const override;

  const std::shared_ptr<nn::Conv2d>& conv() const { return conv_; }
  const std::shared_ptr<nn::BatchNorm2d>& bn() const { return bn_; }

  std::string type_name() const override { return fused_type_name("ConvBn", "2d"); }
  std::string extra_repr() const override;  // the conv's, then "bn=BatchNorm2d(...)"

 protected:
  Tensor forward_impl(const Tensor& input) override;
  Tensor accumulate(const Tensor& input_codes, const Tensor& weight_codes) const override;

 private:
  // gamma / sqrt(running_var + eps): [OC], differentiable in gamma (running_var is a buffer).
  Tensor scale_factor() const;
  // The layer with running statistics, as the folded conv (see the .cc).
  Tensor folded_forward(const Tensor& input);

  std::shared_ptr<nn::Conv2d> conv_;
  std::shared_ptr<nn::BatchNorm2d> bn_;
  bool bn_frozen_ = false;
};

// Model-wide BN switches, as torch.nn.intrinsic.qat.freeze_bn_stats / update_bn_stats applied
// with model.apply(): every ConvBn2d under `root` (held by a std::shared_ptr).
void freeze_bn_stats(nn::Module& root);
void update_bn_stats(nn::Module& root);

}  // namespace qat::quant
