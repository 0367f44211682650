#include "nn/batch_norm.h"

#include "core/ops/batch_norm.h"

namespace qat::nn {

BatchNorm2d::BatchNorm2d(int64_t num_features, BatchNorm2dOptions options)
    : num_features(num_features), options(options) {
  QAT_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
  // Registration order of torch's _NormBase: parameters, then buffers.
  if (options.affine()) {
    weight = register_parameter("weight", Tensor::empty({num_features}));
    bias = register_parameter("bias", Tensor::empty({num_features}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", Tensor::empty({num_features}));
    running_var = register_buffer("running_var", Tensor::empty({num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", Tensor::scalar(0, DType::kInt64));
  }
  reset_parameters();
}

void BatchNorm2d::reset_running_stats() {
  if (!options.track_running_stats()) return;
  running_mean.fill_(0.0);
  running_var.fill_(1.0);
  num_batches_tracked.fill_(0.0);
}

void BatchNorm2d::reset_parameters() {
  reset_running_stats();
  if (!options.affine()) return;
  weight.fill_(1.0);
  bias.fill_(0.0);
}

std::string BatchNorm2d::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + py_float(options.eps()) +
         ", momentum=" + py_float(options.momentum()) + ", affine=" + py_bool(options.affine()) +
         ", track_running_stats=" + py_bool(options.track_running_stats());
}

Tensor BatchNorm2d::forward_impl(const Tensor& input) {
  QAT_CHECK(input.dim() == 4, "BatchNorm2d: expected 4D input [N, C, H, W], got ",
            shape_str(input.shape()));
  const bool tracking = options.track_running_stats();
  if (is_training() && tracking) num_batches_tracked.data<int64_t>()[0] += 1;
  // Without running statistics, batch statistics are used in eval too (as PyTorch).
  return ops::batch_norm(input, running_mean, running_var, weight, bias,
                         /*training=*/is_training() || !tracking, options.momentum(),
                         options.eps());
}

}  // namespace qat::nn
