// The "data" and "qat" sections of a config file: every key, the defaults, and errors that name
// the file and the JSON path.
#include "zoo/config.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/data/data_loader.h"
#include "tests/testing/errors.h"
#include "zoo/qat_pipeline.h"

namespace qat::zoo {
namespace {

using qat::testing::error_of;

const char* const kModel = R"("model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]})";

Config parse(const std::string& sections) {
  return parse_config(nlohmann::json::parse("{" + std::string(kModel) + ", " + sections + "}"),
                      "cfg.json");
}

std::string parse_error(const std::string& sections) {
  return error_of([&] { parse(sections); });
}

// The error starts with "cfg.json: <path>: " and contains `part`.
void expect_error(const std::string& sections, const std::string& path, const std::string& part) {
  const std::string error = parse_error(sections);
  EXPECT_EQ(error.rfind("cfg.json: " + path + ": ", 0), 0u) << error;
  EXPECT_NE(error.find(part), std::string::npos) << error;
}

TEST(DataConfig, AbsentSectionIsNullopt) {
  const Config c = parse_config(nlohmann::json::parse("{" + std::string(kModel) + "}"), "c.json");
  EXPECT_FALSE(c.data.has_value());
  EXPECT_FALSE(c.qat.has_value());
}

TEST(DataConfig, DefaultsAreFashionMnistFromDebian) {
  const DataConfig d = *parse(R"("data": {})").data;
  EXPECT_EQ(d.dataset, DataConfig::Dataset::kFashionMnist);
  EXPECT_EQ(d.root, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(d.batch_size, 64);
  EXPECT_EQ(d.workers, 1);
  EXPECT_TRUE(d.transforms.empty());
}

TEST(DataConfig, ParsesEveryKeyAndTransform) {
  const DataConfig d = *parse(R"("data": {"dataset": "fashion_mnist", "root": "/tmp/fm",
      "batch_size": 8, "workers": 2, "transforms": [
        {"name": "pad", "padding": 2, "fill": 0.5},
        {"name": "random_crop", "size": 28, "padding": 1},
        {"name": "random_horizontal_flip"},
        {"name": "resize", "size": [32, 30]},
        {"name": "normalize", "mean": [0.25], "std": [0.5]}]})")
                            .data;
  EXPECT_EQ(d.root, "/tmp/fm");
  EXPECT_EQ(d.batch_size, 8);
  EXPECT_EQ(d.workers, 2);
  ASSERT_EQ(d.transforms.size(), 5u);
  EXPECT_EQ(d.transforms[0].kind, TransformConfig::Kind::kPad);
  EXPECT_EQ(d.transforms[0].padding, 2);
  EXPECT_EQ(d.transforms[0].fill, 0.5);
  EXPECT_EQ(d.transforms[1].kind, TransformConfig::Kind::kRandomCrop);
  EXPECT_EQ(d.transforms[1].size, (std::vector<int64_t>{28}));
  EXPECT_EQ(d.transforms[2].p, 0.5);
  EXPECT_EQ(d.transforms[3].size, (std::vector<int64_t>{32, 30}));
  EXPECT_EQ(d.transforms[4].mean, (std::vector<double>{0.25}));
  EXPECT_EQ(d.transforms[4].std, (std::vector<double>{0.5}));

  const DataConfig s = *parse(R"("data": {"dataset": "synthetic", "num_samples": 12, "seed": 3,
      "image_shape": [1, 8, 8], "batch_size": 4})")
                            .data;
  EXPECT_EQ(s.dataset, DataConfig::Dataset::kSynthetic);
  EXPECT_EQ(s.num_samples, 12);
  EXPECT_EQ(s.seed, 3);
  EXPECT_EQ(s.image_shape, (Shape{1, 8, 8}));
}

TEST(DataConfig, SyntheticLoaderGivesBatchesOfTheModelShape) {
  const Config c = parse(R"("data": {"dataset": "synthetic", "num_samples": 10, "batch_size": 4,
      "transforms": [{"name": "normalize", "mean": [0.5], "std": [2]}]})");
  const auto loader = make_loader(*c.data, c.model, /*train=*/true);
  EXPECT_EQ(loader->num_batches(), 3);
  loader->start_epoch(0);
  const std::optional<nn::data::Batch> batch = loader->next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->images.shape(), (Shape{4, 1, 28, 28}));
}

TEST(DataConfig, TransformsApplyInOrder) {
  const Config c = parse(R"("data": {"dataset": "synthetic", "num_samples": 4, "batch_size": 4,
      "transforms": [{"name": "pad", "padding": 2}, {"name": "random_crop", "size": 30},
                     {"name": "random_horizontal_flip", "p": 1}, {"name": "resize", "size": [20, 18]},
                     {"name": "normalize", "mean": [0], "std": [1]}]})");
  EXPECT_EQ(make_transforms(*c.data, /*train=*/true).size(), 5u);
  const auto loader = make_loader(*c.data, c.model, /*train=*/true);
  loader->start_epoch(0);
  EXPECT_EQ(loader->next()->images.shape(), (Shape{4, 1, 20, 18}));
}

TEST(DataConfig, ErrorsNameFileAndPath) {
  expect_error(R"("data": {"dataset": "image_folder", "test_dir": "v"})", "data.train_dir",
               "missing (a directory with one sub-directory per class)");
  expect_error(R"("data": {"dataset": "image_folder", "train_dir": "t", "test_dir": "v",
               "on_error": "ignore"})", "data.on_error", "unknown value \"ignore\" (known: fail, skip)");
  expect_error(R"("data": {"train_dir": "t"})", "data.train_dir",
               "only applies to \"dataset\": \"image_folder\"");
  expect_error(R"("data": {"dataset": "cifar10"})", "data.dataset",
               "unknown value \"cifar10\" (known: fashion_mnist, image_folder, synthetic)");
  expect_error(R"("data": {"train_subset": 0})", "data.train_subset", "must be at least 1");
  expect_error(R"("data": {"batch_sise": 8})", "data.batch_sise", "unknown key (known: dataset,");
  expect_error(R"("data": {"batch_size": "8"})", "data.batch_size",
               "expected an integer, got string \"8\"");
  expect_error(R"("data": {"batch_size": 0})", "data.batch_size", "must be at least 1, got 0");
  expect_error(R"("data": {"workers": 1.5})", "data.workers", "expected an integer");
  expect_error(R"("data": {"num_samples": 10})", "data.num_samples",
               "only applies to \"dataset\": \"synthetic\"");
  expect_error(R"("data": {"dataset": "synthetic", "root": "/x"})", "data.root",
               "only applies to \"dataset\": \"fashion_mnist\"");
  expect_error(R"("data": {"dataset": "synthetic", "image_shape": [28, 28]})", "data.image_shape",
               "expected [C, H, W]");
  expect_error(R"("data": {"transforms": {"name": "pad"}})", "data.transforms",
               "expected an array of transform objects, got object");
  expect_error(R"("data": {"transforms": [{"name": "pad", "padding": 2}, {"name": "blur"}]})",
               "data.transforms[1].name", "unknown value \"blur\" (known: normalize, pad,");
  expect_error(R"("data": {"transforms": [{"padding": 2}]})", "data.transforms[0].name", "missing");
  expect_error(R"("data": {"transforms": [{"name": "pad", "padding": 2, "p": 0.5}]})",
               "data.transforms[0].p", "unknown key (known: name, padding, fill)");
  expect_error(R"("data": {"transforms": [{"name": "pad", "pading": 2}]})",
               "data.transforms[0].pading", "unknown key (known: name, padding, fill)");
  expect_error(R"("data": {"transforms": [{"name": "normalize", "mean": [0.5], "std": ["x"]}]})",
               "data.transforms[0].std[0]", "expected a number, got string \"x\"");
  expect_error(R"("data": {"transforms": [{"name": "normalize", "mean": [0.5], "std": [0]}]})",
               "data.transforms[0].std[0]", "must be > 0");
  expect_error(R"("data": {"transforms": [{"name": "resize", "size": "32"}]})",
               "data.transforms[0].size", "expected an array of integers");
  expect_error(R"("data": {"transforms": [{"name": "resize", "size": 0}]})",
               "data.transforms[0].size", "must be at least 1");
  expect_error(R"("data": {"transforms": [{"name": "random_resized_crop", "size": 8,
               "scale": [0.5, 2]}]})", "data.transforms[0].scale", "0 < low <= high <= 1");
  expect_error(R"("data": {"transforms": [{"name": "center_crop"}]})",
               "data.transforms[0].size", "missing");
  expect_error(R"("data": {"eval_transforms": [{"name": "flip"}]})",
               "data.eval_transforms[0].name", "unknown value \"flip\"");
  expect_error(R"("data": [])", "data", "expected a JSON object, got array");
}

TEST(QatConfig, ParsesEveryKey) {
  const QatConfig q = *parse(R"("qat": {"target": "tnn",
      "qconfig": {"activation": {"observer": "minmax"}, "weight": {"bits": 7}},
      "black_list": ["fc", "layer4.*"], "calibration_batches": 4, "calibrator": "max",
      "start_epoch": 1, "freeze_bn_epoch": 3, "freeze_observer_epoch": 4})")
                           .qat;
  EXPECT_EQ(q.qconfig.target, quant::Target::kTNN);
  EXPECT_EQ(q.qconfig.activation.observer, quant::ObserverKind::kMinMax);
  EXPECT_EQ(q.qconfig.weight.bits, 7);
  EXPECT_EQ(q.qconfig.weight.rounding, quant::QConfig::preset("tnn").weight.rounding);
  EXPECT_EQ(q.black_list, (std::vector<std::string>{"fc", "layer4.*"}));
  EXPECT_EQ(q.calibration_batches, 4);
  EXPECT_EQ(q.calibrator, CalibratorChoice::kMax);
  EXPECT_EQ(q.start_epoch, 1);
  EXPECT_EQ(q.freeze_bn_epoch, 3);
  EXPECT_EQ(q.freeze_observer_epoch, 4);
}

TEST(QatConfig, DefaultsAreThePresetAndMinMaxCalibration) {
  const QatConfig q = *parse(R"("qat": {"target": "fbgemm"})").qat;
  EXPECT_EQ(q.qconfig.target, quant::Target::kFbgemm);
  EXPECT_TRUE(q.qconfig.activation.reduce_range);
  EXPECT_TRUE(q.black_list.empty());
  EXPECT_FALSE(q.calibration_batches.has_value());
  EXPECT_EQ(q.calibrator, CalibratorChoice::kMinMax);
  EXPECT_EQ(q.start_epoch, 0);
  EXPECT_FALSE(q.freeze_bn_epoch.has_value());
  EXPECT_FALSE(q.freeze_observer_epoch.has_value());
}

TEST(QatConfig, HistogramCalibratorFollowsTheQConfig) {
  const QatConfig from_qconfig = *parse(R"("qat": {"target": "tensorrt", "qconfig":
      {"activation": {"calibrator": "histogram", "method": "mse"}}})")
                                      .qat;
  EXPECT_EQ(from_qconfig.calibrator, CalibratorChoice::kHistogram);
  EXPECT_EQ(from_qconfig.qconfig.activation.method, quant::CalibMethod::kMse);
  const QatConfig from_qat = *parse(R"("qat": {"target": "tnn", "calibrator": "histogram",
      "qconfig": {"activation": {"method": "entropy"}}})")
                                  .qat;
  EXPECT_EQ(from_qat.calibrator, CalibratorChoice::kHistogram);
  EXPECT_EQ(from_qat.qconfig.activation.calibrator, quant::CalibratorKind::kHistogram);
  EXPECT_EQ(from_qat.qconfig.activation.method, quant::CalibMethod::kEntropy);
}

TEST(QatConfig, ErrorsNameFileAndPath) {
  expect_error(R"("qat": {})", "qat.target", "missing (one of tensorrt, tnn, fbgemm,");
  expect_error(R"("qat": {"target": "tensorRT"})", "qat.target", "unknown target \"tensorRT\"");
  expect_error(R"("qat": {"target": 1})", "qat.target", "expected a string, got number 1");
  expect_error(R"("qat": {"target": "tnn", "black_lsit": []})", "qat.black_lsit",
               "unknown key (known: target, qconfig, black_list,");
  expect_error(R"("qat": {"target": "tnn", "black_list": "fc"})", "qat.black_list",
               "expected an array of strings, got string \"fc\"");
  expect_error(R"("qat": {"target": "tnn", "black_list": ["fc", 3]})", "qat.black_list[1]",
               "expected a string, got number 3");
  expect_error(R"("qat": {"target": "tnn", "qconfig": {"preset": "tnn"}})", "qat.qconfig.preset",
               "unknown key (known: activation, weight)");
  expect_error(R"("qat": {"target": "tnn", "qconfig": {"weight": {"bitz": 4}}})",
               "qat.qconfig.weight.bitz", "unknown key");
  expect_error(R"("qat": {"target": "tnn", "qconfig": {"weight": {"bits": "4"}}})",
               "qat.qconfig.weight.bits", "expected an integer, got string \"4\"");
  expect_error(R"("qat": {"target": "tnn", "qconfig": {"activation": {"signed": false}}})",
               "qat.qconfig.activation", "tnn runs int8");
  expect_error(R"("qat": {"target": "tnn", "calibration_batches": 0})", "qat.calibration_batches",
               "must be at least 1, got 0");
  expect_error(R"("qat": {"target": "tnn", "freeze_bn_epoch": -1})", "qat.freeze_bn_epoch",
               "must be at least 0, got -1");
  expect_error(R"("qat": {"target": "tnn", "calibrator": "entropy"})", "qat.calibrator",
               "unknown value \"entropy\" (known: minmax, max, histogram)");
  expect_error(R"("qat": {"target": "fbgemm", "calibrator": "max"})", "qat.calibrator",
               "not per-tensor symmetric");
  expect_error(R"("qat": {"target": "fbgemm", "calibrator": "histogram"})",
               "qat.qconfig.activation",
               "the histogram calibrator computes a symmetric amax, got an affine scheme");
  expect_error(R"("qat": {"target": "tnn", "calibrator": "histogram",
      "qconfig": {"activation": {"calibrator": "none"}}})",
               "qat.calibrator",
               "\"histogram\" conflicts with qconfig.activation.calibrator \"none\"");
  expect_error(R"("qat": {"target": "tnn", "calibrator": "max",
      "qconfig": {"activation": {"calibrator": "histogram"}}})",
               "qat.calibrator", "conflicts with qconfig.activation.calibrator");
  expect_error(R"("qats": {})", "qats",
               "unknown key (known: model, data, qat, export, train, checkpoint)");
}

TEST(ExportConfig, ParsesEveryKey) {
  const Config absent = parse(R"("qat": {"target": "tnn"})");
  EXPECT_FALSE(absent.exports.has_value());
  const ExportConfig e =
      *parse(R"("export": {"onnx": "out/m.onnx", "tnn": "out/m", "float": true})").exports;
  EXPECT_EQ(e.onnx, "out/m.onnx");
  EXPECT_EQ(e.tnn, "out/m");
  EXPECT_TRUE(e.float_model);
  const ExportConfig defaults = *parse(R"("export": {})").exports;
  EXPECT_EQ(defaults.onnx, "");
  EXPECT_EQ(defaults.tnn, "");
  EXPECT_FALSE(defaults.float_model);
}

TEST(ExportConfig, ErrorsNameFileAndPath) {
  expect_error(R"("export": {"onxx": "m.onnx"})", "export.onxx",
               "unknown key (known: onnx, tnn, float)");
  expect_error(R"("export": {"float": "yes"})", "export.float",
               "expected true or false, got string \"yes\"");
  expect_error(R"("export": {"onnx": 1})", "export.onnx", "expected a string, got number 1");
  expect_error(R"("export": {"tnn": ""})", "export.tnn", "is empty");
}

TEST(DataConfig, EvalTransformsDropTheRandomOnesUnlessGiven) {
  Config c = parse(R"("data": {"dataset": "synthetic", "num_samples": 4,
      "transforms": [{"name": "random_resized_crop", "size": 20}, {"name": "resize", "size": 24},
                     {"name": "center_crop", "size": 16}, {"name": "random_horizontal_flip"}]})");
  EXPECT_EQ(make_transforms(*c.data, /*train=*/true).size(), 4u);
  EXPECT_EQ(make_transforms(*c.data, /*train=*/false).size(), 2u);  // resize, center_crop
  const auto loader = make_loader(*c.data, c.model, /*train=*/false);
  loader->start_epoch(0);
  EXPECT_EQ(loader->next()->images.shape(), (Shape{4, 1, 16, 16}));
  c = parse(R"("data": {"dataset": "synthetic", "num_samples": 4,
      "transforms": [{"name": "random_crop", "size": 20}],
      "eval_transforms": [{"name": "resize", "size": [8, 6]}]})");
  EXPECT_EQ(make_transforms(*c.data, /*train=*/false).size(), 1u);
  const auto eval_loader = make_loader(*c.data, c.model, /*train=*/false);
  eval_loader->start_epoch(0);
  EXPECT_EQ(eval_loader->next()->images.shape(), (Shape{4, 1, 8, 6}));
}

// Calibration: the training split (train_subset applies), evaluation transforms, in order.
TEST(DataConfig, CalibrationLoaderIsTheTrainingSplitWithEvalTransforms) {
  const Config c = parse(R"("data": {"dataset": "synthetic", "num_samples": 12,
      "train_subset": 6, "batch_size": 6,
      "transforms": [{"name": "random_crop", "size": 20}, {"name": "random_horizontal_flip"}],
      "eval_transforms": [{"name": "resize", "size": [8, 6]}]})");
  const auto loader = make_calibration_loader(*c.data, c.model);
  EXPECT_EQ(loader->num_batches(), 1);
  loader->start_epoch(0);
  const Tensor first = loader->next()->images;
  EXPECT_EQ(first.shape(), (Shape{6, 1, 8, 6}));
  // Deterministic (no augmentation, no shuffle): a second epoch gives the same images.
  loader->start_epoch(1);
  EXPECT_EQ(loader->next()->images.to_vector<float>(), first.to_vector<float>());
}

TEST(DataConfig, TrainSubsetCutsTheTrainingSplitOnly) {
  const Config c = parse(R"("data": {"dataset": "synthetic", "num_samples": 40,
      "train_subset": 10})");
  EXPECT_EQ(make_dataset(*c.data, c.model, /*train=*/true)->size(), 10u);
  EXPECT_EQ(make_dataset(*c.data, c.model, /*train=*/false)->size(), 40u);
}

TEST(TrainConfig, ParsesEveryKey) {
  const Config c = parse(R"("train": {"epochs": 5, "threads": 2, "seed": 7, "out_dir": "o",
      "log_every": 10, "eval_batches": 3, "final_eval_batches": 6, "max_steps_per_epoch": 4,
      "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": true,
                    "weight_decay": 1e-4},
      "lr_schedule": {"name": "step", "warmup_epochs": 0.5, "warmup_start_factor": 0.1,
                      "step_epochs": 2, "gamma": 0.5}},
      "checkpoint": {"dir": "ck", "keep_last": 2, "keep_best": false, "every_steps": 100},
      "qat": {"target": "tnn", "start_epoch": 3, "freeze_bn_epoch": 4, "lr": 0.002})");
  ASSERT_TRUE(c.train.has_value());
  EXPECT_EQ(c.train->epochs, 5);
  EXPECT_EQ(c.train->threads, 2);
  EXPECT_EQ(c.train->seed, 7);
  EXPECT_EQ(c.train->out_dir, "o");
  EXPECT_EQ(c.train->log_every, 10);
  EXPECT_EQ(c.train->eval_batches, 3);
  EXPECT_EQ(c.train->final_eval_batches, 6);
  EXPECT_EQ(c.train->max_steps_per_epoch, 4);
  EXPECT_EQ(c.train->optimizer.kind, OptimizerConfig::Kind::kSgd);
  EXPECT_EQ(c.train->optimizer.lr, 0.05);
  EXPECT_EQ(c.train->optimizer.momentum, 0.8);
  EXPECT_TRUE(c.train->optimizer.nesterov);
  EXPECT_EQ(c.train->optimizer.weight_decay, 1e-4);
  EXPECT_EQ(c.train->lr_schedule.kind, LrScheduleConfig::Kind::kStep);
  EXPECT_EQ(c.train->lr_schedule.warmup_epochs, 0.5);
  EXPECT_EQ(c.train->lr_schedule.warmup_start_factor, 0.1);
  EXPECT_EQ(c.train->lr_schedule.step_epochs, 2);
  EXPECT_EQ(c.train->lr_schedule.gamma, 0.5);
  ASSERT_TRUE(c.checkpoint.has_value());
  EXPECT_EQ(c.checkpoint->dir, "ck");
  EXPECT_EQ(c.checkpoint->keep_last, 2);
  EXPECT_FALSE(c.checkpoint->keep_best);
  EXPECT_EQ(c.checkpoint->every_steps, 100);
  EXPECT_EQ(c.qat->lr, 0.002);
}

TEST(TrainConfig, Defaults) {
  const Config c = parse(R"("train": {"optimizer": {"name": "adamw", "betas": [0.8, 0.9]}})");
  EXPECT_EQ(c.train->epochs, 1);
  EXPECT_EQ(c.train->out_dir, "out/small_cnn");
  EXPECT_EQ(c.train->optimizer.kind, OptimizerConfig::Kind::kAdamW);
  EXPECT_EQ(c.train->optimizer.betas, (std::pair<double, double>{0.8, 0.9}));
  EXPECT_EQ(c.train->lr_schedule.kind, LrScheduleConfig::Kind::kCosine);
  EXPECT_FALSE(c.checkpoint.has_value());
}

TEST(TrainConfig, ErrorsNameFileAndPath) {
  expect_error(R"("train": {"epoch": 3})", "train.epoch", "unknown key (known: epochs,");
  expect_error(R"("train": {"epochs": "3"})", "train.epochs", "expected an integer");
  expect_error(R"("train": {"epochs": 0})", "train.epochs", "must be at least 1");
  expect_error(R"("train": {"optimizer": {"name": "rmsprop"}})", "train.optimizer.name",
               "unknown value \"rmsprop\" (known: sgd, adam, adamw)");
  expect_error(R"("train": {"optimizer": {"lr": -1}})", "train.optimizer.lr", "must be > 0");
  expect_error(R"("train": {"optimizer": {"name": "adam", "momentum": 0.9}})",
               "train.optimizer.momentum", "only applies to \"name\": \"sgd\"");
  expect_error(R"("train": {"optimizer": {"momentum": 0, "nesterov": true}})",
               "train.optimizer.nesterov", "needs \"momentum\" > 0");
  expect_error(R"("train": {"optimizer": {"name": "adam", "betas": [0.9]}})",
               "train.optimizer.betas", "expected [beta1, beta2]");
  expect_error(R"("train": {"lr_schedule": {"name": "cosine", "gamma": 0.1}})",
               "train.lr_schedule.gamma", "only applies to \"name\": \"step\"");
  expect_error(R"("train": {"lr_schedule": {"warmup_start_factor": 2}})",
               "train.lr_schedule.warmup_start_factor", "must be in (0, 1]");
  expect_error(R"("checkpoint": {"keep_last": 0})", "checkpoint.keep_last", "must be at least 1");
  expect_error(R"("checkpoint": {"dir": ""})", "checkpoint.dir", "is empty");
  expect_error(R"("checkpoint": {"every": 5})", "checkpoint.every", "unknown key (known: dir,");
  expect_error(R"("train": {"epochs": 2}, "qat": {"target": "tnn", "start_epoch": 2})",
               "qat.start_epoch", "must be below train.epochs = 2");
  expect_error(R"("train": {"epochs": 2}, "qat": {"target": "tnn", "freeze_bn_epoch": 5})",
               "qat.freeze_bn_epoch", "5 is beyond train.epochs = 2");
  expect_error(R"("qat": {"target": "tnn", "lr": 0})", "qat.lr", "must be > 0");
  const std::string error = error_of([] {
    parse_config(nlohmann::json::parse(R"({"model": {"name": "small_cnn", "pretrained": ""}})"),
                 "cfg.json");
  });
  EXPECT_EQ(error.rfind("cfg.json: model.pretrained: is empty", 0), 0u) << error;
}

TEST(Configs, EveryExampleConfigHasDataAndQat) {
  DIR* dir = opendir("zoo/configs");
  ASSERT_NE(dir, nullptr);
  std::vector<std::string> files;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".json") files.push_back(name);
  }
  closedir(dir);
  ASSERT_GE(files.size(), 7u);
  for (const std::string& file : files) {
    const Config c = load_config("zoo/configs/" + file);
    EXPECT_TRUE(c.data.has_value()) << file;
    EXPECT_TRUE(c.qat.has_value()) << file;
  }
}

}  // namespace
}  // namespace qat::zoo
