#pragma once

#include <string>

#include "nn/module.h"

namespace qat::nn {

// torch.nn.ReLU: max(x, 0). Out of place (no inplace flag: tensors are written only by `_`
// methods). Stateless, but a module so graph tracing gives each call site its own node.
class ReLU : public Module {
 public:
  std::string type_name() const override { return "ReLU"; }

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torch.nn.ReLU6: min(max(x, 0), 6) (MobileNetV2).
class ReLU6 : public Module {
 public:
  std::string type_name() const override { return "ReLU6"; }

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::nn
