#pragma once

#include <cstdint>

namespace qat {

// How fake quantization rounds x / s to the integer grid. The target decides (DESIGN.md,
// "Targets decide the numerics"); each mode reproduces its runtime bit for bit in float32:
enum class RoundingMode {
  kHalfEvenDiv,  // q = rint(x / s) + zp: ONNX QuantizeLinear, TensorRT (`tensorrt`)
  kHalfAway,     // q = float2int8(x / s + zp), float2int8(v) = trunc(v ± 0.5): TNN (`tnn`)
  kHalfEvenMul,  // q = zp + nearbyint(x * (1 / s)): PyTorch's CPU fake_quantize kernels
};

const char* rounding_mode_name(RoundingMode mode);  // "half_even_div", "half_away", ...

}  // namespace qat

// Fake quantization on raw buffers (see PyTorch docs for torch.fake_quantize_per_channel_affine):
//   q = round(x, s, zp)                    (RoundingMode; not clamped)
//   y = (clamp(q, quant_min, quant_max) - zp) * s
//   mask = quant_min <= q <= quant_max     (the straight-through estimator: dx = dy * mask)
// x is viewed as [outer, channels, inner] and channel c uses scale[c], zero_point[c]; per tensor
// is channels = 1. Every function is a template on the element type T (float, double); the
// arithmetic runs in T, so float reproduces the runtimes and double serves gradcheck.
// Preconditions (checked by the ops): scale > 0 and finite, quant_min <= zero_point <= quant_max.
namespace qat::kernels {

// One OpenMP pass writing y [outer, channels, inner] and, unless mask is null, the mask.
// Returns how many mask entries are 0 (0 when mask is null): when none is, the STE backward is
// the identity and needs no pass (weights under a min/max observer of the same tensor are always
// inside their grid).
template <class T>
int64_t fake_quant_forward(RoundingMode mode, const T* x, const T* scale, const int32_t* zero_point,
                           int64_t quant_min, int64_t quant_max, int64_t outer, int64_t channels,
                           int64_t inner, T* y, uint8_t* mask);
template <class T>
int64_t fake_quant_forward_ref(RoundingMode mode, const T* x, const T* scale,
                               const int32_t* zero_point, int64_t quant_min, int64_t quant_max,
                               int64_t outer, int64_t channels, int64_t inner, T* y, uint8_t* mask);

// LSQ backward (Esser et al., "Learned Step Size Quantization", 2020), as PyTorch's
// _fake_quantize_learnable_per_{tensor,channel}_affine_backward:
//   dx = dy * mask
//   dscale[c] = grad_factor * sum over channel c of dy * ds, where
//     ds = (q - zp) - x / s   inside the range (round(x/s) - x/s: the STE through round)
//     ds = quant_min - zp     below it,   ds = quant_max - zp   above it.
// q and x / s are recomputed with `mode`, exactly as the forward does. dscale sums in double, in
// an order that does not depend on the thread count.
template <class T>
void fake_quant_lsq_backward(RoundingMode mode, const T* x, const T* scale,
                             const int32_t* zero_point, int64_t quant_min, int64_t quant_max,
                             double grad_factor, int64_t outer, int64_t channels, int64_t inner,
                             const T* dy, T* dx, T* dscale);
template <class T>
void fake_quant_lsq_backward_ref(RoundingMode mode, const T* x, const T* scale,
                                 const int32_t* zero_point, int64_t quant_min, int64_t quant_max,
                                 double grad_factor, int64_t outer, int64_t channels, int64_t inner,
                                 const T* dy, T* dx, T* dscale);

}  // namespace qat::kernels
