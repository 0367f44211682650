#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/shape.h"
#include "quant/qconfig.h"
#include "zoo/registry.h"

namespace qat::zoo {

// One entry of "data.transforms": a torchvision-style transform of nn/data/transforms.h, e.g.
//   {"name": "normalize", "mean": [0.286], "std": [0.353]}
//   {"name": "pad", "padding": 2, "fill": 0}
//   {"name": "resize", "size": [32, 32]}          (or "size": 256: the shorter side)
//   {"name": "center_crop", "size": 224}
//   {"name": "random_crop", "size": 28, "padding": 4}
//   {"name": "random_resized_crop", "size": 224, "scale": [0.08, 1], "ratio": [0.75, 1.333]}
//   {"name": "random_horizontal_flip", "p": 0.5}
struct TransformConfig {
  enum class Kind {
    kNormalize,
    kPad,
    kResize,
    kCenterCrop,
    kRandomCrop,
    kRandomResizedCrop,
    kRandomHorizontalFlip
  };
  Kind kind = Kind::kNormalize;
  std::vector<double> mean, std;  // normalize
  int64_t padding = 0;            // pad, random_crop
  double fill = 0;                // pad
  // resize: [H, W], or [S] for the shorter side; center_crop, random_crop,
  // random_resized_crop: [size]
  std::vector<int64_t> size;
  std::pair<double, double> scale{0.08, 1.0};             // random_resized_crop: area fraction
  std::pair<double, double> ratio{3.0 / 4.0, 4.0 / 3.0};  // random_resized_crop: w / h range
  double p = 0.5;                                         // random_horizontal_flip

  // Random transforms (crops, flips) augment the training split only.
  bool is_random() const {
    return kind == Kind::kRandomCrop || kind == Kind::kRandomResizedCrop ||
           kind == Kind::kRandomHorizontalFlip;
  }
};

// The "data" section: where training, evaluation and calibration images come from.
//   "data": {"dataset": "fashion_mnist", "root": "/usr/share/datasets/fashion-mnist",
//            "batch_size": 64, "workers": 2, "transforms": [...]}
//   "data": {"dataset": "image_folder", "train_dir": "data/train", "test_dir": "data/val",
//            "on_error": "skip", "transforms": [...], "eval_transforms": [...]}
//   "data": {"dataset": "synthetic", "num_samples": 64, "seed": 0, "image_shape": [1, 28, 28]}
struct DataConfig {
  enum class Dataset { kFashionMnist, kImageFolder, kSynthetic };
  Dataset dataset = Dataset::kFashionMnist;
  std::string root = "/usr/share/datasets/fashion-mnist";  // fashion_mnist: the IDX .gz files
  // image_folder: class-per-directory roots of the two splits (torchvision's ImageFolder), and
  // what an unreadable image does: "fail" stops with its path, "skip" reports and leaves it out.
  std::string train_dir, test_dir;
  bool skip_unreadable = false;  // "on_error": "skip"
  int64_t batch_size = 64;
  int64_t workers = 1;  // DataLoader threads
  // synthetic (nn::data::SyntheticDataset): examples, seed, and the [C, H, W] of one image
  // (empty: model.input_shape without N).
  int64_t num_samples = 256;
  int64_t seed = 0;
  Shape image_shape;
  // Training images used per epoch: a fixed subset of this many (every k-th example), for
  // short recipes; nullopt: all.
  std::optional<int64_t> train_subset;
  // The training split's transforms, in order. The test split (evaluation) uses
  // eval_transforms when given, else these without the random ones.
  std::vector<TransformConfig> transforms;
  std::optional<std::vector<TransformConfig>> eval_transforms;
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
  // Peak learning rate of the QAT epochs (they run train.lr_schedule again, without warm-up);
  // nullopt: a tenth of train.optimizer.lr.
  std::optional<double> lr;
};

// The "export" section: what `qat export` writes (and `qat verify` checks) when no flag says
// otherwise. Paths are relative to the working directory.
//   "export": {"onnx": "out/resnet18_qat.onnx", "tnn": "out/resnet18_qat", "float": false}
struct ExportConfig {
  std::string onnx;          // the .onnx file; empty: none
  std::string tnn;           // the TNN prefix (<tnn>.tnnproto, <tnn>.tnnmodel); empty: none
  bool float_model = false;  // "float": export the float model instead of the int8 one
};

// "train.optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true,
//                      "weight_decay": 5e-4}   ("adam" / "adamw": lr, betas, eps, weight_decay)
struct OptimizerConfig {
  enum class Kind { kSgd, kAdam, kAdamW };
  Kind kind = Kind::kSgd;
  double lr = 0.1;
  double momentum = 0.9;  // sgd
  bool nesterov = false;  // sgd
  double weight_decay = 0;
  std::pair<double, double> betas{0.9, 0.999};  // adam, adamw
  double eps = 1e-8;                            // adam, adamw
};

// "train.lr_schedule": how the learning rate moves per step within a phase (float epochs, then
// QAT epochs), after an optional linear warm-up from warmup_start_factor x lr (float phase only):
//   {"name": "cosine", "warmup_epochs": 0.3}       cosine decay to 0 over the phase
//   {"name": "step", "step_epochs": 3, "gamma": 0.1}
//   {"name": "constant"}
struct LrScheduleConfig {
  enum class Kind { kCosine, kStep, kConstant };
  Kind kind = Kind::kCosine;
  double warmup_epochs = 0;
  double warmup_start_factor = 0.04;
  int64_t step_epochs = 1;  // step
  double gamma = 0.1;       // step
};

// The "train" section: what `qat train` runs.
//   "train": {"epochs": 10, "threads": 2, "seed": 0, "optimizer": {...}, "lr_schedule": {...},
//             "out_dir": "out/small_cnn", "log_every": 100, "eval_batches": 0}
struct TrainConfig {
  int64_t epochs = 1;   // all epochs, float then QAT (qat.start_epoch splits them)
  int64_t threads = 0;  // 0: all cores
  int64_t seed = 0;     // initialization, dropout, shuffle and augmentation
  OptimizerConfig optimizer;
  LrScheduleConfig lr_schedule;
  // Where the run's files go: float.safetensors, qat.safetensors, metrics.jsonl and the
  // default export files. Relative to the working directory.
  std::string out_dir;
  int64_t log_every = 100;  // steps between plain progress lines and metrics records
  // Test batches of the evaluation after each epoch; 0: the whole test split.
  int64_t eval_batches = 0;
  // Test batches of the float model's evaluation at the end of its phase and of the final
  // table; 0 (the default): the whole test split. For large models on small machines.
  int64_t final_eval_batches = 0;
  // Optimizer steps per epoch at most (short smoke runs); nullopt: the whole training split.
  std::optional<int64_t> max_steps_per_epoch;
};

// The "checkpoint" section: the training checkpoints of `qat train` (nn/checkpoint.h).
//   "checkpoint": {"dir": "out/small_cnn/checkpoints", "keep_last": 3, "keep_best": true,
//                  "every_steps": 500}
struct CheckpointConfig {
  std::string dir;  // empty: <train.out_dir>/checkpoints
  int64_t keep_last = 3;
  bool keep_best = true;    // also keep the best test top-1
  int64_t every_steps = 0;  // also checkpoint every this many steps; 0: at epoch ends only
};

// A qat config file (zoo/configs/*.json), one member per top-level section.
struct Config {
  ModelConfig model;
  std::optional<DataConfig> data;
  std::optional<QatConfig> qat;
  std::optional<ExportConfig> exports;  // the "export" section
  std::optional<TrainConfig> train;
  std::optional<CheckpointConfig> checkpoint;
};

// Parses a config strictly: an unknown section or key, a wrong type or an impossible value is
// an error naming `file` and the JSON path ("c.json: qat.qconfig.weight.bits: ...").
Config parse_config(const nlohmann::json& json, const std::string& file);

// load_config_file + parse_config.
Config load_config(const std::string& path);

}  // namespace qat::zoo
