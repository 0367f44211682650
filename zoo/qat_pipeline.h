#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graph/quantizable_model.h"
#include "nn/data/data_loader.h"
#include "nn/data/dataset.h"
#include "nn/data/transforms.h"
#include "nn/module.h"
#include "quant/fake_quantize.h"
#include "zoo/config.h"

// The steps of the QAT pipeline a config describes, shared by the `qat` subcommands (and the
// trainer to come): data from the "data" section, a QuantizableModel from the "qat" section,
// calibration, and QAT checkpoints.
namespace qat::zoo {

// ---- data

// The transforms of a split: data.transforms for training; for evaluation data.eval_transforms,
// or data.transforms without the random ones (crops, flips) when it is not given.
std::vector<nn::data::Transform> make_transforms(const DataConfig& data, bool train);

// The dataset of the "data" section: Fashion-MNIST's training or test split from data.root, an
// ImageFolder of data.train_dir / data.test_dir (model.in_channels channels, default 3), or a
// SyntheticDataset with data.image_shape (default: model.input_shape without N) and
// model.num_classes classes (default 10), whose test split is the num_samples examples after
// the training ones. The training split is cut to data.train_subset.
std::shared_ptr<const nn::data::Dataset> make_dataset(const DataConfig& data,
                                                      const ModelConfig& model, bool train);

// make_dataset batched by data.batch_size on data.workers threads, in order (no shuffle), with
// the split's transforms.
std::unique_ptr<nn::data::DataLoader> make_loader(const DataConfig& data, const ModelConfig& model,
                                                  bool train);

// What calibration runs on: the training split with the evaluation transforms (no augmentation:
// the ranges should be those the deployed model sees), in order. qat train, qat calibrate and
// qat sensitivity all calibrate on it.
std::unique_ptr<nn::data::DataLoader> make_calibration_loader(const DataConfig& data,
                                                              const ModelConfig& model);

// ---- quantization

// QuantizableModel(model, model.input_shape, qat.qconfig, qat.black_list). `config_path` names
// the file in the errors for a missing "qat" section or model.input_shape.
std::shared_ptr<graph::QuantizableModel> prepare_model(std::shared_ptr<nn::Module> model,
                                                       const Config& config,
                                                       const std::string& config_path);

// One FakeQuantize of a prepared model.
struct Quantizer {
  // Its state_dict prefix: "conv1.weight_fake_quant", "layer1.0.add.activation_post_process".
  std::string name;
  // The graph value it quantizes: the QAT conv / linear node for its weight and output, the
  // input of a FakeQuantize node ("layer1.0.add" for "layer1.0.add.activation_post_process").
  std::string node;
  std::string role;  // "weight" or "output" (of a QAT conv / linear), "activation" (a node)
  std::shared_ptr<quant::FakeQuantize> fake_quant;
};

// Every quantizer of `model`, in graph order (a QAT module's weight before its output).
std::vector<Quantizer> quantizers(const graph::QuantizableModel& model);

// Called after each calibration batch: batches done, batches planned, images so far.
using CalibrationProgress = std::function<void(int64_t done, int64_t total, int64_t images)>;

// Calibrates `model` on up to `batches` batches of `loader` (fewer when the data runs out) in
// eval mode (BN on its running statistics, dropout off), without autograd, observers on:
//   minmax:    fake quant on, so each observer sees the quantized upstream, as PyTorch's QAT
//              calibration (model.eval() with enabled observers) does;
//   max:       fake quant off while the inputs of every activation quantizer are collected by
//              a quant::MaxCalibrator (pytorch-quantization's calibration); its range becomes
//              [-amax, amax];
//   histogram: the same with qconfig.activation's HistogramCalibrator, method and percentile.
// Weight quantizers always take their observers' ranges. Leaves fake quant and observers
// enabled (the state QAT training starts from). Returns the number of batches run. A batch whose
// image shape differs from `input_shape` [N, C, H, W] is an error naming both.
int64_t calibrate(graph::QuantizableModel& model, nn::data::DataLoader& loader, int64_t batches,
                  CalibratorChoice calibrator, const Shape& input_shape,
                  const CalibrationProgress& progress = nullptr);

// Writes model.state_dict() (the float model's keys, then the quant state by node) atomically,
// with the target in the safetensors metadata ("qat.target").
void save_qat_checkpoint(const graph::QuantizableModel& model, const std::string& path);

// The target a QAT checkpoint was written for (save_qat_checkpoint's metadata); nullopt for
// other files (float checkpoints). Reads only the header.
std::optional<std::string> qat_checkpoint_target(const std::string& path);

// Loads a QAT checkpoint strictly. A checkpoint written for another target, or a float
// checkpoint (no quant state), is an error naming the file.
void load_qat_checkpoint(graph::QuantizableModel& model, const std::string& path);

// ---- deployment (qat export, qat verify)

// The config's model with the float checkpoint `path` (load_checkpoint), in eval mode. A QAT
// checkpoint is an error naming the file; GoogLeNet aux-head keys that were skipped go to
// `skipped`.
std::shared_ptr<nn::Module> load_float_model(const ModelConfig& model, const std::string& path,
                                             std::vector<std::string>* skipped = nullptr);

// prepare_model() with the QAT checkpoint `path` (load_qat_checkpoint), observers off, eval:
// the model graph::convert() turns into the deployed integer model.
std::shared_ptr<graph::QuantizableModel> load_qat_model(const Config& config,
                                                        const std::string& config_path,
                                                        const std::string& path);

}  // namespace qat::zoo
