#include "quant/int8_arithmetic.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"

namespace qat::quant {

float grid_value(RoundingMode mode, float x, float scale) {
  switch (mode) {
    case RoundingMode::kHalfEvenDiv:
      return std::nearbyint(x / scale);
    case RoundingMode::kHalfAway: {
      const float v = x / scale;
      return std::trunc(v + (v >= 0.0f ? 0.5f : -0.5f));
    }
    case RoundingMode::kHalfEvenMul:
      return std::nearbyint(x * (1.0f / scale));
  }
  return std::nearbyint(x / scale);
}

Tensor quantize_weight(const Tensor& w, const QParams& qparams) {
  const int64_t channels = w.size(0);
  QAT_CHECK(qparams.per_channel() && *qparams.axis == 0 && qparams.scale.numel() == channels,
            "the weight quantizer must be per channel along axis 0 with ", channels,
            " scales, got ", qparams.scale.numel(), " scale(s)");
  QAT_CHECK(qparams.quant_min >= std::numeric_limits<int8_t>::min() &&
                qparams.quant_max <= std::numeric_limits<int8_t>::max(),
            "the weight range [", qparams.quant_min, ", ", qparams.quant_max, "] is not int8");
  for (const int32_t zp : qparams.zero_point.to_vector<int32_t>())
    QAT_CHECK(zp == 0, "the weight zero points must be 0 (symmetric), got ", zp);
  const int64_t inner = w.numel() / channels;
  const Tensor w32 = w.to(DType::kFloat32);
  const float* x = w32.data<float>();
  const float* scale = qparams.scale.data<float>();
  Tensor q = Tensor::empty(w.shape(), DType::kInt8);
  int8_t* out = q.data<int8_t>();
  const auto lo = static_cast<float>(qparams.quant_min);
  const auto hi = static_cast<float>(qparams.quant_max);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = c * inner; i < (c + 1) * inner; ++i) {
      out[i] =
          static_cast<int8_t>(std::clamp(grid_value(qparams.rounding, x[i], scale[c]), lo, hi));
    }
  }
  return q;
}

Tensor int32_bias(const Tensor& bias, float input_scale, const QParams& weight_qparams) {
  const float* b = bias.data<float>();
  const float* scale = weight_qparams.scale.data<float>();
  Tensor out = Tensor::empty(bias.shape(), DType::kInt32);
  int32_t* q = out.data<int32_t>();
  constexpr double kMin = std::numeric_limits<int32_t>::min();
  constexpr double kMax = std::numeric_limits<int32_t>::max();
  for (int64_t c = 0; c < bias.numel(); ++c) {
    const float v = grid_value(weight_qparams.rounding, b[c], input_scale * scale[c]);
    q[c] = static_cast<int32_t>(std::clamp(static_cast<double>(v), kMin, kMax));
  }
  return out;
}

int8_t float2int8(float v) {
  const float rounded = std::trunc(v + (v >= 0.0f ? 0.5f : -0.5f));
  return static_cast<int8_t>(std::clamp(rounded, -128.0f, 127.0f));
}

Tensor tnn_accumulator_scale(float input_scale, const QParams& weight_qparams) {
  std::vector<float> scales;
  for (const float s : weight_qparams.scale.to_vector<float>()) scales.push_back(input_scale * s);
  return Tensor::from_vector(scales, {static_cast<int64_t>(scales.size())});
}

Tensor tnn_requantize(const Tensor& acc, const Tensor& accumulator_scale, float output_scale,
                      FusedActivation activation) {
  QAT_CHECK(acc.dtype() == DType::kInt32 && acc.dim() >= 2, "tnn_requantize: expected int32 ",
            "accumulators [N, C, ...], got ", dtype_name(acc.dtype()), " ", shape_str(acc.shape()));
  const int64_t channels = acc.size(1), inner = acc.numel() / (acc.size(0) * channels);
  QAT_CHECK(accumulator_scale.numel() == channels, "tnn_requantize: ",
            accumulator_scale.numel(), " accumulator scales for ", channels, " channels");
  const float* s_acc = accumulator_scale.data<float>();
  const int32_t* a = acc.data<int32_t>();
  const int8_t relu6_max = float2int8(6.0f / output_scale);
  Tensor q = Tensor::empty(acc.shape(), DType::kInt8);
  int8_t* out = q.data<int8_t>();
  for (int64_t i = 0; i < q.numel(); ++i) {
    const float multiplier = s_acc[(i / inner) % channels] / output_scale;
    const float v = static_cast<float>(a[i]) * multiplier;
    switch (activation) {
      case FusedActivation::kNone:
        out[i] = float2int8(v);
        break;
      case FusedActivation::kReLU:
        out[i] = float2int8(std::max(v, 0.0f));
        break;
      case FusedActivation::kReLU6:
        out[i] = std::max<int8_t>(0, std::min(float2int8(v), relu6_max));
        break;
    }
  }
  return q;
}

}  // namespace qat::quant
