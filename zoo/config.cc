#include "zoo/config.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/check.h"
#include "zoo/config_reader.h"

namespace qat::zoo {
namespace {

using Json = nlohmann::json;

template <class E>
using NameTable = std::vector<std::pair<const char*, E>>;

const NameTable<DataConfig::Dataset> kDatasets = {
    {"fashion_mnist", DataConfig::Dataset::kFashionMnist},
    {"image_folder", DataConfig::Dataset::kImageFolder},
    {"synthetic", DataConfig::Dataset::kSynthetic},
};

const NameTable<bool> kOnError = {{"fail", false}, {"skip", true}};  // -> skip_unreadable

const NameTable<TransformConfig::Kind> kTransforms = {
    {"normalize", TransformConfig::Kind::kNormalize},
    {"pad", TransformConfig::Kind::kPad},
    {"resize", TransformConfig::Kind::kResize},
    {"center_crop", TransformConfig::Kind::kCenterCrop},
    {"random_crop", TransformConfig::Kind::kRandomCrop},
    {"random_resized_crop", TransformConfig::Kind::kRandomResizedCrop},
    {"random_horizontal_flip", TransformConfig::Kind::kRandomHorizontalFlip},
};

const NameTable<OptimizerConfig::Kind> kOptimizers = {
    {"sgd", OptimizerConfig::Kind::kSgd},
    {"adam", OptimizerConfig::Kind::kAdam},
    {"adamw", OptimizerConfig::Kind::kAdamW},
};

const NameTable<LrScheduleConfig::Kind> kLrSchedules = {
    {"cosine", LrScheduleConfig::Kind::kCosine},
    {"step", LrScheduleConfig::Kind::kStep},
    {"constant", LrScheduleConfig::Kind::kConstant},
};

const NameTable<CalibratorChoice> kCalibrators = {
    {"minmax", CalibratorChoice::kMinMax},
    {"max", CalibratorChoice::kMax},
    {"histogram", CalibratorChoice::kHistogram},
};

const std::vector<std::string> kTargets = {"tensorrt", "tnn", "fbgemm", "qnnpack",
                                           "qnnpack_perchannel"};

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

// "string \"10\"", "array": the type, and the value when it is short (as ConfigReader).
std::string describe(const Json& value) {
  return value.is_primitive() ? std::string(value.type_name()) + " " + value.dump()
                              : value.type_name();
}

// The JSON under `key` of `object` (a section already checked by its ConfigReader), or nullptr.
// ConfigReader reads scalars and int lists; the lists of strings, numbers and objects below
// read the JSON directly and report errors in ConfigReader's format.
const Json* raw(const Json* object, const std::string& key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  const auto it = object->find(key);
  return it == object->end() ? nullptr : &*it;
}

// Reads a string naming one entry of `table`; nullopt when absent.
template <class E>
std::optional<E> get_name(const ConfigReader& reader, const std::string& key,
                          const NameTable<E>& table) {
  const std::optional<std::string> name = reader.get_string(key);
  if (!name) return std::nullopt;
  for (const auto& [entry, value] : table) {
    if (*name == entry) return value;
  }
  reader.fail(key, "unknown value \"" + *name + "\" (known: " + known_names(table) + ")");
}

std::vector<std::string> get_string_list(const ConfigReader& reader, const Json* object,
                                         const std::string& key) {
  const Json* value = raw(object, key);
  if (value == nullptr) return {};
  if (!value->is_array()) reader.fail(key, "expected an array of strings, got " + describe(*value));
  std::vector<std::string> out;
  for (const Json& element : *value) {
    if (!element.is_string()) {
      reader.fail(key + "[" + std::to_string(out.size()) + "]",
                  "expected a string, got " + describe(element));
    }
    out.push_back(element.get<std::string>());
  }
  return out;
}

std::vector<double> get_double_list(const ConfigReader& reader, const Json* object,
                                    const std::string& key) {
  const Json* value = raw(object, key);
  if (value == nullptr) return {};
  if (!value->is_array()) reader.fail(key, "expected an array of numbers, got " + describe(*value));
  std::vector<double> out;
  for (const Json& element : *value) {
    if (!element.is_number()) {
      reader.fail(key + "[" + std::to_string(out.size()) + "]",
                  "expected a number, got " + describe(element));
    }
    out.push_back(element.get<double>());
  }
  return out;
}

std::optional<int64_t> get_int_at_least(const ConfigReader& reader, const std::string& key,
                                        int64_t min) {
  const std::optional<int64_t> value = reader.get_int(key);
  if (value && *value < min) {
    reader.fail(key, "must be at least " + std::to_string(min) + ", got " + std::to_string(*value));
  }
  return value;
}

std::optional<double> get_positive_double(const ConfigReader& reader, const std::string& key) {
  const std::optional<double> value = reader.get_double(key);
  if (value && !(*value > 0)) reader.fail(key, "must be > 0, got " + nn::py_float(*value));
  return value;
}

std::optional<double> get_non_negative_double(const ConfigReader& reader, const std::string& key) {
  const std::optional<double> value = reader.get_double(key);
  if (value && !(*value >= 0)) reader.fail(key, "must be >= 0, got " + nn::py_float(*value));
  return value;
}

// A [low, high] pair with 0 < low <= high (<= max when given); `fallback` when absent.
std::pair<double, double> get_range(const ConfigReader& reader, const Json* object,
                                    const std::string& key, std::pair<double, double> fallback,
                                    std::optional<double> max) {
  if (raw(object, key) == nullptr) return fallback;
  const std::vector<double> values = get_double_list(reader, object, key);
  const bool ordered = values.size() == 2 && values[0] > 0 && values[0] <= values[1];
  if (!ordered || (max && values[1] > *max)) {
    reader.fail(key, "expected [low, high] with 0 < low <= high" +
                         (max ? " <= " + nn::py_float(*max) : std::string()));
  }
  return {values[0], values[1]};
}

// Rejects `key` when set: it belongs to another choice (`why`).
void reject_if_set(const ConfigReader& reader, const Json* object, const std::string& key,
                   const std::string& why) {
  if (raw(object, key) != nullptr) reader.fail(key, why);
}

// ---- data

// The keys a transform takes besides "name".
std::vector<std::string> transform_keys(TransformConfig::Kind kind) {
  switch (kind) {
    case TransformConfig::Kind::kNormalize:
      return {"mean", "std"};
    case TransformConfig::Kind::kPad:
      return {"padding", "fill"};
    case TransformConfig::Kind::kResize:
    case TransformConfig::Kind::kCenterCrop:
      return {"size"};
    case TransformConfig::Kind::kRandomCrop:
      return {"size", "padding"};
    case TransformConfig::Kind::kRandomResizedCrop:
      return {"size", "scale", "ratio"};
    case TransformConfig::Kind::kRandomHorizontalFlip:
      return {"p"};
  }
  return {};
}

TransformConfig parse_transform(const Json& json, const std::string& file,
                                const std::string& path) {
  // The keys of the named transform, so that a typo lists the right ones; every transform's
  // keys while the name is missing or unknown (the reader then reports the name).
  std::vector<std::string> known = {"name", "mean",  "std",   "padding", "fill",
                                    "size", "scale", "ratio", "p"};
  if (const Json* name = raw(&json, "name"); name != nullptr && name->is_string()) {
    for (const auto& [entry, kind] : kTransforms) {
      if (*name != entry) continue;
      known = {"name"};
      for (const std::string& key : transform_keys(kind)) known.push_back(key);
    }
  }
  const ConfigReader reader(json, file, path, known);
  TransformConfig t;
  const std::optional<TransformConfig::Kind> kind = get_name(reader, "name", kTransforms);
  if (!kind) reader.fail("name", "missing (known: " + known_names(kTransforms) + ")");
  t.kind = *kind;
  switch (t.kind) {
    case TransformConfig::Kind::kNormalize: {
      t.mean = get_double_list(reader, &json, "mean");
      t.std = get_double_list(reader, &json, "std");
      if (t.mean.empty()) reader.fail("mean", "missing or empty (one value per channel)");
      if (t.std.empty()) reader.fail("std", "missing or empty (one value per channel)");
      if (t.mean.size() != t.std.size()) {
        reader.fail("std", std::to_string(t.std.size()) + " values, but mean has " +
                               std::to_string(t.mean.size()));
      }
      for (size_t i = 0; i < t.std.size(); ++i) {
        if (!(t.std[i] > 0)) reader.fail("std[" + std::to_string(i) + "]", "must be > 0");
      }
      break;
    }
    case TransformConfig::Kind::kPad:
      if (!reader.get_int("padding")) reader.fail("padding", "missing");
      t.padding = *get_int_at_least(reader, "padding", 0);
      t.fill = reader.get_double("fill").value_or(0.0);
      break;
    case TransformConfig::Kind::kResize: {
      const Json* value = raw(&json, "size");
      if (value != nullptr && value->is_number_integer()) {
        t.size = {*get_int_at_least(reader, "size", 1)};  // the shorter side
        break;
      }
      const std::optional<std::vector<int64_t>> size = reader.get_int_list("size");
      if (!size || size->size() != 2 || (*size)[0] < 1 || (*size)[1] < 1)
        reader.fail("size",
                    "expected [H, W] with 2 positive sizes, or one size for the shorter side");
      t.size = *size;
      break;
    }
    case TransformConfig::Kind::kCenterCrop:
    case TransformConfig::Kind::kRandomResizedCrop: {
      const std::optional<int64_t> size = get_int_at_least(reader, "size", 1);
      if (!size) reader.fail("size", "missing (the output's height and width)");
      t.size = {*size};
      if (t.kind == TransformConfig::Kind::kCenterCrop) break;
      t.scale = get_range(reader, &json, "scale", t.scale, /*max=*/1.0);
      t.ratio = get_range(reader, &json, "ratio", t.ratio, /*max=*/std::nullopt);
      break;
    }
    case TransformConfig::Kind::kRandomCrop: {
      const std::optional<int64_t> size = get_int_at_least(reader, "size", 1);
      if (!size) reader.fail("size", "missing (the crop's height and width)");
      t.size = {*size};
      t.padding = get_int_at_least(reader, "padding", 0).value_or(0);
      break;
    }
    case TransformConfig::Kind::kRandomHorizontalFlip:
      t.p = reader.get_double("p").value_or(0.5);
      if (!(t.p >= 0 && t.p <= 1)) reader.fail("p", "must be in [0, 1], got " + nn::py_float(t.p));
      break;
  }
  return t;
}

// The transform list data.<key> ("transforms", "eval_transforms"); nullopt when absent.
std::optional<std::vector<TransformConfig>> parse_transforms(const ConfigReader& data,
                                                             const Json* object,
                                                             const std::string& key,
                                                             const std::string& file) {
  const Json* value = raw(object, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_array())
    data.fail(key, "expected an array of transform objects, got " + describe(*value));
  std::vector<TransformConfig> out;
  for (const Json& element : *value) {
    out.push_back(
        parse_transform(element, file, "data." + key + "[" + std::to_string(out.size()) + "]"));
  }
  return out;
}

std::optional<DataConfig> parse_data_config(const ConfigReader& root, const Json& json,
                                            const std::string& file) {
  const std::optional<ConfigReader> data =
      root.section("data", {"dataset", "root", "train_dir", "test_dir", "on_error", "batch_size",
                            "workers", "num_samples", "seed", "image_shape", "train_subset",
                            "transforms", "eval_transforms"});
  if (!data) return std::nullopt;
  const Json* object = raw(&json, "data");
  DataConfig c;
  c.dataset = get_name(*data, "dataset", kDatasets).value_or(c.dataset);
  // Keys of the other datasets are mistakes, not silently ignored settings.
  const std::vector<std::pair<DataConfig::Dataset, std::vector<const char*>>> dataset_keys = {
      {DataConfig::Dataset::kFashionMnist, {"root"}},
      {DataConfig::Dataset::kImageFolder, {"train_dir", "test_dir", "on_error"}},
      {DataConfig::Dataset::kSynthetic, {"num_samples", "seed", "image_shape"}},
  };
  for (const auto& [dataset, keys] : dataset_keys) {
    if (dataset == c.dataset) continue;
    for (const char* key : keys) {
      const char* owner = kDatasets[static_cast<size_t>(dataset)].first;
      reject_if_set(*data, object, key,
                    std::string("only applies to \"dataset\": \"") + owner + "\"");
    }
  }
  c.root = data->get_string("root").value_or(c.root);
  if (c.dataset == DataConfig::Dataset::kImageFolder) {
    for (const auto& [key, dir] :
         {std::pair{"train_dir", &c.train_dir}, std::pair{"test_dir", &c.test_dir}}) {
      *dir = data->get_string(key).value_or("");
      if (dir->empty()) data->fail(key, "missing (a directory with one sub-directory per class)");
    }
    c.skip_unreadable = get_name(*data, "on_error", kOnError).value_or(false);
  }
  c.batch_size = get_int_at_least(*data, "batch_size", 1).value_or(c.batch_size);
  c.workers = get_int_at_least(*data, "workers", 1).value_or(c.workers);
  c.num_samples = get_int_at_least(*data, "num_samples", 1).value_or(c.num_samples);
  c.seed = get_int_at_least(*data, "seed", 0).value_or(c.seed);
  if (const std::optional<Shape> shape = data->get_int_list("image_shape")) {
    const bool positive =
        std::all_of(shape->begin(), shape->end(), [](int64_t d) { return d > 0; });
    if (shape->size() != 3 || !positive) {
      data->fail("image_shape",
                 "expected [C, H, W] with 3 positive sizes, got " + shape_str(*shape));
    }
    c.image_shape = *shape;
  }
  c.train_subset = get_int_at_least(*data, "train_subset", 1);
  c.transforms = parse_transforms(*data, object, "transforms", file).value_or(c.transforms);
  c.eval_transforms = parse_transforms(*data, object, "eval_transforms", file);
  return c;
}

// ---- qat

// QConfig::preset(target) with the "activation" / "weight" overrides of qat.qconfig. qat.calibrator
// "histogram" sets qconfig.activation.calibrator (so that its "method" and "percentile" apply).
quant::QConfig parse_qconfig(const ConfigReader& qat, const Json* object, const std::string& target,
                             std::optional<CalibratorChoice> calibrator, const std::string& file) {
  const std::optional<ConfigReader> overrides = qat.section("qconfig", {"activation", "weight"});
  Json preset_json = {{"preset", target}};
  if (overrides) {
    const Json* qconfig = raw(object, "qconfig");
    for (const char* part : {"activation", "weight"}) {
      if (const Json* value = raw(qconfig, part)) preset_json[part] = *value;
    }
  }
  const Json* activation = raw(&preset_json, "activation");
  const Json* activation_calibrator = raw(activation, "calibrator");
  const bool histogram_qconfig =
      activation_calibrator != nullptr && *activation_calibrator == "histogram";
  if (calibrator && histogram_qconfig && *calibrator != CalibratorChoice::kHistogram) {
    qat.fail("calibrator", std::string("\"") + calibrator_name(*calibrator) +
                               "\" conflicts with qconfig.activation.calibrator \"histogram\"");
  }
  if (calibrator == CalibratorChoice::kHistogram && activation_calibrator != nullptr &&
      !histogram_qconfig) {
    qat.fail("calibrator", "\"histogram\" conflicts with qconfig.activation.calibrator " +
                               activation_calibrator->dump());
  }
  const bool set_histogram = calibrator == CalibratorChoice::kHistogram && !histogram_qconfig &&
                             (activation == nullptr || activation->is_object());
  if (set_histogram) preset_json["activation"]["calibrator"] = "histogram";
  try {
    return quant::QConfig::from_json(preset_json, "qat.qconfig");
  } catch (const Error& e) {
    throw Error(file + ": " + e.what() +
                (set_histogram ? " (qat.calibrator \"histogram\" sets qat.qconfig.activation."
                                 "calibrator)"
                               : ""));
  }
}

// qat.calibrator (default: "histogram" when the qconfig's activations use it, else "minmax"),
// checked against the qconfig.
CalibratorChoice check_calibrator(const ConfigReader& qat, std::optional<CalibratorChoice> choice,
                                  const quant::QConfig& qconfig) {
  if (!choice) {
    return qconfig.activation.calibrator == quant::CalibratorKind::kHistogram
               ? CalibratorChoice::kHistogram
               : CalibratorChoice::kMinMax;
  }
  if (*choice == CalibratorChoice::kMax &&
      (!qconfig.activation.symmetric || qconfig.activation.per_channel)) {
    qat.fail("calibrator",
             "\"max\" sets symmetric per-tensor activation ranges [-amax, amax]; the " +
                 std::string(quant::target_name(qconfig.target)) +
                 " qconfig's activations are not per-tensor symmetric (use \"minmax\")");
  }
  return *choice;
}

std::optional<QatConfig> parse_qat_config(const ConfigReader& root, const Json& json,
                                          const std::string& file) {
  const std::optional<ConfigReader> qat =
      root.section("qat", {"target", "qconfig", "black_list", "calibration_batches", "calibrator",
                           "start_epoch", "freeze_bn_epoch", "freeze_observer_epoch", "lr"});
  if (!qat) return std::nullopt;
  const Json* object = raw(&json, "qat");
  QatConfig c;
  const std::optional<std::string> target = qat->get_string("target");
  if (!target) qat->fail("target", "missing (one of " + join(kTargets) + ")");
  if (std::find(kTargets.begin(), kTargets.end(), *target) == kTargets.end())
    qat->fail("target", "unknown target \"" + *target + "\" (known: " + join(kTargets) + ")");
  const std::optional<CalibratorChoice> calibrator = get_name(*qat, "calibrator", kCalibrators);
  c.qconfig = parse_qconfig(*qat, object, *target, calibrator, file);
  c.black_list = get_string_list(*qat, object, "black_list");
  for (size_t i = 0; i < c.black_list.size(); ++i) {
    if (c.black_list[i].empty()) qat->fail("black_list[" + std::to_string(i) + "]", "is empty");
  }
  c.calibration_batches = get_int_at_least(*qat, "calibration_batches", 1);
  c.calibrator = check_calibrator(*qat, calibrator, c.qconfig);
  c.start_epoch = get_int_at_least(*qat, "start_epoch", 0).value_or(0);
  c.freeze_bn_epoch = get_int_at_least(*qat, "freeze_bn_epoch", 0);
  c.freeze_observer_epoch = get_int_at_least(*qat, "freeze_observer_epoch", 0);
  c.lr = get_positive_double(*qat, "lr");
  return c;
}

// ---- export

std::optional<ExportConfig> parse_export_config(const ConfigReader& root) {
  const std::optional<ConfigReader> section = root.section("export", {"onnx", "tnn", "float"});
  if (!section) return std::nullopt;
  ExportConfig c;
  for (const auto& [key, path] : {std::pair{"onnx", &c.onnx}, std::pair{"tnn", &c.tnn}}) {
    const std::optional<std::string> value = section->get_string(key);
    if (value && value->empty()) section->fail(key, "is empty (leave the key out for no file)");
    *path = value.value_or("");
  }
  c.float_model = section->get_bool("float").value_or(false);
  return c;
}

// ---- train

OptimizerConfig parse_optimizer(const ConfigReader& train, const Json* object) {
  const std::optional<ConfigReader> section = train.section(
      "optimizer", {"name", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps"});
  OptimizerConfig c;
  if (!section) return c;
  const Json* json = raw(object, "optimizer");
  c.kind = get_name(*section, "name", kOptimizers).value_or(c.kind);
  const bool sgd = c.kind == OptimizerConfig::Kind::kSgd;
  for (const char* key : {"momentum", "nesterov"}) {
    if (!sgd) reject_if_set(*section, json, key, "only applies to \"name\": \"sgd\"");
  }
  for (const char* key : {"betas", "eps"}) {
    if (sgd) reject_if_set(*section, json, key, "only applies to \"adam\" and \"adamw\"");
  }
  c.lr = get_positive_double(*section, "lr").value_or(c.lr);
  c.momentum = get_non_negative_double(*section, "momentum").value_or(c.momentum);
  c.nesterov = section->get_bool("nesterov").value_or(c.nesterov);
  if (c.nesterov && !(c.momentum > 0))
    section->fail("nesterov", "needs \"momentum\" > 0 (as torch.optim.SGD)");
  c.weight_decay = get_non_negative_double(*section, "weight_decay").value_or(c.weight_decay);
  if (raw(json, "betas") != nullptr) {
    const std::vector<double> betas = get_double_list(*section, json, "betas");
    const auto in_range = [](double b) { return b >= 0 && b < 1; };
    if (betas.size() != 2 || !in_range(betas[0]) || !in_range(betas[1]))
      section->fail("betas", "expected [beta1, beta2] with each in [0, 1)");
    c.betas = {betas[0], betas[1]};
  }
  c.eps = get_positive_double(*section, "eps").value_or(c.eps);
  return c;
}

LrScheduleConfig parse_lr_schedule(const ConfigReader& train, const Json* object) {
  const std::optional<ConfigReader> section = train.section(
      "lr_schedule", {"name", "warmup_epochs", "warmup_start_factor", "step_epochs", "gamma"});
  LrScheduleConfig c;
  if (!section) return c;
  const Json* json = raw(object, "lr_schedule");
  c.kind = get_name(*section, "name", kLrSchedules).value_or(c.kind);
  if (c.kind != LrScheduleConfig::Kind::kStep) {
    for (const char* key : {"step_epochs", "gamma"})
      reject_if_set(*section, json, key, "only applies to \"name\": \"step\"");
  }
  c.warmup_epochs = get_non_negative_double(*section, "warmup_epochs").value_or(c.warmup_epochs);
  c.warmup_start_factor =
      get_positive_double(*section, "warmup_start_factor").value_or(c.warmup_start_factor);
  if (c.warmup_start_factor > 1)
    section->fail("warmup_start_factor",
                  "must be in (0, 1], got " + nn::py_float(c.warmup_start_factor));
  c.step_epochs = get_int_at_least(*section, "step_epochs", 1).value_or(c.step_epochs);
  c.gamma = get_positive_double(*section, "gamma").value_or(c.gamma);
  return c;
}

std::optional<TrainConfig> parse_train_config(const ConfigReader& root, const Json& json,
                                              const std::string& model_name) {
  const std::optional<ConfigReader> train = root.section(
      "train", {"epochs", "threads", "seed", "optimizer", "lr_schedule", "out_dir", "log_every",
                "eval_batches", "final_eval_batches", "max_steps_per_epoch"});
  if (!train) return std::nullopt;
  const Json* object = raw(&json, "train");
  TrainConfig c;
  c.epochs = get_int_at_least(*train, "epochs", 1).value_or(c.epochs);
  c.threads = get_int_at_least(*train, "threads", 0).value_or(c.threads);
  c.seed = get_int_at_least(*train, "seed", 0).value_or(c.seed);
  c.optimizer = parse_optimizer(*train, object);
  c.lr_schedule = parse_lr_schedule(*train, object);
  c.out_dir = train->get_string("out_dir").value_or("out/" + model_name);
  if (c.out_dir.empty()) train->fail("out_dir", "is empty");
  c.log_every = get_int_at_least(*train, "log_every", 1).value_or(c.log_every);
  c.eval_batches = get_int_at_least(*train, "eval_batches", 0).value_or(c.eval_batches);
  c.final_eval_batches =
      get_int_at_least(*train, "final_eval_batches", 0).value_or(c.final_eval_batches);
  c.max_steps_per_epoch = get_int_at_least(*train, "max_steps_per_epoch", 1);
  return c;
}

std::optional<CheckpointConfig> parse_checkpoint_config(const ConfigReader& root) {
  const std::optional<ConfigReader> section =
      root.section("checkpoint", {"dir", "keep_last", "keep_best", "every_steps"});
  if (!section) return std::nullopt;
  CheckpointConfig c;
  c.dir = section->get_string("dir").value_or("");
  if (section->get_string("dir") && c.dir.empty())
    section->fail("dir", "is empty (leave the key out for <train.out_dir>/checkpoints)");
  c.keep_last = get_int_at_least(*section, "keep_last", 1).value_or(c.keep_last);
  c.keep_best = section->get_bool("keep_best").value_or(c.keep_best);
  c.every_steps = get_int_at_least(*section, "every_steps", 0).value_or(c.every_steps);
  return c;
}

// Cross-section checks: the epochs the qat section names must lie within train.epochs.
void check_epochs(const ConfigReader& root, const Config& config) {
  if (!config.qat || !config.train) return;
  const int64_t epochs = config.train->epochs;
  const std::pair<const char*, std::optional<int64_t>> epoch_keys[] = {
      {"start_epoch", config.qat->start_epoch},
      {"freeze_bn_epoch", config.qat->freeze_bn_epoch},
      {"freeze_observer_epoch", config.qat->freeze_observer_epoch},
  };
  for (const auto& [key, epoch] : epoch_keys) {
    if (epoch && *epoch > epochs) {
      root.fail(std::string("qat.") + key,
                std::to_string(*epoch) + " is beyond train.epochs = " + std::to_string(epochs));
    }
  }
  if (config.qat->start_epoch >= epochs) {
    root.fail("qat.start_epoch", "must be below train.epochs = " + std::to_string(epochs) +
                                     " (QAT needs at least one epoch)");
  }
}

}  // namespace

const char* calibrator_name(CalibratorChoice calibrator) {
  for (const auto& [name, value] : kCalibrators) {
    if (value == calibrator) return name;
  }
  QAT_CHECK(false, "calibrator_name: invalid CalibratorChoice ", static_cast<int>(calibrator));
  return "";
}

Config parse_config(const nlohmann::json& json, const std::string& file) {
  const ConfigReader root(json, file, /*path=*/"",
                          {"model", "data", "qat", "export", "train", "checkpoint"});
  Config config;
  config.model = parse_model_config(root);
  config.data = parse_data_config(root, json, file);
  config.qat = parse_qat_config(root, json, file);
  config.exports = parse_export_config(root);
  config.train = parse_train_config(root, json, config.model.name);
  config.checkpoint = parse_checkpoint_config(root);
  check_epochs(root, config);
  return config;
}

Config load_config(const std::string& path) { return parse_config(load_config_file(path), path); }

}  // namespace qat::zoo
