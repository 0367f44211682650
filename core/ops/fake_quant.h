#pragma once

#include <cstdint>

#include "core/kernels/fake_quant.h"
#include "core/tensor.h"

namespace qat::ops {

// torch.fake_quantize_per_tensor_affine with the target's rounding (RoundingMode):
//   y = (clamp(round(x / scale) + zero_point, quant_min, quant_max) - zero_point) * scale.
// x: float32 or float64; scale: one positive float element; zero_point: one integer element in
// [quant_min, quant_max]. Backward is the clipped straight-through estimator with the mask saved
// in forward: dx = dy where quant_min <= round(x / scale) + zero_point <= quant_max (inclusive,
// as PyTorch's cachemask kernels). scale and zero_point get no gradient.
Tensor fake_quantize_per_tensor_affine(const Tensor& x, const Tensor& scale,
                                       const Tensor& zero_point, int64_t quant_min,
                                       int64_t quant_max,
                                       RoundingMode rounding = RoundingMode::kHalfEvenMul);

// torch.fake_quantize_per_channel_affine: as above with scale and zero_point of shape
// [x.size(axis)]; any axis (negative counts from the end).
Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale,
                                        const Tensor& zero_point, int64_t axis, int64_t quant_min,
                                        int64_t quant_max,
                                        RoundingMode rounding = RoundingMode::kHalfEvenMul);

// LSQ, learnable scale (torch._fake_quantize_learnable_per_tensor_affine): the same forward;
// dx = dy inside the range (STE), and scale gets the LSQ gradient
//   dscale = grad_factor * sum(dy * ds),  ds = round(x/s) - x/s inside, quant_min - zp below,
//                                              quant_max - zp above,
// with grad_factor = 1 / sqrt(x.numel() * quant_max) in LSQ (1 turns the scaling off).
// zero_point gets no gradient.
Tensor fake_quantize_lsq_per_tensor(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                    int64_t quant_min, int64_t quant_max, double grad_factor,
                                    RoundingMode rounding = RoundingMode::kHalfEvenMul);

// Per-channel LSQ (torch._fake_quantize_learnable_per_channel_affine): dscale has shape
// [x.size(axis)], each entry summed over its channel.
Tensor fake_quantize_lsq_per_channel(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                     int64_t axis, int64_t quant_min, int64_t quant_max,
                                     double grad_factor,
                                     RoundingMode rounding = RoundingMode::kHalfEvenMul);

}  // namespace qat::ops
