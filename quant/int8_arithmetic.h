#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/kernels/fake_quant.h"
#include "core/tensor.h"
#include "quant/qat_module.h"
#include "quant/qparams.h"

// The integer arithmetic of an int8 layer, shared by the training forward (QatModule's tnn
// eval path), convert (graph/convert.cc) and the integer simulator (graph/int_model.cc), so the
// three compute every code with the same float32 expressions.
namespace qat::quant {

// The unclamped grid value of x with zero point 0, computed as the fake-quant kernel computes
// it for `mode` (core/kernels/fake_quant.cc), so codes reproduce training bit for bit.
float grid_value(RoundingMode mode, float x, float scale);

// int8 codes of the weight `w` ([OC, ...], float32) on the per-channel grid `qparams` (axis 0,
// zero point 0), rounded and saturated as the weight fake quant does. Throws unless the grid is
// int8, per channel along axis 0 and symmetric.
Tensor quantize_weight(const Tensor& w, const QParams& qparams);

// round(bias / (input_scale * s_w[c])) in float32 with the weight's rounding, saturated to
// int32 (the integer bias of integer runtimes).
Tensor int32_bias(const Tensor& bias, float input_scale, const QParams& weight_qparams);

// TNN's float2int8 (tnn_format.md §3.4): trunc(v + 0.5) for v >= 0, trunc(v - 0.5) below (round
// half away from zero), saturated to [-128, 127]. Written without branches so that the int8
// loops of the simulator and the tnn eval kernel vectorize (inline for the same reason):
// copysign(0.5, v) is the ±0.5 above except at v = -0.0, where both round to 0, and saturating
// before the truncating conversion equals truncating before saturating, the bounds being
// integers. NaN has no int8 value (the cast is undefined for it, in TNN's code too).
inline int8_t float2int8(float v) {
  const float shifted = v + std::copysign(0.5f, v);
  return static_cast<int8_t>(static_cast<int32_t>(std::min(std::max(shifted, -128.0f), 127.0f)));
}

// tnn: s_in * s_w[c] in float32 ([OC]), the scale TNN stores with an int8 conv / FC weight.
Tensor tnn_accumulator_scale(float input_scale, const QParams& weight_qparams);

// TNN's int8 conv / FC output from its int32 accumulators acc ([N, OC, ...], bias included):
// v = acc * (s_acc[c] / s_out) in float32, then the fused activation and float2int8:
//   none: float2int8(v); relu: float2int8(max(v, 0));
//   relu6: max(0, min(float2int8(v), float2int8(6 / s_out))).
// Returns int8 codes of the shape of acc.
Tensor tnn_requantize(const Tensor& acc, const Tensor& accumulator_scale, float output_scale,
                      FusedActivation activation);

// tnn_requantize with the same float32 expressions, plane by plane: the multiplier
// s_acc[c] / s_out and the activation's branch once per (sample, channel) instead of an index
// division, a float division and a switch per element; planes run in parallel. Bit for bit
// equal to its reference twin tnn_requantize.
Tensor tnn_requantize_planes(const Tensor& acc, const Tensor& accumulator_scale, float output_scale,
                             FusedActivation activation);

// One term of weight codes w = sum radix * digit: float32 digit codes of w's shape.
struct WeightDigits {
  Tensor weight;
  int32_t radix;
};

// The int8 weight codes w ([OC, ...]) split so that a float32 conv / GEMM of integer inputs
// with |x| <= input_max times every digit is exact, or {} when even the split is not. Every
// integer of magnitude <= 2^24 is a float32, and input_max * sum|digit[oc]| bounds every
// partial sum of output channel oc whatever order (or FMA) the kernel adds in. First {w, 1};
// past the bound (wide layers: a calibrated resnet18's 3x3 512 -> 512 convs have sum|w| ~
// 1.5e5), w = 16 * high + low with high in [-8, 8], low in [-8, 7], which divides the bound's
// weight factor by about 16 for high and caps low's at 8 per tap.
std::vector<WeightDigits> exact_weight_digits(const Tensor& weight_codes, float input_max);

// The int32 accumulators bias_int32[c] + sum x * w ([N, OC, ...]) of integer-valued inputs
// with |x| <= input_max and int8 weight codes w ([OC, ...]): `sums(digit)` is the layer's float32
// conv / linear without bias of those inputs with a digit weight of exact_weight_digits(w,
// input_max), and the digits' exact sums are combined in int32. bias_int32 may be undefined.
// Undefined when exact_weight_digits finds no exact split.
Tensor exact_accumulators(const Tensor& weight_codes, float input_max, const Tensor& bias_int32,
                          const std::function<Tensor(const Tensor& digit)>& sums);

}  // namespace qat::quant
