#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

#include "core/kernels/fake_quant.h"
#include "core/tensor.h"

namespace qat::quant {

// torch.finfo(torch.float32).eps: PyTorch observers' default lower bound on the scale.
inline constexpr double kFloat32Eps = std::numeric_limits<float>::epsilon();

// The torch.qscheme values the observers support.
enum class QScheme {
  kPerTensorAffine,
  kPerTensorSymmetric,
  kPerChannelAffine,
  kPerChannelSymmetric,
};
bool is_per_channel(QScheme qscheme);
bool is_symmetric(QScheme qscheme);
const char* qscheme_name(QScheme qscheme);  // "torch.per_tensor_affine", as PyTorch prints it

// The quantized dtypes (torch.qint8, torch.quint8). They fix the default integer range and the
// zero point of symmetric quint8.
enum class QDType { kQInt8, kQUInt8 };
const char* qdtype_name(QDType dtype);  // "torch.qint8"

// How a symmetric scheme turns amax = max(-min, max) into a scale.
enum class SymmetricScale {
  kHalfRange,  // PyTorch: amax / ((quant_max - quant_min) / 2), i.e. amax / 127.5 on [-128, 127]
  kQuantMax,   // TensorRT, TNN: amax / quant_max, i.e. amax / 127 (onnx_qdq.md §0, tnn §3.3)
};

// Everything fake quantization of one tensor needs: the integer grid and its rounding.
struct QParams {
  Tensor scale;                 // float32 [1] (per tensor) or [C] (per channel)
  Tensor zero_point;            // int32, the shape of scale
  std::optional<int64_t> axis;  // the channel axis of the quantized tensor; none: per tensor
  int64_t quant_min = -128;
  int64_t quant_max = 127;
  RoundingMode rounding = RoundingMode::kHalfEvenMul;

  bool per_channel() const { return axis.has_value(); }
};

// Fake-quantizes x with qparams (the STE op of core/ops/fake_quant.h): differentiable in x.
Tensor fake_quantize(const Tensor& x, const QParams& qparams);

// The integer range of an observer: torch.ao.quantization.utils.calculate_qmin_qmax (1.13).
// A customized range (both bounds given) must contain 0 and have quant_min < quant_max;
// reduce_range halves it (quant_min // 2, quant_max // 2), else gives qint8 [-64, 63] or
// quint8 [0, 127] instead of [-128, 127] / [0, 255].
std::pair<int64_t, int64_t> calculate_qmin_qmax(std::optional<int64_t> quant_min,
                                                std::optional<int64_t> quant_max, QDType dtype,
                                                bool reduce_range);

// What turns an observed (min, max) into (scale, zero_point): the arguments of PyTorch's
// UniformQuantizationObserverBase, with the range already through calculate_qmin_qmax, plus the
// target's symmetric rule.
struct QParamsRule {
  QDType dtype = QDType::kQUInt8;
  QScheme qscheme = QScheme::kPerTensorAffine;
  int64_t quant_min = 0;
  int64_t quant_max = 255;
  // Symmetric quint8 puts the zero point at (quant_min + quant_max) // 2 for a customized range,
  // at 128 otherwise (PyTorch).
  bool has_customized_qrange = false;
  double eps = kFloat32Eps;  // lower bound of the scale, rounded to float32 as PyTorch's buffer
  SymmetricScale symmetric_scale = SymmetricScale::kHalfRange;
};

// torch.ao.quantization observer `_calculate_qparams` (PyTorch 1.13), in float32 exactly as
// PyTorch computes it: min/max are first widened to include 0; symmetric:
// scale = max(amax / divisor, eps) with the divisor of rule.symmetric_scale, zero point 0 (qint8)
// or the quint8 midpoint; affine: scale = max((max - min) / (quant_max - quant_min), eps),
// zero_point = clamp(quant_min - round_half_even(min / scale), quant_min, quant_max).
// min_val, max_val: float32, 0-d (per tensor) or [C]. Returns scale float32 and zero_point int32
// of shape [1] or [C]. Not yet observed (0-d min = +inf and max = -inf, or [0]) gives PyTorch's
// defaults ([1.0], [0]); min > max anywhere is an error.
std::pair<Tensor, Tensor> calculate_qparams(const Tensor& min_val, const Tensor& max_val,
                                            const QParamsRule& rule);

// TensorRT / TNN symmetric quantization from a calibrated amax (0-d or [1]: per tensor, [C]: per
// channel along `axis`): scale = max(amax / quant_max, eps) in float32, zero point 0.
QParams qparams_from_amax(const Tensor& amax, int64_t quant_min, int64_t quant_max,
                          RoundingMode rounding, std::optional<int64_t> axis = std::nullopt,
                          double eps = kFloat32Eps);

}  // namespace qat::quant
