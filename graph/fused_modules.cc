#include "graph/fused_modules.h"

#include <utility>

#include "core/check.h"
#include "core/ops/elementwise.h"

namespace qat::graph {
namespace {

// The op the unfused graph ran for `activation` (the nn::ReLU / ReLU6 modules call these too).
Tensor activate(Activation activation, const Tensor& x) {
  switch (activation) {
    case Activation::kNone:
      return x;
    case Activation::kReLU:
      return ops::relu(x);
    case Activation::kReLU6:
      return ops::relu6(x);
    case Activation::kClamp0To6:
      return ops::clamp(x, 0.0, 6.0);
  }
  return x;
}

// "<base><activation><suffix>", the naming rule of quant's QAT modules (fused_type_name).
std::string fused_name(const std::string& base, Activation activation, const std::string& suffix) {
  switch (activation) {
    case Activation::kNone:
      return base + suffix;
    case Activation::kReLU:
      return base + "ReLU" + suffix;
    case Activation::kReLU6:
    case Activation::kClamp0To6:
      return base + "ReLU6";
  }
  return base + suffix;
}

}  // namespace

FusedConv2d::FusedConv2d(std::shared_ptr<nn::Conv2d> conv, std::shared_ptr<nn::BatchNorm2d> bn,
                         Activation activation)
    : conv_(std::move(conv)), bn_(std::move(bn)), activation_(activation) {
  QAT_CHECK(conv_ != nullptr, "FusedConv2d: conv must not be null");
  QAT_CHECK(bn_ != nullptr || activation_ != Activation::kNone,
            "FusedConv2d: expected a BatchNorm2d or an activation to fuse, got neither");
  QAT_CHECK(bn_ == nullptr || bn_->num_features == conv_->out_channels, "FusedConv2d: bn has ",
            bn_ ? bn_->num_features : 0, " features, conv has ", conv_->out_channels,
            " output channels");
}

std::string FusedConv2d::type_name() const {
  return fused_name(bn_ ? "ConvBn" : "Conv", activation_, "2d");
}

std::string FusedConv2d::extra_repr() const {
  return conv_->extra_repr() + (bn_ ? ", bn=" + bn_->to_string() : "");
}

Tensor FusedConv2d::forward_impl(const Tensor& input) {
  Tensor y = conv_->forward(input);
  if (bn_) y = bn_->forward(y);
  return activate(activation_, y);
}

FusedLinear::FusedLinear(std::shared_ptr<nn::Linear> linear, Activation activation)
    : linear_(std::move(linear)), activation_(activation) {
  QAT_CHECK(linear_ != nullptr, "FusedLinear: linear must not be null");
  QAT_CHECK(activation_ != Activation::kNone,
            "FusedLinear: expected an activation to fuse, got none");
}

std::string FusedLinear::type_name() const { return fused_name("Linear", activation_, ""); }

Tensor FusedLinear::forward_impl(const Tensor& input) {
  return activate(activation_, linear_->forward(input));
}

}  // namespace qat::graph
