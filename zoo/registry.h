#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "nn/module.h"
#include "zoo/config_reader.h"

// The zoo's models by name, and the `model` section of a config file that picks one:
//   "model": {"name": "resnet18", "num_classes": 10, "in_channels": 1, "small_input": true,
//             "input_shape": [1, 1, 28, 28]}
namespace qat::zoo {

// Unset options keep the model's own default (torchvision's for the torchvision models:
// 1000 classes, 3 input channels; small_cnn: 10 classes, 1 input channel).
struct ModelConfig {
  std::string name;  // one of model_names()
  std::optional<int64_t> num_classes;
  std::optional<int64_t> in_channels;
  std::optional<bool> small_input;      // 28x28 / 32x32 stem; all models but small_cnn
  std::optional<double> width_mult;     // mobilenet_v2
  std::optional<bool> aux_logits;       // googlenet
  std::optional<bool> transform_input;  // googlenet
  std::optional<double> dropout;        // mobilenet_v2, googlenet (before the classifier)
  Shape input_shape;  // [N, C, H, W] for `qat summary` and tracing; empty when unset
  // A float safetensors state_dict (torchvision keys) to start from: `qat train` loads it
  // before training (load_checkpoint); empty: the untrained torchvision initialization.
  std::string pretrained;
};

// "resnet18", "resnet34", "resnet50", "mobilenet_v2", "shufflenet_v2_x0_5" ... "x2_0",
// "googlenet", "small_cnn".
std::vector<std::string> model_names();

// Parses the `model` section of the config file `config` (read at its top level). Strict:
// a missing section or name, unknown keys, wrong types, out-of-range values, an unknown model
// name and options the named model does not have are errors naming the file and JSON path.
ModelConfig parse_model_config(const ConfigReader& config);

// Builds the named model, untrained (the torchvision initialization). Throws qat::Error on an
// unknown name or an option the model does not have.
std::shared_ptr<nn::Module> create_model(const ModelConfig& config);

// Loads a safetensors state_dict into `model` strictly (Module::load_state_dict), with one
// exception: GoogLeNet checkpoints carry the aux heads (aux1.*, aux2.*), which a model built
// with aux_logits=false does not have. Those keys are skipped and returned, so the caller can
// report them; any other missing or unexpected key is an error naming the file.
std::vector<std::string> load_checkpoint(nn::Module& model, const std::string& path);

}  // namespace qat::zoo
