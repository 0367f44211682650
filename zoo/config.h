#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "quant/qconfig.h"
#include "zoo/registry.h"

namespace qat::zoo {

// One entry of "data.transforms": a torchvision-style transform of nn/data/transforms.h, e.g.
//   {"name": "normalize", "mean": [0.286], "std": [0.353]}
//   {"name": "pad", "padding": 2, "fill": 0}
//   {"name": "resize", "size": [32, 32]}
//   {"name": "random_crop", "size": 28, "padding": 4}
//   {"name": "random_horizontal_flip", "p": 0.5}
struct TransformConfig {
  enum class Kind { kNormalize, kPad, kResize, kRandomCrop, kRandomHorizontalFlip };
  Kind kind = Kind::kNormalize;
  std::vector<double> mean, std;  // normalize
  int64_t padding = 0;            // pad, random_crop
  double fill = 0;                // pad
  std::vector<int64_t> size;      // resize: [H, W]; random_crop: [size]
  double p = 0.5;                 // random_horizontal_flip
};

// The "data" section: where training and calibration images come from.
//   "data": {"dataset": "fashion_mnist", "root": "/usr/share/datasets/fashion-mnist",
//            "batch_size": 64, "workers": 2, "transforms": [...]}
//   "data": {"dataset": "synthetic", "num_samples": 64, "seed": 0, "image_shape": [1, 28, 28]}
struct DataConfig {
  enum class Dataset { kFashionMnist, kSynthetic };
  Dataset dataset = Dataset::kFashionMnist;
  std::string root = "/usr/share/datasets/fashion-mnist";  // fashion_mnist: the IDX .gz files
  int64_t batch_size = 64;
  int64_t workers = 1;  // DataLoader threads
  // synthetic (nn::data::SyntheticDataset): examples, seed, and the [C, H, W] of one image
  // (empty: model.input_shape without N).
  int64_t num_samples = 256;
  int64_t seed = 0;
  Shape image_shape;
  std::vector<TransformConfig> transforms;  // applied to every image, in order
};

// Where calibration takes the activation ranges from (qat.calibrator).
enum class CalibratorChoice {
  kMinMax,     // "minmax": the qconfig's observers, fake quant on (PyTorch's calibration)
  kMax,        // "max": max |x| per activation quantizer (quant::MaxCalibrator), fake quant off
  kHistogram,  // "histogram": quant::HistogramCalibrator with qconfig.activation's method and
               // percentile, fake quant off
};
const char* calibrator_name(CalibratorChoice calibrator);

// The "qat" section: how the model is prepared for quantization-aware training.
//   "qat": {"target": "tnn", "qconfig": {"activation": {"observer": "minmax"}},
//           "black_list": ["fc"], "calibration_batches": 16, "calibrator": "minmax",
//           "start_epoch": 0, "freeze_bn_epoch": 3, "freeze_observer_epoch": 4}
struct QatConfig {
  // QConfig::preset(target) with the qconfig overrides ("activation", "weight"; see
  // QConfig::from_json). qconfig.target is the target.
  quant::QConfig qconfig = quant::QConfig::preset("tensorrt");
  std::vector<std::string> black_list;  // node names or globs left in float
  std::optional<int64_t> calibration_batches;
  CalibratorChoice calibrator = CalibratorChoice::kMinMax;
  int64_t start_epoch = 0;                       // the epoch QAT starts at (float training before)
  std::optional<int64_t> freeze_bn_epoch;        // BN switches to running statistics
  std::optional<int64_t> freeze_observer_epoch;  // observers stop; the scales stay fixed
};

// The "export" section: what `qat export` writes (and `qat verify` checks) when no flag says
// otherwise. Paths are relative to the working directory.
//   "export": {"onnx": "out/resnet18_qat.onnx", "tnn": "out/resnet18_qat", "float": false}
struct ExportConfig {
  std::string onnx;          // the .onnx file; empty: none
  std::string tnn;           // the TNN prefix (<tnn>.tnnproto, <tnn>.tnnmodel); empty: none
  bool float_model = false;  // "float": export the float model instead of the int8 one
};

// A qat config file (zoo/configs/*.json), one member per top-level section; "train" follows,
// parsed by its own function with a ConfigReader.
struct Config {
  ModelConfig model;
  std::optional<DataConfig> data;
  std::optional<QatConfig> qat;
  std::optional<ExportConfig> exports;  // the "export" section
};

// Parses a config strictly: an unknown section or key, a wrong type or an impossible value is
// an error naming `file` and the JSON path ("c.json: qat.qconfig.weight.bits: ...").
Config parse_config(const nlohmann::json& json, const std::string& file);

// load_config_file + parse_config.
Config load_config(const std::string& path);

}  // namespace qat::zoo
