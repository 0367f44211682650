#include "quant/qconfig.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "core/check.h"
#include "quant/observer.h"

namespace qat::quant {
namespace {

using Json = nlohmann::json;

template <class E>
using NameTable = std::vector<std::pair<const char*, E>>;

const NameTable<Target> kTargets = {
    {"tensorrt", Target::kTensorRT},
    {"tnn", Target::kTNN},
    {"fbgemm", Target::kFbgemm},
    {"qnnpack", Target::kQnnpack},
    {"qnnpack_perchannel", Target::kQnnpackPerChannel},
};

// (per_channel, symmetric) as PyTorch's qscheme names, without the "torch." prefix.
const NameTable<std::pair<bool, bool>> kSchemes = {
    {"per_tensor_symmetric", {false, true}},
    {"per_tensor_affine", {false, false}},
    {"per_channel_symmetric", {true, true}},
    {"per_channel_affine", {true, false}},
};

const NameTable<ObserverKind> kObservers = {
    {"minmax", ObserverKind::kMinMax},
    {"moving_average_minmax", ObserverKind::kMovingAverageMinMax},
};

const NameTable<CalibratorKind> kCalibrators = {
    {"none", CalibratorKind::kNone},
    {"histogram", CalibratorKind::kHistogram},
};

const NameTable<CalibMethod> kMethods = {
    {"percentile", CalibMethod::kPercentile},
    {"mse", CalibMethod::kMse},
    {"entropy", CalibMethod::kEntropy},
};

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

template <class E>
std::string known_names(const NameTable<E>& table) {
  std::vector<std::string> names;
  for (const auto& entry : table) names.push_back(entry.first);
  return join(names);
}

template <class E>
std::optional<E> find_name(const NameTable<E>& table, const std::string& name) {
  for (const auto& [entry_name, value] : table) {
    if (name == entry_name) return value;
  }
  return std::nullopt;
}

// "string \"10\"", "array": a JSON value's type, and the value itself when it is short.
std::string describe(const Json& value) {
  return value.is_primitive() ? std::string(value.type_name()) + " " + value.dump()
                              : value.type_name();
}

// One JSON object read strictly: construction rejects keys outside `known`, and every error is
// a qat::Error "<path>.<key>: <message>".
class StrictObject {
 public:
  StrictObject(const Json& json, std::string path, const std::vector<std::string>& known)
      : json_(json), path_(std::move(path)) {
    QAT_CHECK(json.is_object(), path_, ": expected a JSON object, got ", describe(json));
    for (const auto& item : json.items()) {
      if (std::find(known.begin(), known.end(), item.key()) == known.end())
        fail(item.key(), "unknown key (known: " + join(known) + ")");
    }
  }

  const Json* find(const std::string& key) const {
    const auto it = json_.find(key);
    return it == json_.end() ? nullptr : &*it;
  }

  void read(const std::string& key, bool& out) const {
    if (const Json* v = find(key)) {
      if (!v->is_boolean()) fail(key, "expected true or false, got " + describe(*v));
      out = v->get<bool>();
    }
  }

  void read(const std::string& key, int64_t& out) const {
    if (const Json* v = find(key)) {
      if (!v->is_number_integer() ||
          (v->is_number_unsigned() &&
           v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
        fail(key, "expected an integer, got " + describe(*v));
      }
      out = v->get<int64_t>();
    }
  }

  void read(const std::string& key, double& out) const {
    if (const Json* v = find(key)) {
      if (!v->is_number()) fail(key, "expected a number, got " + describe(*v));
      out = v->get<double>();
    }
  }

  // A string naming one entry of `table`.
  template <class E>
  void read(const std::string& key, const NameTable<E>& table, E& out) const {
    if (const Json* v = find(key)) {
      if (!v->is_string()) fail(key, "expected a string, got " + describe(*v));
      const std::optional<E> value = find_name(table, v->get<std::string>());
      if (!value) fail(key, "unknown value " + v->dump() + " (known: " + known_names(table) + ")");
      out = *value;
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw Error(path_ + "." + key + ": " + message);
  }

 private:
  const Json& json_;
  std::string path_;
};

// Applies the overrides of one "activation" / "weight" object to `config`.
void read_fake_quant_config(const Json& json, const std::string& path, FakeQuantConfig& config) {
  const StrictObject object(
      json, path,
      {"bits", "signed", "scheme", "ch_axis", "narrow_range", "reduce_range", "observer",
       "averaging_constant", "calibrator", "method", "percentile", "learnable_scale"});
  object.read("bits", config.bits);
  object.read("signed", config.is_signed);
  std::pair<bool, bool> scheme{config.per_channel, config.symmetric};
  object.read("scheme", kSchemes, scheme);
  config.per_channel = scheme.first;
  config.symmetric = scheme.second;
  object.read("ch_axis", config.ch_axis);
  object.read("narrow_range", config.narrow_range);
  object.read("reduce_range", config.reduce_range);
  object.read("observer", kObservers, config.observer);
  object.read("averaging_constant", config.averaging_constant);
  object.read("calibrator", kCalibrators, config.calibrator);
  object.read("method", kMethods, config.method);
  object.read("percentile", config.percentile);
  object.read("learnable_scale", config.learnable_scale);
  // A method without the histogram would be silently ignored: say so instead.
  for (const char* key : {"method", "percentile"}) {
    if (object.find(key) != nullptr && config.calibrator != CalibratorKind::kHistogram)
      object.fail(key, "only applies with \"calibrator\": \"histogram\"");
  }
}

// The grid before reduce_range: [-2^(bits-1) (+1 if narrow), 2^(bits-1) - 1] or [0, 2^bits - 1].
std::pair<int64_t, int64_t> full_range(const FakeQuantConfig& c) {
  QAT_CHECK(c.bits >= 2 && c.bits <= 8, "FakeQuantConfig: bits must be in 2..8, got ", c.bits);
  if (!c.is_signed) return {0, (int64_t{1} << c.bits) - 1};
  const int64_t half = int64_t{1} << (c.bits - 1);
  return {-half + (c.narrow_range ? 1 : 0), half - 1};
}

// The rules every target shares; `path` names the config ("qconfig.weight").
void validate_common(const FakeQuantConfig& c, const std::string& path) {
  QAT_CHECK(c.bits >= 2 && c.bits <= 8, path, ": bits must be in 2..8, got ", c.bits);
  QAT_CHECK(!c.narrow_range || c.is_signed, path,
            ": narrow_range needs a signed grid (it drops the most negative code), got "
            "signed = false");
  QAT_CHECK(!c.per_channel || c.ch_axis >= 0, path, ": ch_axis must be >= 0, got ", c.ch_axis);
  QAT_CHECK(c.averaging_constant > 0 && c.averaging_constant <= 1, path,
            ": averaging_constant must be in (0, 1], got ", c.averaging_constant);
  QAT_CHECK(c.eps > 0, path, ": eps must be > 0, got ", c.eps);
  if (c.calibrator == CalibratorKind::kHistogram) {
    QAT_CHECK(!c.learnable_scale, path,
              ": learnable_scale (LSQ) trains the scale, so it cannot also take it from the "
              "histogram calibrator (use \"calibrator\": \"none\")");
    QAT_CHECK(!c.per_channel, path,
              ": the histogram calibrator is per tensor only, got a per-channel scheme");
    QAT_CHECK(c.symmetric, path,
              ": the histogram calibrator computes a symmetric amax, got an affine scheme");
    QAT_CHECK(c.percentile > 0 && c.percentile <= 100, path,
              ": percentile must be in (0, 100], got ", c.percentile);
  }
}

bool is_int8_runtime(Target target) {
  return target == Target::kTensorRT || target == Target::kTNN;
}

RoundingMode target_rounding(Target target) {
  switch (target) {
    case Target::kTensorRT:
      return RoundingMode::kHalfEvenDiv;
    case Target::kTNN:
      return RoundingMode::kHalfAway;
    default:
      return RoundingMode::kHalfEvenMul;
  }
}

SymmetricScale target_symmetric_scale(Target target) {
  return is_int8_runtime(target) ? SymmetricScale::kQuantMax : SymmetricScale::kHalfRange;
}

const char* symmetric_scale_name(SymmetricScale rule) {
  return rule == SymmetricScale::kQuantMax ? "amax / quant_max"
                                           : "amax / ((quant_max - quant_min) / 2)";
}

// TensorRT and TNN run symmetric int8 with zero point 0, activations per tensor and saturated
// to [-128, 127] by the runtime: any other activation grid would train on numbers that
// deployment does not produce. Weights may use fewer bits: their codes still fit int8.
void validate_int8_runtime(const QConfig& q, const std::string& path) {
  const char* target = target_name(q.target);
  const std::pair<const char*, const FakeQuantConfig*> parts[] = {{"activation", &q.activation},
                                                                  {"weight", &q.weight}};
  for (const auto& [part, c] : parts) {
    QAT_CHECK(c->symmetric, path, ".", part, ": ", target,
              " needs a symmetric scheme (zero point 0), got an affine one");
    QAT_CHECK(c->is_signed, path, ".", part, ": ", target, " runs int8, got signed = false");
  }
  const FakeQuantConfig& a = q.activation;
  QAT_CHECK(!a.per_channel, path, ".activation: ", target,
            " quantizes activations per tensor, got a per-channel scheme");
  QAT_CHECK(a.quant_min() == -128 && a.quant_max() == 127, path, ".activation: ", target,
            " saturates activations to [-128, 127], got [", a.quant_min(), ", ", a.quant_max(),
            "] (bits ", a.bits, ", narrow_range ", a.narrow_range ? "true" : "false",
            ", reduce_range ", a.reduce_range ? "true" : "false", ")");
}

// TensorRT / TNN: symmetric int8 with scale amax / 127 (onnx_qdq.md §10, tnn_format.md §3.3).
QConfig int8_runtime_preset(Target target) {
  QConfig q;
  q.target = target;
  FakeQuantConfig& a = q.activation;
  a.rounding = target_rounding(target);
  a.symmetric_scale = target_symmetric_scale(target);
  FakeQuantConfig& w = q.weight;
  w = a;
  w.per_channel = true;
  w.narrow_range = true;
  w.averaging_constant = 1.0;  // memoryless: amax of the current weights (onnx_qdq.md §10.2)
  return q;
}

// get_default_qat_qconfig(backend, version=0) of PyTorch 1.13: activations
// FakeQuantize(MovingAverageMinMaxObserver, quant_min=0, quant_max=255, reduce_range) and
// weights default_(per_channel_)weight_fake_quant, all with averaging constant 0.01 and
// eps = float32 eps (the FakeQuantConfig defaults).
QConfig pytorch_preset(Target target) {
  QConfig q;
  q.target = target;
  FakeQuantConfig& a = q.activation;
  a.is_signed = false;
  a.symmetric = false;
  a.reduce_range = target == Target::kFbgemm;
  q.weight.per_channel = target != Target::kQnnpack;
  return q;
}

QConfig make_preset(Target target) {
  return is_int8_runtime(target) ? int8_runtime_preset(target) : pytorch_preset(target);
}

}  // namespace

const char* target_name(Target target) {
  for (const auto& [name, value] : kTargets) {
    if (value == target) return name;
  }
  QAT_CHECK(false, "target_name: invalid Target ", static_cast<int>(target));
  return "";
}

QScheme FakeQuantConfig::qscheme() const {
  if (per_channel) return symmetric ? QScheme::kPerChannelSymmetric : QScheme::kPerChannelAffine;
  return symmetric ? QScheme::kPerTensorSymmetric : QScheme::kPerTensorAffine;
}

int64_t FakeQuantConfig::quant_min() const {
  const auto [lo, hi] = full_range(*this);
  return calculate_qmin_qmax(lo, hi, dtype(), reduce_range).first;
}

int64_t FakeQuantConfig::quant_max() const {
  const auto [lo, hi] = full_range(*this);
  return calculate_qmin_qmax(lo, hi, dtype(), reduce_range).second;
}

std::shared_ptr<FakeQuantize> FakeQuantConfig::make_fake_quantize() const {
  validate_common(*this, "FakeQuantConfig");
  // The full range plus reduce_range, so that the observer halves it as PyTorch's does.
  const auto [lo, hi] = full_range(*this);
  const ObserverOptions options = ObserverOptions()
                                      .dtype(dtype())
                                      .qscheme(qscheme())
                                      .reduce_range(reduce_range)
                                      .quant_min(lo)
                                      .quant_max(hi)
                                      .eps(eps)
                                      .symmetric_scale(symmetric_scale)
                                      .averaging_constant(averaging_constant)
                                      .ch_axis(ch_axis);
  const bool moving_average = observer == ObserverKind::kMovingAverageMinMax;
  std::shared_ptr<ObserverBase> obs;
  if (per_channel) {
    obs = moving_average ? std::make_shared<MovingAveragePerChannelMinMaxObserver>(options)
                         : std::make_shared<PerChannelMinMaxObserver>(options);
  } else {
    obs = moving_average ? std::make_shared<MovingAverageMinMaxObserver>(options)
                         : std::make_shared<MinMaxObserver>(options);
  }
  return std::make_shared<FakeQuantize>(
      obs, FakeQuantizeOptions().rounding(rounding).learnable_scale(learnable_scale));
}

HistogramCalibrator FakeQuantConfig::make_histogram_calibrator() const {
  QAT_CHECK(calibrator == CalibratorKind::kHistogram,
            "FakeQuantConfig::make_histogram_calibrator: the calibrator is \"none\" (the "
            "observer's own range); set \"calibrator\": \"histogram\"");
  return HistogramCalibrator(HistogramCalibratorOptions().num_bits(bits).is_unsigned(!is_signed));
}

QConfig QConfig::preset(const std::string& target) {
  const std::optional<Target> value = find_name(kTargets, target);
  QAT_CHECK(value.has_value(), "QConfig::preset: unknown target '", target,
            "' (known: ", known_names(kTargets), ")");
  return make_preset(*value);
}

QConfig QConfig::from_json(const Json& json, const std::string& path) {
  const StrictObject object(json, path, {"preset", "activation", "weight"});
  if (object.find("preset") == nullptr)
    object.fail("preset", "missing; one of " + known_names(kTargets));
  Target target = Target::kTensorRT;
  object.read("preset", kTargets, target);
  QConfig q = make_preset(target);
  if (const Json* a = object.find("activation"))
    read_fake_quant_config(*a, path + ".activation", q.activation);
  if (const Json* w = object.find("weight")) read_fake_quant_config(*w, path + ".weight", q.weight);
  q.validate(path);
  return q;
}

void QConfig::validate(const std::string& path) const {
  const char* name = target_name(target);
  const std::pair<const char*, const FakeQuantConfig*> parts[] = {{"activation", &activation},
                                                                  {"weight", &weight}};
  for (const auto& [part, c] : parts) {
    const std::string where = path + "." + part;
    validate_common(*c, where);
    QAT_CHECK(c->rounding == target_rounding(target), where, ": ", name, " rounds with ",
              rounding_mode_name(target_rounding(target)), ", got ",
              rounding_mode_name(c->rounding));
    QAT_CHECK(c->symmetric_scale == target_symmetric_scale(target), where, ": ", name,
              " computes symmetric scales as ",
              symmetric_scale_name(target_symmetric_scale(target)), ", got ",
              symmetric_scale_name(c->symmetric_scale));
  }
  if (is_int8_runtime(target)) validate_int8_runtime(*this, path);
}

}  // namespace qat::quant
