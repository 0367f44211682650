#pragma once

#include <cstdint>
#include <string>

#include "core/arg.h"
#include "nn/module.h"

namespace qat::nn {

struct LinearOptions {
  QAT_ARG(bool, bias) = true;
};

// torch.nn.Linear on [N, in_features]: y = x W^T + b, with PyTorch's default init.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, LinearOptions options = {});

  // weight: kaiming_uniform_(a = sqrt(5)); bias: U(-1/sqrt(in_features), 1/sqrt(in_features)).
  void reset_parameters();
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  const int64_t in_features;
  const int64_t out_features;
  const LinearOptions options;
  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features]; undefined (and not registered) when options.bias() is false

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::nn
