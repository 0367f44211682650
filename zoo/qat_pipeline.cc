#include "zoo/qat_pipeline.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels/fake_quant.h"
#include "core/serialize.h"
#include "nn/data/image_folder.h"
#include "nn/data/mnist.h"
#include "quant/calibrator.h"
#include "quant/qat_module.h"
#include "quant/qparams.h"
#include "zoo/registry.h"

namespace qat::zoo {
namespace {

constexpr const char* kTargetMetadata = "qat.target";

nn::data::Transform make_transform(const TransformConfig& t) {
  switch (t.kind) {
    case TransformConfig::Kind::kNormalize:
      return nn::data::Normalize(std::vector<float>(t.mean.begin(), t.mean.end()),
                                 std::vector<float>(t.std.begin(), t.std.end()));
    case TransformConfig::Kind::kPad:
      return nn::data::Pad(t.padding, static_cast<float>(t.fill));
    case TransformConfig::Kind::kResize:
      return t.size.size() == 1 ? nn::data::Resize(t.size[0])
                                : nn::data::Resize(t.size.at(0), t.size.at(1));
    case TransformConfig::Kind::kCenterCrop:
      return nn::data::CenterCrop(t.size.at(0));
    case TransformConfig::Kind::kRandomCrop:
      return nn::data::RandomCrop(t.size.at(0), t.padding);
    case TransformConfig::Kind::kRandomResizedCrop:
      return nn::data::RandomResizedCrop(t.size.at(0), t.scale, t.ratio);
    case TransformConfig::Kind::kRandomHorizontalFlip:
      return nn::data::RandomHorizontalFlip(t.p);
  }
  QAT_CHECK(false, "make_transform: invalid TransformConfig::Kind ", static_cast<int>(t.kind));
  return nullptr;
}

// Collects the inputs of the activation quantizers and turns them into ranges [-amax, amax].
class ActivationCalibration : public nn::ForwardHook {
 public:
  ActivationCalibration(const std::vector<Quantizer>& all, CalibratorChoice choice,
                        const quant::FakeQuantConfig& activation) {
    for (const Quantizer& q : all) {
      if (q.role == "weight") continue;
      Entry entry;
      entry.name = q.name;
      entry.fake_quant = q.fake_quant;
      if (choice == CalibratorChoice::kHistogram) {
        entry.histogram = activation.make_histogram_calibrator();
      } else {
        entry.max.emplace();
      }
      entries_.emplace(q.fake_quant.get(), std::move(entry));
    }
  }

  void before_forward(nn::Module& module, const Tensor& input) override {
    const auto it = entries_.find(&module);
    if (it == entries_.end()) return;
    if (it->second.histogram) {
      it->second.histogram->collect(input);
    } else {
      it->second.max->collect(input);
    }
  }

  // Sets every collected range on its quantizer and recomputes its qparams.
  void apply(const quant::FakeQuantConfig& activation) {
    for (auto& [module, entry] : entries_) {
      Tensor amax;
      try {
        amax = entry.histogram
                   ? entry.histogram->compute_amax(activation.method, activation.percentile)
                   : entry.max->compute_amax();
      } catch (const Error& e) {
        throw Error("calibrate: " + entry.name + ": " + e.what());
      }
      const float a = amax.data<float>()[0];
      entry.fake_quant->activation_post_process()->set_min_max(Tensor::full({1}, -a),
                                                               Tensor::full({1}, a));
      entry.fake_quant->update_qparams();
    }
  }

 private:
  struct Entry {
    std::string name;  // for errors
    std::shared_ptr<quant::FakeQuantize> fake_quant;
    std::optional<quant::MaxCalibrator> max;
    std::optional<quant::HistogramCalibrator> histogram;
  };
  std::map<const nn::Module*, Entry> entries_;
};

}  // namespace

std::vector<nn::data::Transform> make_transforms(const DataConfig& data, bool train) {
  std::vector<nn::data::Transform> out;
  if (train || !data.eval_transforms) {
    for (const TransformConfig& t : data.transforms) {
      if (train || !t.is_random()) out.push_back(make_transform(t));
    }
  } else {
    for (const TransformConfig& t : *data.eval_transforms) out.push_back(make_transform(t));
  }
  return out;
}

std::shared_ptr<const nn::data::Dataset> make_dataset(const DataConfig& data,
                                                      const ModelConfig& model, bool train) {
  std::shared_ptr<const nn::data::Dataset> dataset;
  switch (data.dataset) {
    case DataConfig::Dataset::kFashionMnist:
      dataset = std::make_shared<nn::data::FashionMnist>(data.root, train);
      break;
    case DataConfig::Dataset::kImageFolder: {
      // The channels the model takes: 1 reads luma, as PIL's convert("L").
      const int64_t channels = model.in_channels.value_or(
          model.input_shape.size() == 4 ? model.input_shape[1] : 3);
      QAT_CHECK(channels == 1 || channels == 3, "image_folder data gives 1 or 3 channels; ",
                model.name, " takes ", channels);
      dataset = std::make_shared<nn::data::ImageFolder>(
          train ? data.train_dir : data.test_dir,
          nn::data::ImageFolderOptions().channels(channels).on_error(
              data.skip_unreadable ? nn::data::OnImageError::kSkip : nn::data::OnImageError::kFail));
      break;
    }
    case DataConfig::Dataset::kSynthetic: {
      Shape shape = data.image_shape;
      if (shape.empty() && model.input_shape.size() == 4)
        shape.assign(model.input_shape.begin() + 1, model.input_shape.end());
      QAT_CHECK(!shape.empty(),
                "synthetic data needs an image shape: set data.image_shape or model.input_shape");
      // Examples are a function of (seed, index): the test split is the next num_samples
      // examples of the same prototypes, so what the training split teaches carries over.
      const size_t n = static_cast<size_t>(data.num_samples);
      auto examples = std::make_shared<nn::data::SyntheticDataset>(
          train ? n : 2 * n, shape, model.num_classes.value_or(10),
          static_cast<uint64_t>(data.seed));
      if (train) {
        dataset = examples;
      } else {
        std::vector<size_t> indices(n);
        for (size_t i = 0; i < n; ++i) indices[i] = n + i;
        dataset = std::make_shared<nn::data::Subset>(examples, std::move(indices));
      }
      break;
    }
  }
  if (train && data.train_subset) {
    QAT_CHECK(static_cast<size_t>(*data.train_subset) <= dataset->size(), "data.train_subset ",
              *data.train_subset, " is more than the ", dataset->size(), " training images");
    dataset = nn::data::Subset::evenly_spaced(dataset, static_cast<size_t>(*data.train_subset));
  }
  return dataset;
}

std::unique_ptr<nn::data::DataLoader> make_loader(const DataConfig& data, const ModelConfig& model,
                                                  bool train) {
  return std::make_unique<nn::data::DataLoader>(make_dataset(data, model, train),
                                                nn::data::DataLoaderOptions()
                                                    .batch_size(data.batch_size)
                                                    .num_workers(data.workers)
                                                    .seed(static_cast<uint64_t>(data.seed))
                                                    .transforms(make_transforms(data, train)));
}

std::unique_ptr<nn::data::DataLoader> make_calibration_loader(const DataConfig& data,
                                                              const ModelConfig& model) {
  return std::make_unique<nn::data::DataLoader>(
      make_dataset(data, model, /*train=*/true),
      nn::data::DataLoaderOptions()
          .batch_size(data.batch_size)
          .num_workers(data.workers)
          .seed(static_cast<uint64_t>(data.seed))
          .transforms(make_transforms(data, /*train=*/false)));
}

std::shared_ptr<graph::QuantizableModel> prepare_model(std::shared_ptr<nn::Module> model,
                                                       const Config& config,
                                                       const std::string& config_path) {
  if (!config.qat) throw Error(config_path + ": no \"qat\" section (it needs at least \"target\")");
  if (config.model.input_shape.empty()) {
    throw Error(config_path +
                ": model.input_shape is needed to trace the model for quantization, e.g. "
                "[1, 1, 28, 28]");
  }
  return std::make_shared<graph::QuantizableModel>(std::move(model), config.model.input_shape,
                                                   config.qat->qconfig, config.qat->black_list);
}

std::vector<Quantizer> quantizers(const graph::QuantizableModel& model) {
  std::vector<Quantizer> out;
  for (const graph::GraphNode& node : model.graph().nodes) {
    if (auto fq = std::dynamic_pointer_cast<quant::FakeQuantize>(node.module)) {
      out.push_back({node.name, model.graph().value_name(node.inputs.at(0)), "activation", fq});
    } else if (auto qat_module = std::dynamic_pointer_cast<quant::QatModule>(node.module)) {
      out.push_back(
          {node.name + ".weight_fake_quant", node.name, "weight", qat_module->weight_fake_quant()});
      if (qat_module->activation_post_process()) {
        out.push_back({node.name + ".activation_post_process", node.name, "output",
                       qat_module->activation_post_process()});
      }
    }
  }
  return out;
}

int64_t calibrate(graph::QuantizableModel& model, nn::data::DataLoader& loader, int64_t batches,
                  CalibratorChoice calibrator, const Shape& input_shape,
                  const CalibrationProgress& progress) {
  QAT_CHECK(batches >= 1, "calibrate: batches must be at least 1, got ", batches);
  QAT_CHECK(model.qconfig().has_value() && model.is_prepared(),
            "calibrate: the model is not prepared for QAT");
  const quant::FakeQuantConfig& activation = model.qconfig()->activation;
  model.eval();
  quant::enable_observer(model);
  const bool collect = calibrator != CalibratorChoice::kMinMax;
  quant::enable_fake_quant(model, /*enabled=*/!collect);
  std::optional<ActivationCalibration> calibration;
  if (collect) calibration.emplace(quantizers(model), calibrator, activation);

  NoGradGuard no_grad;
  int64_t done = 0, images = 0;
  loader.start_epoch(0);
  while (done < batches) {
    const std::optional<nn::data::Batch> batch = loader.next();
    if (!batch) break;
    const Shape& shape = batch->images.shape();
    if (input_shape.size() == 4 &&
        !std::equal(shape.begin() + 1, shape.end(), input_shape.begin() + 1)) {
      throw Error("calibrate: the data gives images of " +
                  shape_str(Shape(shape.begin() + 1, shape.end())) +
                  ", the model takes model.input_shape " + shape_str(input_shape) +
                  " (add a resize or pad transform to data.transforms)");
    }
    if (calibration) {
      nn::ForwardHookGuard guard(*calibration);
      model.forward(batch->images);
    } else {
      model.forward(batch->images);
    }
    ++done;
    images += shape[0];
    if (progress) progress(done, batches, images);
  }
  QAT_CHECK(done > 0, "calibrate: the data loader gave no batch");
  if (calibration) calibration->apply(activation);
  quant::enable_fake_quant(model);
  return done;
}

void save_qat_checkpoint(const graph::QuantizableModel& model, const std::string& path) {
  QAT_CHECK(model.qconfig().has_value() && model.is_prepared(),
            "save_qat_checkpoint: the model is not prepared for QAT");
  save_safetensors(path, model.state_dict(),
                   {{kTargetMetadata, quant::target_name(model.qconfig()->target)}});
}

std::optional<std::string> qat_checkpoint_target(const std::string& path) {
  const SafetensorsMetadata metadata = load_safetensors_metadata(path);
  const auto it = metadata.find(kTargetMetadata);
  if (it == metadata.end()) return std::nullopt;
  return it->second;
}

void load_qat_checkpoint(graph::QuantizableModel& model, const std::string& path) {
  SafetensorsMetadata metadata;
  const NamedTensors tensors = load_safetensors(path, &metadata);
  const std::string target = quant::target_name(model.qconfig()->target);
  const auto it = metadata.find(kTargetMetadata);
  if (it != metadata.end() && it->second != target) {
    throw Error(path + ": a QAT checkpoint for target '" + it->second +
                "', but the config's qat.target is '" + target + "'");
  }
  std::set<std::string> file_keys;
  for (const auto& entry : tensors) file_keys.insert(entry.first);
  std::set<std::string> float_keys;
  for (const auto& entry : model.model()->state_dict()) float_keys.insert(entry.first);
  bool has_quant_state = false;
  for (const auto& entry : model.state_dict()) {
    if (float_keys.count(entry.first) == 0 && file_keys.count(entry.first) > 0)
      has_quant_state = true;
  }
  if (!has_quant_state) {
    throw Error(path +
                ": no quantization state (weight_fake_quant.*, activation_post_process.*): a "
                "float checkpoint? Make a QAT checkpoint with 'qat calibrate'");
  }
  try {
    model.load_state_dict(tensors);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

std::shared_ptr<nn::Module> load_float_model(const ModelConfig& config, const std::string& path,
                                             std::vector<std::string>* skipped) {
  if (const std::optional<std::string> target = qat_checkpoint_target(path))
    throw Error(path + ": a QAT checkpoint (target " + *target + "), not a float checkpoint");
  std::shared_ptr<nn::Module> model = create_model(config);
  const std::vector<std::string> skipped_keys = load_checkpoint(*model, path);
  if (skipped != nullptr) *skipped = skipped_keys;
  model->eval();
  return model;
}

std::shared_ptr<graph::QuantizableModel> load_qat_model(const Config& config,
                                                        const std::string& config_path,
                                                        const std::string& path) {
  std::shared_ptr<graph::QuantizableModel> qm =
      prepare_model(create_model(config.model), config, config_path);
  load_qat_checkpoint(*qm, path);
  quant::disable_observer(*qm);
  qm->eval();
  return qm;
}

}  // namespace qat::zoo
