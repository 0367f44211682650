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

// Training-mode batch_norm of z = x * input_scale + input_shift (per channel, [C] each;
// input_shift may be undefined = 0) without materializing z: ConvBn2d's
// batch_norm(conv(x, W * s) / s + conv_bias) with input_scale = 1 / s. Normalizes with z's batch
// statistics (mean_z = a * mean_x + b, var_z = a^2 * var_x) and updates running_mean/var (if
// defined) with them exactly as batch_norm(z, ...) would. Gradients flow to x, input_scale,
// input_shift, weight and bias; input_shift's is 0, as z's normalized value does not depend on it.
Tensor batch_norm_scaled_input(const Tensor& x, const Tensor& input_scale,
                               const Tensor& input_shift, const Tensor& running_mean,
                               const Tensor& running_var, const Tensor& weight, const Tensor& bias,
                               double momentum = 0.1, double eps = 1e-5);

}  // namespace qat::ops
