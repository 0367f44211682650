#pragma once

#include <cstdint>
#include <string>

#include "core/arg.h"
#include "nn/module.h"

namespace qat::nn {

struct BatchNorm2dOptions {
  QAT_ARG(double, eps) = 1e-5;
  QAT_ARG(double, momentum) = 0.1;  // running = (1 - momentum) * running + momentum * batch
  QAT_ARG(bool, affine) = true;
  QAT_ARG(bool, track_running_stats) = true;
};

// torch.nn.BatchNorm2d over [N, C, H, W]. Training normalizes with batch statistics and updates
// running_mean / running_var (unbiased variance) in place, and increments num_batches_tracked;
// eval normalizes with the running statistics. state_dict keys: weight, bias, running_mean,
// running_var, num_batches_tracked (an int64 0-d tensor), as PyTorch.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNorm2dOptions options = {});

  void reset_running_stats();  // mean 0, var 1, num_batches_tracked 0
  void reset_parameters();     // running stats, and weight 1, bias 0
  std::string type_name() const override { return "BatchNorm2d"; }
  std::string extra_repr() const override;

  const int64_t num_features;
  const BatchNorm2dOptions options;
  Tensor weight;               // [C]; undefined unless affine
  Tensor bias;                 // [C]; undefined unless affine
  Tensor running_mean;         // [C]; undefined unless track_running_stats
  Tensor running_var;          // [C]; undefined unless track_running_stats
  Tensor num_batches_tracked;  // int64 scalar; undefined unless track_running_stats

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::nn
