#include "quant/qparams.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/fake_quant.h"

namespace qat::quant {
namespace {

// Python's floor division (-127 // 2 == -64), which PyTorch's range arithmetic uses.
int64_t floor_div2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

}  // namespace

bool is_per_channel(QScheme qscheme) {
  return qscheme == QScheme::kPerChannelAffine || qscheme == QScheme::kPerChannelSymmetric;
}

bool is_symmetric(QScheme qscheme) {
  return qscheme == QScheme::kPerTensorSymmetric || qscheme == QScheme::kPerChannelSymmetric;
}

const char* qscheme_name(QScheme qscheme) {
  switch (qscheme) {
    case QScheme::kPerTensorAffine:
      return "torch.per_tensor_affine";
    case QScheme::kPerTensorSymmetric:
      return "torch.per_tensor_symmetric";
    case QScheme::kPerChannelAffine:
      return "torch.per_channel_affine";
    case QScheme::kPerChannelSymmetric:
      return "torch.per_channel_symmetric";
  }
  return "unknown";
}

const char* qdtype_name(QDType dtype) {
  return dtype == QDType::kQInt8 ? "torch.qint8" : "torch.quint8";
}

Tensor fake_quantize(const Tensor& x, const QParams& qparams) {
  if (qparams.axis) {
    return ops::fake_quantize_per_channel_affine(x, qparams.scale, qparams.zero_point,
                                                 *qparams.axis, qparams.quant_min,
                                                 qparams.quant_max, qparams.rounding);
  }
  return ops::fake_quantize_per_tensor_affine(
      x, qparams.scale, qparams.zero_point, qparams.quant_min, qparams.quant_max, qparams.rounding);
}

std::pair<int64_t, int64_t> calculate_qmin_qmax(std::optional<int64_t> quant_min,
                                                std::optional<int64_t> quant_max, QDType dtype,
                                                bool reduce_range) {
  QAT_CHECK(quant_min.has_value() == quant_max.has_value(),
            "calculate_qmin_qmax: expected both quant_min and quant_max or neither, got only ",
            quant_min ? "quant_min" : "quant_max");
  if (!quant_min) {
    if (dtype == QDType::kQInt8) {
      return reduce_range ? std::make_pair<int64_t, int64_t>(-64, 63)
                          : std::make_pair<int64_t, int64_t>(-128, 127);
    }
    return reduce_range ? std::make_pair<int64_t, int64_t>(0, 127)
                        : std::make_pair<int64_t, int64_t>(0, 255);
  }
  const int64_t lo = *quant_min, hi = *quant_max;
  QAT_CHECK(lo <= 0 && 0 <= hi && lo < hi,
            "calculate_qmin_qmax: expected a customized range with quant_min <= 0 <= quant_max "
            "and quant_min < quant_max, got [",
            lo, ", ", hi, "]");
  // PyTorch checks this only for qint8 observers, and FakeQuantize checks torch.iinfo bounds.
  const int64_t dtype_min = dtype == QDType::kQInt8 ? -128 : 0;
  const int64_t dtype_max = dtype == QDType::kQInt8 ? 127 : 255;
  QAT_CHECK(dtype_min <= lo && hi <= dtype_max, "calculate_qmin_qmax: expected [quant_min, ",
            "quant_max] within ", qdtype_name(dtype), "'s [", dtype_min, ", ", dtype_max,
            "], got [", lo, ", ", hi, "]");
  if (reduce_range) return {floor_div2(lo), floor_div2(hi)};
  return {lo, hi};
}

std::pair<Tensor, Tensor> calculate_qparams(const Tensor& min_val, const Tensor& max_val,
                                            const QParamsRule& rule) {
  QAT_CHECK(min_val.dtype() == DType::kFloat32 && max_val.dtype() == DType::kFloat32,
            "calculate_qparams: expected float32 min_val and max_val, got ",
            dtype_name(min_val.dtype()), " and ", dtype_name(max_val.dtype()));
  QAT_CHECK(min_val.shape() == max_val.shape() && min_val.dim() <= 1,
            "calculate_qparams: expected min_val and max_val of one shape, [] or [C], got ",
            shape_str(min_val.shape()), " and ", shape_str(max_val.shape()));
  const std::vector<float> mins = min_val.to_vector<float>();
  const std::vector<float> maxs = max_val.to_vector<float>();
  const bool unobserved =
      mins.empty() || (min_val.dim() == 0 && mins[0] == INFINITY && maxs[0] == -INFINITY);
  if (unobserved) {
    return {Tensor::full({1}, 1.0), Tensor::zeros({1}, DType::kInt32)};
  }
  const int64_t n = static_cast<int64_t>(mins.size());
  Tensor scale = Tensor::empty({n});
  Tensor zero_point = Tensor::empty({n}, DType::kInt32);
  float* s = scale.data<float>();
  int32_t* zp = zero_point.data<int32_t>();
  const float eps = static_cast<float>(rule.eps);
  const int64_t qmin = rule.quant_min, qmax = rule.quant_max;
  for (int64_t c = 0; c < n; ++c) {
    QAT_CHECK(mins[c] <= maxs[c], "calculate_qparams: expected min_val <= max_val, got ", mins[c],
              " > ", maxs[c], n > 1 ? " in channel " + std::to_string(c) : "");
    // Every step in float32, in PyTorch's order.
    const float min_neg = std::min(mins[c], 0.0f);
    const float max_pos = std::max(maxs[c], 0.0f);
    if (is_symmetric(rule.qscheme)) {
      const float amax = std::max(-min_neg, max_pos);
      const float divisor = rule.symmetric_scale == SymmetricScale::kHalfRange
                                ? static_cast<float>(static_cast<double>(qmax - qmin) / 2)
                                : static_cast<float>(qmax);
      s[c] = std::max(amax / divisor, eps);
      zp[c] = 0;
      if (rule.dtype == QDType::kQUInt8) {
        zp[c] = rule.has_customized_qrange ? static_cast<int32_t>(floor_div2(qmin + qmax)) : 128;
      }
    } else {
      s[c] = std::max((max_pos - min_neg) / static_cast<float>(qmax - qmin), eps);
      // torch.round: half to even
      const int64_t shifted = qmin - static_cast<int64_t>(std::nearbyint(min_neg / s[c]));
      zp[c] = static_cast<int32_t>(std::clamp(shifted, qmin, qmax));
    }
  }
  return {scale, zero_point};
}

QParams qparams_from_amax(const Tensor& amax, int64_t quant_min, int64_t quant_max,
                          RoundingMode rounding, std::optional<int64_t> axis, double eps) {
  QAT_CHECK(is_floating(amax.dtype()), "qparams_from_amax: expected a floating amax, got ",
            dtype_name(amax.dtype()));
  QAT_CHECK(quant_min < 0 && 0 < quant_max,
            "qparams_from_amax: expected a signed range quant_min < 0 < quant_max, got [",
            quant_min, ", ", quant_max, "]");
  if (axis) {
    QAT_CHECK(amax.dim() == 1, "qparams_from_amax: expected amax of shape [C] per channel, got ",
              shape_str(amax.shape()));
  } else {
    QAT_CHECK(amax.numel() == 1, "qparams_from_amax: expected a one-element amax per tensor, got ",
              shape_str(amax.shape()));
  }
  const std::vector<float> values = amax.to_vector<float>();
  const int64_t n = static_cast<int64_t>(values.size());
  QParams qp;
  qp.scale = Tensor::empty({n});
  qp.zero_point = Tensor::zeros({n}, DType::kInt32);
  for (int64_t c = 0; c < n; ++c) {
    QAT_CHECK(std::isfinite(values[c]) && values[c] >= 0,
              "qparams_from_amax: expected a finite amax >= 0, got ", values[c],
              n > 1 ? " in channel " + std::to_string(c) : "",
              " (HINT: did the calibrator see any data?)");
    qp.scale.data<float>()[c] =
        std::max(values[c] / static_cast<float>(quant_max), static_cast<float>(eps));
  }
  qp.axis = axis;
  qp.quant_min = quant_min;
  qp.quant_max = quant_max;
  qp.rounding = rounding;
  return qp;
}

}  // namespace qat::quant
