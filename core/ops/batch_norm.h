#pragma once

#include "core/tensor.h"

namespace qat::ops {

// torch.nn.functional.batch_norm over [N, C, H, W] (or [N, C]).
// training: normalizes with the batch mean and biased batch variance; if running_mean/var are
//   defined they are updated in place: r = (1 - momentum) * r + momentum * stat, with the
//   unbiased variance (n / (n - 1)) for running_var.
// eval: normalizes with running_mean / running_var (must be defined).
// weight/bias ([C]) may be undefined (affine=false). Gradients flow to x, weight and bias.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);

}  // namespace qat::ops
