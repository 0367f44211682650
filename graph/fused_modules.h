#pragma once

#include <memory>
#include <string>

#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"

// The float modules fuse() puts in place of a conv / linear and the nodes it absorbs: PyTorch's
// torch.nn.intrinsic.ConvBn2d, ConvBnReLU2d, ConvReLU2d and LinearReLU. They exist so that a
// fused float graph computes exactly what the unfused one did, bits and gradients included;
// prepare_qat() then swaps them for the QAT modules in quant/, which compute something else
// (BN folded into the weight). quant's modules have no float mode for that reason.
//
// Like the QAT modules (quant/qat_module.h), they hold the original modules without
// registering them: state_dict() is empty, and the model keeps its keys. forward() calls the
// held modules' forward(), so each runs in its own train / eval mode, which the model sets
// (GraphModule::train() reaches them through the model, not through the graph).
namespace qat::graph {

// The activation a fusion absorbed, as the unfused graph ran it.
enum class Activation {
  kNone,
  kReLU,       // nn::ReLU or ops::relu
  kReLU6,      // nn::ReLU6 or ops::relu6
  kClamp0To6,  // ops::clamp(x, 0, 6): relu6's values, but the gradient also passes at x == 0 and
               // x == 6 (clamp's bounds are inclusive); the QAT modules run it as ReLU6
};

// Conv2d -> BatchNorm2d (optional) -> activation (optional), at least one of the two.
class FusedConv2d : public nn::Module {
 public:
  // bn, when given, must have conv->out_channels features.
  FusedConv2d(std::shared_ptr<nn::Conv2d> conv, std::shared_ptr<nn::BatchNorm2d> bn,
              Activation activation);

  const std::shared_ptr<nn::Conv2d>& conv() const { return conv_; }
  const std::shared_ptr<nn::BatchNorm2d>& bn() const { return bn_; }  // nullptr without BN
  Activation activation() const { return activation_; }

  // PyTorch's names: "ConvBn2d", "ConvBnReLU2d", "ConvReLU2d"; quant's for ReLU6 (PyTorch has
  // no ReLU6 intrinsics): "ConvBnReLU6", "ConvReLU6". clamp(0, 6) prints as ReLU6.
  std::string type_name() const override;
  std::string extra_repr() const override;  // the conv's, then "bn=BatchNorm2d(...)"

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  std::shared_ptr<nn::Conv2d> conv_;
  std::shared_ptr<nn::BatchNorm2d> bn_;
  Activation activation_;
};

// Linear -> activation: "LinearReLU" (PyTorch's), "LinearReLU6".
class FusedLinear : public nn::Module {
 public:
  // activation must not be kNone.
  FusedLinear(std::shared_ptr<nn::Linear> linear, Activation activation);

  const std::shared_ptr<nn::Linear>& linear() const { return linear_; }
  Activation activation() const { return activation_; }

  std::string type_name() const override;
  std::string extra_repr() const override { return linear_->extra_repr(); }

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  std::shared_ptr<nn::Linear> linear_;
  Activation activation_;
};

}  // namespace qat::graph
