#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/kernels/fake_quant.h"
#include "quant/calibrator.h"
#include "quant/fake_quantize.h"
#include "quant/qparams.h"

namespace qat::quant {

// The backend the int8 model will run on. It fixes the rounding, the integer ranges and which
// overrides make sense (DESIGN.md, "Targets decide the numerics").
enum class Target {
  kTensorRT,           // "tensorrt"
  kTNN,                // "tnn"
  kFbgemm,             // "fbgemm": PyTorch 1.13 get_default_qat_qconfig("fbgemm", 0)
  kQnnpack,            // "qnnpack": get_default_qat_qconfig("qnnpack", 0)
  kQnnpackPerChannel,  // "qnnpack_perchannel": qnnpack activations, fbgemm's per-channel weights
                       // (= get_default_qat_qconfig("onednn", 0))
};
const char* target_name(Target target);

// The statistic the observer keeps while training (PyTorch's observer classes; per-channel
// variants follow from FakeQuantConfig::per_channel).
enum class ObserverKind {
  kMinMax,               // running min / max over all batches ("minmax")
  kMovingAverageMinMax,  // min += c * (batch_min - min) ("moving_average_minmax"); c = 1 is
                         // memoryless: the range of the current batch only
};

// Where a calibration pass takes the range from before QAT starts.
enum class CalibratorKind {
  kNone,       // the observer's own min / max ("none")
  kHistogram,  // HistogramCalibrator amax, with `method` ("histogram"; per tensor, symmetric)
};

// How to fake-quantize one kind of tensor (weights or activations): plain data. The integer
// range follows from bits / is_signed / narrow_range / reduce_range (quant_min(), quant_max()).
struct FakeQuantConfig {
  int64_t bits = 8;       // 2..8
  bool is_signed = true;  // qint8-like grid (true) or quint8-like (false)
  bool per_channel = false;
  int64_t ch_axis = 0;        // per_channel only; 0 = output channels of conv / linear weights
  bool symmetric = true;      // zero point 0 (quint8: the midpoint), else affine
  bool narrow_range = false;  // signed only: [-(2^(bits-1) - 1), 2^(bits-1) - 1]
  bool reduce_range = false;  // PyTorch's reduce_range: the range halved (fbgemm activations)
  ObserverKind observer = ObserverKind::kMovingAverageMinMax;
  double averaging_constant = 0.01;  // kMovingAverageMinMax only; in (0, 1]
  CalibratorKind calibrator = CalibratorKind::kNone;
  CalibMethod method = CalibMethod::kPercentile;  // kHistogram only
  double percentile = 99.99;                      // kPercentile only; in (0, 100]
  bool learnable_scale = false;                   // LSQ (FakeQuantizeOptions::learnable_scale)
  // Set by the target, not by overrides: the rounding of x / scale and the symmetric scale rule
  // (amax / 127.5 for PyTorch, amax / 127 for TensorRT and TNN).
  RoundingMode rounding = RoundingMode::kHalfEvenMul;
  SymmetricScale symmetric_scale = SymmetricScale::kHalfRange;
  double eps = kFloat32Eps;  // lower bound of the scale

  QScheme qscheme() const;
  QDType dtype() const { return is_signed ? QDType::kQInt8 : QDType::kQUInt8; }
  // The effective integer range, after narrow_range and reduce_range.
  int64_t quant_min() const;
  int64_t quant_max() const;
  // A new FakeQuantize with the observer this config describes (PyTorch's qconfig.weight() /
  // qconfig.activation()). Checks the target-independent rules first.
  std::shared_ptr<FakeQuantize> make_fake_quantize() const;
  // A calibrator for CalibratorKind::kHistogram (error otherwise); its amax goes to the
  // FakeQuantize through activation_post_process()->set_min_max() and update_qparams().
  HistogramCalibrator make_histogram_calibrator() const;
};

// How a model is fake-quantized for one target: the target, plus one FakeQuantConfig for
// activations and one for weights. Plain data; preset() and from_json() return validated ones.
//   QConfig::preset("tensorrt")
//   QConfig::from_json({{"preset", "tnn"}, {"activation", {{"calibrator", "histogram"}}}})
struct QConfig {
  Target target = Target::kTensorRT;
  FakeQuantConfig activation;
  FakeQuantConfig weight;

  // "tensorrt": activations int8 per-tensor symmetric, scale amax / 127, zero point 0, moving
  //   average 0.01; weights int8 per-channel symmetric along axis 0, narrow [-127, 127], scale
  //   amax / 127 of the current weights (memoryless); rounding rint(x / s) (half even).
  // "tnn": the same grids, rounding half away from zero (TNN's float2int8).
  // "fbgemm", "qnnpack", "qnnpack_perchannel": PyTorch 1.13 get_default_qat_qconfig(backend,
  //   version=0) exactly (onnx_qdq.md §8): quint8 affine activations [0, 255] ([0, 127] with
  //   fbgemm's reduce_range), qint8 symmetric weights [-128, 127], moving averages 0.01,
  //   eps = float32 eps, rounding nearbyint(x * (1 / s)).
  static QConfig preset(const std::string& target);

  // A preset with overrides; strict: an unknown key, a wrong type or an impossible combination
  // is a qat::Error naming `path` and the JSON path. Keys: "preset" (required), "activation"
  // and "weight", each with optional "bits", "signed", "scheme" ("per_tensor_symmetric",
  // "per_tensor_affine", "per_channel_symmetric", "per_channel_affine"), "ch_axis",
  // "narrow_range", "reduce_range", "observer" ("minmax", "moving_average_minmax"),
  // "averaging_constant", "calibrator" ("none", "histogram"), "method" ("percentile", "mse",
  // "entropy"), "percentile", "learnable_scale".
  static QConfig from_json(const nlohmann::json& json, const std::string& path = "qconfig");

  // Throws qat::Error (prefixed with `path`) unless this config is possible for the target:
  // bits 2..8, narrow range only when signed, no learnable scale with a histogram calibrator, a
  // histogram calibrator only per tensor and symmetric, the target's rounding and scale rule;
  // tensorrt / tnn also need symmetric signed grids and per-tensor activations on [-128, 127].
  void validate(const std::string& path = "qconfig") const;
};

}  // namespace qat::quant
