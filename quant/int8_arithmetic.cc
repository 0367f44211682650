#include "quant/int8_arithmetic.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "core/check.h"

namespace qat::quant {
namespace {

// Loops over fewer elements stay on one thread (OpenMP start-up costs more than they take).
constexpr int64_t kParallelGrain = 1 << 15;

// tnn_requantize's argument checks; returns the elements per (sample, channel).
int64_t check_accumulators(const Tensor& acc, const Tensor& accumulator_scale) {
  QAT_CHECK(acc.dtype() == DType::kInt32 && acc.dim() >= 2, "tnn_requantize: expected int32 ",
            "accumulators [N, C, ...], got ", dtype_name(acc.dtype()), " ", shape_str(acc.shape()));
  QAT_CHECK(accumulator_scale.numel() == acc.size(1), "tnn_requantize: ", accumulator_scale.numel(),
            " accumulator scales for ", acc.size(1), " channels");
  return acc.numel() / (acc.size(0) * acc.size(1));
}

// max over output channels of sum |w[i]| of int8 codes [OC, ...] (the largest row L1 norm).
int64_t max_row_l1(const std::vector<int8_t>& w, int64_t channels) {
  const auto inner = static_cast<int64_t>(w.size()) / channels;
  int64_t max_l1 = 0;
  for (int64_t c = 0; c < channels; ++c) {
    int64_t l1 = 0;
    for (int64_t i = c * inner; i < (c + 1) * inner; ++i) l1 += std::abs(static_cast<int>(w[i]));
    max_l1 = std::max(max_l1, l1);
  }
  return max_l1;
}

// One (sample, channel) plane of tnn_requantize_planes: out[i] for acc[i], i < n. `omp simd`
// vectorizes the loops at -O2 (whose cost model leaves them scalar otherwise); acc and out never
// overlap. Arguments by value: int8 stores may alias anything, so values read through pointers
// would be reloaded every element.
void requantize_plane(const int32_t* acc, int64_t n, float multiplier, FusedActivation activation,
                      int8_t relu6_max, int8_t* out) {
  switch (activation) {
    case FusedActivation::kNone:
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = float2int8(static_cast<float>(acc[i]) * multiplier);
      break;
    case FusedActivation::kReLU:
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        // float2int8(max(v, 0)) = max(float2int8(v), 0): float2int8 is monotone and maps 0 to
        // 0. The int8 select vectorizes; the float compare (which may trap) does not.
        const int8_t code = float2int8(static_cast<float>(acc[i]) * multiplier);
        out[i] = code > 0 ? code : 0;
      }
      break;
    case FusedActivation::kReLU6:
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const int8_t code = float2int8(static_cast<float>(acc[i]) * multiplier);
        const int8_t capped = code < relu6_max ? code : relu6_max;
        out[i] = capped > 0 ? capped : 0;
      }
      break;
  }
}

}  // namespace

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

Tensor tnn_accumulator_scale(float input_scale, const QParams& weight_qparams) {
  std::vector<float> scales;
  for (const float s : weight_qparams.scale.to_vector<float>()) scales.push_back(input_scale * s);
  return Tensor::from_vector(scales, {static_cast<int64_t>(scales.size())});
}

Tensor tnn_requantize(const Tensor& acc, const Tensor& accumulator_scale, float output_scale,
                      FusedActivation activation) {
  const int64_t channels = acc.size(1), inner = check_accumulators(acc, accumulator_scale);
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

Tensor tnn_requantize_planes(const Tensor& acc, const Tensor& accumulator_scale, float output_scale,
                             FusedActivation activation) {
  const int64_t channels = acc.size(1), inner = check_accumulators(acc, accumulator_scale);
  const int64_t planes = acc.size(0) * channels;
  const float* s_acc = accumulator_scale.data<float>();
  const int8_t relu6_max = float2int8(6.0f / output_scale);
  Tensor q = Tensor::empty(acc.shape(), DType::kInt8);
  const int32_t* a = acc.data<int32_t>();
  int8_t* out = q.data<int8_t>();
#pragma omp parallel for schedule(static) if (planes * inner > kParallelGrain)
  for (int64_t plane = 0; plane < planes; ++plane) {
    requantize_plane(a + plane * inner, inner, s_acc[plane % channels] / output_scale, activation,
                     relu6_max, out + plane * inner);
  }
  return q;
}

std::vector<WeightDigits> exact_weight_digits(const Tensor& weight_codes, float input_max) {
  QAT_CHECK(weight_codes.dtype() == DType::kInt8 && weight_codes.dim() >= 1,
            "exact_weight_digits: expected int8 weight codes [OC, ...], got ",
            dtype_name(weight_codes.dtype()), " ", shape_str(weight_codes.shape()));
  const int64_t channels = weight_codes.size(0);
  const std::vector<int8_t> w = weight_codes.to_vector<int8_t>();
  const auto exact = [&](const std::vector<int8_t>& digits) {
    return static_cast<double>(input_max) * static_cast<double>(max_row_l1(digits, channels)) <=
           16777216.0;
  };
  const auto as_float = [&](const std::vector<int8_t>& digits) {
    return Tensor::from_vector(digits, weight_codes.shape()).to(DType::kFloat32);
  };
  if (exact(w)) return {{as_float(w), 1}};
  std::vector<int8_t> high(w.size()), low(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    // floor((w + 8) / 16) by an arithmetic shift; w - 16 * high is then in [-8, 7].
    high[i] = static_cast<int8_t>((w[i] + 8) >> 4);
    low[i] = static_cast<int8_t>(w[i] - 16 * high[i]);
  }
  if (exact(high) && exact(low)) return {{as_float(high), 16}, {as_float(low), 1}};
  return {};
}

Tensor exact_accumulators(const Tensor& weight_codes, float input_max, const Tensor& bias_int32,
                          const std::function<Tensor(const Tensor& digit)>& sums) {
  const std::vector<WeightDigits> digits = exact_weight_digits(weight_codes, input_max);
  if (digits.empty()) return Tensor();
  const int64_t out_channels = weight_codes.size(0);
  const int32_t* bias = bias_int32.defined() ? bias_int32.data<int32_t>() : nullptr;
  Tensor acc;
  for (const WeightDigits& d : digits) {
    const Tensor s = sums(d.weight);  // [N, OC, ...] float32, integers of magnitude <= 2^24
    QAT_CHECK(s.dtype() == DType::kFloat32 && s.dim() >= 2 && s.size(1) == out_channels,
              "exact_accumulators: expected float32 sums [N, ", out_channels, ", ...], got ",
              dtype_name(s.dtype()), " ", shape_str(s.shape()));
    const int64_t planes = s.size(0) * out_channels, inner = s.numel() / planes;
    if (!acc.defined()) {
      acc = Tensor::empty(s.shape(), DType::kInt32);
      int32_t* a = acc.data<int32_t>();
      for (int64_t plane = 0; plane < planes; ++plane)
        std::fill_n(a + plane * inner, inner, bias ? bias[plane % out_channels] : 0);
    }
    const float* sv = s.data<float>();
    int32_t* a = acc.data<int32_t>();
    const int64_t n = planes * inner;
    const int32_t radix = d.radix;
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) a[i] += radix * static_cast<int32_t>(sv[i]);
  }
  return acc;
}

}  // namespace qat::quant
