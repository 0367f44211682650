#include "zoo/registry.h"

#include <algorithm>
#include <functional>
#include <set>
#include <utility>

#include "core/check.h"
#include "core/serialize.h"
#include "zoo/googlenet.h"
#include "zoo/mobilenet_v2.h"
#include "zoo/resnet.h"
#include "zoo/shufflenet_v2.h"
#include "zoo/small_cnn.h"

namespace qat::zoo {
namespace {

using ModulePtr = std::shared_ptr<nn::Module>;

struct ModelEntry {
  std::string name;
  std::vector<std::string> options;  // the model-specific keys (see option_keys()) it accepts
  std::function<ModulePtr(const ModelConfig&)> create;
};

// The model-specific keys of ModelConfig, each with whether `config` sets it.
std::vector<std::pair<std::string, bool>> option_keys(const ModelConfig& config) {
  return {
      {"small_input", config.small_input.has_value()},
      {"width_mult", config.width_mult.has_value()},
      {"aux_logits", config.aux_logits.has_value()},
      {"transform_input", config.transform_input.has_value()},
      {"dropout", config.dropout.has_value()},
  };
}

// The keys every model accepts, then `options`.
std::vector<std::string> section_keys(const std::vector<std::string>& options) {
  std::vector<std::string> keys = {"name", "num_classes", "in_channels", "input_shape",
                                   "pretrained"};
  keys.insert(keys.end(), options.begin(), options.end());
  return keys;
}

// Sets the options every torchvision family has; unset ones keep the Options default.
template <class Options>
Options torchvision_options(const ModelConfig& config) {
  Options options;
  if (config.num_classes) options.num_classes(*config.num_classes);
  if (config.in_channels) options.in_channels(*config.in_channels);
  if (config.small_input) options.small_input(*config.small_input);
  return options;
}

// The create function of a torchvision factory that takes only the common options.
template <class Options, class Model>
std::function<ModulePtr(const ModelConfig&)> with_common_options(
    std::shared_ptr<Model> (*factory)(Options)) {
  return [factory](const ModelConfig& config) {
    return factory(torchvision_options<Options>(config));
  };
}

ModulePtr create_mobilenet_v2(const ModelConfig& config) {
  auto options = torchvision_options<MobileNetV2Options>(config);
  if (config.width_mult) options.width_mult(*config.width_mult);
  if (config.dropout) options.dropout(*config.dropout);
  return mobilenet_v2(options);
}

ModulePtr create_googlenet(const ModelConfig& config) {
  auto options = torchvision_options<GoogLeNetOptions>(config);
  if (config.aux_logits) options.aux_logits(*config.aux_logits);
  if (config.transform_input) options.transform_input(*config.transform_input);
  if (config.dropout) options.dropout(*config.dropout);
  return googlenet(options);
}

// Unset options take SmallCnn's defaults: 1 input channel, 10 classes.
ModulePtr create_small_cnn(const ModelConfig& config) {
  return std::make_shared<SmallCnn>(config.in_channels.value_or(1),
                                    config.num_classes.value_or(10));
}

std::vector<ModelEntry> model_entries() {
  const std::vector<std::string> stem = {"small_input"};
  return {
      {"resnet18", stem, with_common_options(resnet18)},
      {"resnet34", stem, with_common_options(resnet34)},
      {"resnet50", stem, with_common_options(resnet50)},
      {"mobilenet_v2", {"small_input", "width_mult", "dropout"}, create_mobilenet_v2},
      {"shufflenet_v2_x0_5", stem, with_common_options(shufflenet_v2_x0_5)},
      {"shufflenet_v2_x1_0", stem, with_common_options(shufflenet_v2_x1_0)},
      {"shufflenet_v2_x1_5", stem, with_common_options(shufflenet_v2_x1_5)},
      {"shufflenet_v2_x2_0", stem, with_common_options(shufflenet_v2_x2_0)},
      {"googlenet", {"small_input", "aux_logits", "transform_input", "dropout"}, create_googlenet},
      {"small_cnn", {}, create_small_cnn},
  };
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

const ModelEntry* find_entry(const std::vector<ModelEntry>& entries, const std::string& name) {
  for (const ModelEntry& entry : entries)
    if (entry.name == name) return &entry;
  return nullptr;
}

// The first option set in `config` that its model does not have, or "".
std::string unsupported_option(const ModelConfig& config, const ModelEntry& entry) {
  for (const auto& [key, is_set] : option_keys(config)) {
    if (is_set && std::find(entry.options.begin(), entry.options.end(), key) == entry.options.end())
      return key;
  }
  return "";
}

std::optional<int64_t> get_positive_int(const ConfigReader& model, const std::string& key) {
  const std::optional<int64_t> value = model.get_int(key);
  if (value && *value < 1) model.fail(key, "must be at least 1, got " + std::to_string(*value));
  return value;
}

// Checks that input_shape is [N, C, H, W] with positive sizes, matching in_channels when set.
Shape get_input_shape(const ConfigReader& model, const std::optional<int64_t>& in_channels) {
  const std::optional<Shape> shape = model.get_int_list("input_shape");
  if (!shape) return Shape();
  const bool positive = std::all_of(shape->begin(), shape->end(), [](int64_t d) { return d > 0; });
  if (shape->size() != 4 || !positive) {
    model.fail("input_shape",
               "expected [N, C, H, W] with 4 positive sizes, got " + shape_str(*shape));
  }
  if (in_channels && (*shape)[1] != *in_channels) {
    model.fail("input_shape", "C = " + std::to_string((*shape)[1]) +
                                  " does not match in_channels = " + std::to_string(*in_channels));
  }
  return *shape;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const ModelEntry& entry : model_entries()) names.push_back(entry.name);
  return names;
}

ModelConfig parse_model_config(const ConfigReader& config) {
  std::vector<std::string> options;
  for (const auto& entry : option_keys(ModelConfig())) options.push_back(entry.first);
  const std::optional<ConfigReader> model = config.section("model", section_keys(options));
  if (!model) config.fail("model", "missing section (it needs at least \"name\")");

  ModelConfig c;
  const std::optional<std::string> name = model->get_string("name");
  if (!name) model->fail("name", "missing (known models: " + join(model_names()) + ")");
  c.name = *name;
  const std::vector<ModelEntry> entries = model_entries();
  const ModelEntry* entry = find_entry(entries, c.name);
  if (entry == nullptr)
    model->fail("name", "unknown model '" + c.name + "' (known: " + join(model_names()) + ")");

  c.num_classes = get_positive_int(*model, "num_classes");
  c.in_channels = get_positive_int(*model, "in_channels");
  c.small_input = model->get_bool("small_input");
  c.width_mult = model->get_double("width_mult");
  if (c.width_mult && !(*c.width_mult > 0))
    model->fail("width_mult", "must be > 0, got " + nn::py_float(*c.width_mult));
  c.aux_logits = model->get_bool("aux_logits");
  c.transform_input = model->get_bool("transform_input");
  c.dropout = model->get_double("dropout");
  if (c.dropout && !(*c.dropout >= 0 && *c.dropout <= 1))
    model->fail("dropout", "must be in [0, 1], got " + nn::py_float(*c.dropout));
  c.input_shape = get_input_shape(*model, c.in_channels);
  c.pretrained = model->get_string("pretrained").value_or("");
  if (model->get_string("pretrained") && c.pretrained.empty())
    model->fail("pretrained", "is empty (leave the key out to start from the initialization)");

  const std::string unsupported = unsupported_option(c, *entry);
  if (!unsupported.empty()) {
    model->fail(unsupported, "not an option of " + c.name +
                                 " (its keys: " + join(section_keys(entry->options)) + ")");
  }
  return c;
}

ModulePtr create_model(const ModelConfig& config) {
  const std::vector<ModelEntry> entries = model_entries();
  const ModelEntry* entry = find_entry(entries, config.name);
  QAT_CHECK(entry != nullptr, "create_model: unknown model '", config.name,
            "' (known: ", join(model_names()), ")");
  const std::string unsupported = unsupported_option(config, *entry);
  QAT_CHECK(unsupported.empty(), "create_model: ", config.name, " has no option ", unsupported);
  return entry->create(config);
}

std::vector<std::string> load_checkpoint(nn::Module& model, const std::string& path) {
  std::set<std::string> model_keys;
  for (const auto& entry : model.state_dict()) model_keys.insert(entry.first);
  nn::StateDict kept;
  std::vector<std::string> skipped;
  for (auto& entry : load_safetensors(path)) {
    const bool aux_head = entry.first.rfind("aux1.", 0) == 0 || entry.first.rfind("aux2.", 0) == 0;
    if (aux_head && model_keys.count(entry.first) == 0) {
      skipped.push_back(entry.first);
    } else {
      kept.push_back(std::move(entry));
    }
  }
  try {
    model.load_state_dict(kept);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return skipped;
}

}  // namespace qat::zoo
