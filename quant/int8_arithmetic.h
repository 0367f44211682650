#pragma once

#include <cstdint>

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
// half away from zero), saturated to [-128, 127].
int8_t float2int8(float v);

// tnn: s_in * s_w[c] in float32 ([OC]), the scale TNN stores with an int8 conv / FC weight.
Tensor tnn_accumulator_scale(float input_scale, const QParams& weight_qparams);

// TNN's int8 conv / FC output from its int32 accumulators acc ([N, OC, ...], bias included):
// v = acc * (s_acc[c] / s_out) in float32, then the fused activation and float2int8:
//   none: float2int8(v); relu: float2int8(max(v, 0));
//   relu6: max(0, min(float2int8(v), float2int8(6 / s_out))).
// Returns int8 codes of the shape of acc.
Tensor tnn_requantize(const Tensor& acc, const Tensor& accumulator_scale, float output_scale,
                      FusedActivation activation);

}  // namespace qat::quant
