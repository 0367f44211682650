#pragma once

#include <cstdint>
#include <string>

#include "nn/module.h"

// Small parameter-free layers.
namespace qat::nn {

// torch.nn.Dropout: in training zeroes each element with probability p and scales the rest by
// 1 / (1 - p); identity in eval. Draws from qat::default_generator().
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override;

  const double p;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torch.nn.Flatten: merges dims start_dim..end_dim (a view).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override;

  const int64_t start_dim;
  const int64_t end_dim;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torch.nn.Identity: returns its input (a placeholder, e.g. for a removed classifier).
class Identity : public Module {
 public:
  std::string type_name() const override { return "Identity"; }

 protected:
  Tensor forward_impl(const Tensor& input) override { return input; }
};

}  // namespace qat::nn
