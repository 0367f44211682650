// The training run of `qat train` on synthetic data: end to end for both targets, and the
// promise of its checkpoints: a run stopped anywhere (in-process, by SIGKILL of the `qat`
// binary, by a NaN loss, or with its newest checkpoint damaged) and resumed ends with exactly
// the weights of an uninterrupted run.
#include "zoo/trainer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stb/stb_image_write.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/serialize.h"
#include "nn/checkpoint.h"
#include "tests/testing/errors.h"
#include "zoo/config.h"
#include "zoo/evaluate.h"
#include "zoo/qat_pipeline.h"

namespace qat::zoo {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using qat::testing::error_of;

// 128 training images of 4 classes, batches of 16: 8 steps per epoch; one float epoch, two QAT
// epochs (BN frozen in the last); random crops and flips, so the data order and augmentation
// state must survive a resume too. One thread: bit-identical runs.
Json base_config(const std::string& out_dir, const std::string& target) {
  Json json = Json::parse(R"({
    "model": {"name": "small_cnn", "num_classes": 4, "input_shape": [1, 1, 28, 28]},
    "data": {"dataset": "synthetic", "num_samples": 128, "batch_size": 16, "workers": 2,
             "transforms": [{"name": "random_crop", "size": 28, "padding": 2},
                            {"name": "random_horizontal_flip"}]},
    "train": {"epochs": 3, "threads": 1, "seed": 5, "log_every": 4,
              "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": true,
                            "weight_decay": 1e-4},
              "lr_schedule": {"name": "cosine", "warmup_epochs": 0.5}},
    "qat": {"start_epoch": 1, "calibration_batches": 2, "freeze_bn_epoch": 2, "lr": 0.005},
    "checkpoint": {"keep_last": 2, "every_steps": 3}
  })");
  json["train"]["out_dir"] = out_dir;
  json["qat"]["target"] = target;
  return json;
}

std::string scratch(const std::string& name) {
  const fs::path dir = fs::path(std::getenv("TEST_TMPDIR")) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Writes `json` as <dir>/config.json and returns the path.
std::string write_config(const std::string& dir, const Json& json) {
  const std::string path = dir + "/config.json";
  std::ofstream(path) << json.dump(2);
  return path;
}

TrainResult run(const std::string& config_path, TrainOptions options = {}) {
  std::FILE* log = std::tmpfile();  // the progress output; the tests read results, not text
  options.out = log;
  TrainResult result = train(load_config(config_path), config_path, options);
  std::fclose(log);
  return result;
}

// Every tensor of two safetensors files equal bit for bit (names, shapes, bytes).
::testing::AssertionResult same_tensors(const std::string& a, const std::string& b) {
  const NamedTensors x = load_safetensors(a), y = load_safetensors(b);
  if (x.size() != y.size()) return ::testing::AssertionFailure() << "tensor counts differ";
  for (size_t i = 0; i < x.size(); ++i) {
    const Tensor& s = x[i].second;
    const Tensor& t = y[i].second;
    if (x[i].first != y[i].first || s.shape() != t.shape() || s.dtype() != t.dtype() ||
        std::memcmp(s.raw_data(), t.raw_data(), s.nbytes()) != 0) {
      return ::testing::AssertionFailure() << x[i].first << " differs";
    }
  }
  return ::testing::AssertionSuccess() << x.size() << " tensors equal";
}

// The uninterrupted tensorrt run, done once: the reference of the resume tests.
const std::string& reference_run() {
  static const std::string weights = [] {
    const std::string dir = scratch("reference");
    const TrainResult result = run(write_config(dir, base_config(dir + "/out", "tensorrt")));
    EXPECT_TRUE(result.completed);
    EXPECT_EQ(result.steps, 24);
    return result.qat_weights;
  }();
  return weights;
}

// Resumes the run of `config` to its end; its weights must be the reference run's.
void resume_to_the_end_and_compare(const std::string& config) {
  TrainOptions resume;
  resume.resume = true;
  const TrainResult result = run(config, resume);
  ASSERT_TRUE(result.completed);
  EXPECT_EQ(result.steps, 24);
  EXPECT_TRUE(same_tensors(result.qat_weights, reference_run()));
}

const AccuracyRow& row(const TrainResult& result, const std::string& prefix) {
  for (const AccuracyRow& r : result.table) {
    if (r.name.rfind(prefix, 0) == 0) return r;
  }
  ADD_FAILURE() << "no row " << prefix;
  return result.table.front();
}

TEST(Trainer, EndToEndFloatQatExportBothTargetsAndEval) {
  const auto start = std::chrono::steady_clock::now();
  // tensorrt: float epoch, calibration, two QAT epochs, ONNX export run in ONNX Runtime.
  const std::string dir = scratch("e2e");
  const TrainResult trt = run(write_config(dir, base_config(dir + "/trt", "tensorrt")));
  ASSERT_TRUE(trt.completed);
  ASSERT_EQ(trt.table.size(), 4u);
  for (const AccuracyRow& r : trt.table) ASSERT_TRUE(r.result.has_value()) << r.name << r.note;
  EXPECT_GE(row(trt, "fake-quant").result->top1, 60.0);  // 4 classes: learned, not chance
  // The int8 model agrees with its fake-quant training graph and with ONNX Runtime; only the
  // float summation order differs (oneDNN vs MLAS), which may move a logit by a code.
  EXPECT_EQ(row(trt, "int8").result->top1, row(trt, "fake-quant").result->top1);
  EXPECT_NEAR(row(trt, "exported").result->top1, row(trt, "int8").result->top1, 100.0 / 128);
  ASSERT_EQ(trt.exported.size(), 1u);
  EXPECT_TRUE(fs::exists(trt.float_weights));

  // tnn from the float weights of that run: QAT from epoch 0, TNN files read back and run.
  Json tnn_json = base_config(dir + "/tnn", "tnn");
  tnn_json["model"]["pretrained"] = trt.float_weights;
  tnn_json["train"]["epochs"] = 1;
  tnn_json["qat"]["start_epoch"] = 0;
  tnn_json["qat"].erase("freeze_bn_epoch");
  const std::string tnn_config = dir + "/tnn.json";
  std::ofstream(tnn_config) << tnn_json.dump();
  const TrainResult tnn = run(tnn_config);
  ASSERT_TRUE(tnn.completed);
  // The float row is the pretrained model: the same as the tensorrt run's.
  EXPECT_EQ(row(tnn, "float").result->top1, row(trt, "float").result->top1);
  EXPECT_EQ(row(tnn, "int8").result->top1, row(tnn, "fake-quant").result->top1);
  EXPECT_EQ(row(tnn, "exported").result->top1, row(tnn, "int8").result->top1);
  EXPECT_EQ(row(tnn, "exported").result->loss, row(tnn, "int8").result->loss);

  // Eval of the exported files outside the trainer gives the table's numbers.
  const Config config = load_config(tnn_config);
  const auto loader = make_loader(*config.data, config.model, /*train=*/false);
  const std::string prefix = tnn.exported.front().substr(0, tnn.exported.front().size() - 9);
  EXPECT_EQ(evaluate_tnn_files(prefix, *loader).top1, row(tnn, "exported").result->top1);
  EXPECT_EQ(evaluate_onnx_runtime(trt.exported.front(), *loader).top1,
            row(trt, "exported").result->top1);

  // metrics.jsonl: step records every 4 steps, one record per epoch, QAT start, final table.
  std::ifstream metrics(dir + "/trt/metrics.jsonl");
  int steps = 0, epochs = 0, finals = 0, qat_starts = 0;
  for (std::string line; std::getline(metrics, line);) {
    const Json record = Json::parse(line);
    const std::string event = record.at("event");
    steps += event == "step";
    epochs += event == "epoch";
    finals += event == "final";
    qat_starts += event == "qat_start";
  }
  EXPECT_EQ(steps, 6);
  EXPECT_EQ(epochs, 3);
  EXPECT_EQ(qat_starts, 1);
  EXPECT_EQ(finals, 1);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("end to end: %.1f s\n", seconds);
}

TEST(Trainer, StoppedInProcessAndResumedIsBitIdentical) {
  const std::string dir = scratch("in_process");
  const std::string config = write_config(dir, base_config(dir + "/out", "tensorrt"));
  // Stops mid float epoch (5), at the float phase's end (8: the epoch end, before the QAT
  // start), mid QAT (13) and at a QAT epoch end (16); then the rest.
  int64_t expected_step = 0;
  for (int64_t stop_after : {5, 3, 5, 3}) {
    TrainOptions options;
    options.resume = expected_step > 0;
    options.stop_after_steps = stop_after;
    const TrainResult part = run(config, options);
    expected_step += stop_after;
    ASSERT_FALSE(part.completed);
    ASSERT_EQ(part.steps, expected_step);
  }
  resume_to_the_end_and_compare(config);
}

TEST(Trainer, KilledQatProcessResumesBitIdentical) {
  const std::string dir = scratch("killed");
  const std::string config = write_config(dir, base_config(dir + "/out", "tensorrt"));
  const std::string binary =
      std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/zoo/qat";
  nn::CheckpointDir checkpoints(dir + "/out/checkpoints");
  const auto newest_step = [&] {
    const std::vector<std::string> files = checkpoints.list();
    if (files.empty()) return int64_t{-1};
    const std::string name = fs::path(files.back()).stem().string();  // ckpt-00000012
    return static_cast<int64_t>(std::stoll(name.substr(name.find('-') + 1)));
  };
  int kills = 0;
  for (int64_t kill_after : {3, 9, 15, -1}) {  // -1: let the last process finish
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      const int null_fd = ::open("/dev/null", O_WRONLY);  // the progress lines
      if (null_fd >= 0) ::dup2(null_fd, STDOUT_FILENO);
      ::execl(binary.c_str(), binary.c_str(), "train", "--config", config.c_str(), "--resume",
              "true", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    pid_t reaped = 0;
    if (kill_after >= 0) {
      while (newest_step() < kill_after && (reaped = ::waitpid(child, &status, WNOHANG)) == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      if (reaped == 0) ::kill(child, SIGKILL);  // at whatever the process is doing now
    }
    if (reaped == 0) reaped = ::waitpid(child, &status, 0);
    ASSERT_EQ(reaped, child);
    if (kill_after >= 0) {
      kills += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    }
  }
  EXPECT_EQ(kills, 3);
  EXPECT_TRUE(same_tensors(dir + "/out/qat.safetensors", reference_run()));
}

TEST(Trainer, NanLossStopsAndKeepsTheLastGoodCheckpoint) {
  const std::string dir = scratch("nan");
  const std::string config = write_config(dir, base_config(dir + "/out", "tensorrt"));
  TrainOptions poisoned;
  poisoned.on_batch = [](int64_t step, Tensor& images) {
    if (step == 11) images.data<float>()[0] = std::nanf("");
  };
  const std::string error = error_of([&] { run(config, poisoned); });
  EXPECT_NE(error.find("the loss is NaN at step 11 (epoch 2, batch 3)"), std::string::npos)
      << error;
  EXPECT_NE(error.find("ckpt-00000009"), std::string::npos) << error;  // every_steps 3
  nn::CheckpointDir checkpoints(dir + "/out/checkpoints");
  ASSERT_FALSE(checkpoints.list().empty());
  EXPECT_NE(checkpoints.list().back().find("ckpt-00000009"), std::string::npos);
  // The bad step was never committed: resuming on clean data ends as the reference does.
  resume_to_the_end_and_compare(config);
}

TEST(Trainer, DamagedNewestCheckpointFallsBackToThePreviousOne) {
  const std::string dir = scratch("damaged");
  const std::string config = write_config(dir, base_config(dir + "/out", "tensorrt"));
  TrainOptions stop;
  stop.stop_after_steps = 14;  // checkpoints at 12 (every_steps) and 14 (the stop)
  ASSERT_FALSE(run(config, stop).completed);
  nn::CheckpointDir checkpoints(dir + "/out/checkpoints");
  const std::string newest = checkpoints.list().back();
  ASSERT_NE(newest.find("ckpt-00000014"), std::string::npos);
  fs::resize_file(newest, fs::file_size(newest) / 2);  // truncated, as by a full disk
  std::vector<std::string> warnings;
  const std::optional<nn::TrainingState> usable = checkpoints.load_latest(&warnings);
  ASSERT_TRUE(usable.has_value());
  EXPECT_EQ(usable->step, 12);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("ckpt-00000014"), std::string::npos) << warnings[0];
  resume_to_the_end_and_compare(config);
}

TEST(Trainer, RefusesToOverwriteOrToResumeWithOtherSettings) {
  const std::string dir = scratch("refuse");
  Json json = base_config(dir + "/out", "tensorrt");
  const std::string config = write_config(dir, json);
  TrainOptions stop;
  stop.stop_after_steps = 2;
  ASSERT_FALSE(run(config, stop).completed);
  EXPECT_NE(error_of([&] { run(config); })
                .find("already holds checkpoints of a run: continue "
                      "it with --resume"),
            std::string::npos);
  json["train"]["optimizer"]["lr"] = 0.5;
  write_config(dir, json);
  TrainOptions resume;
  resume.resume = true;
  EXPECT_NE(error_of([&] { run(config, resume); }).find("written with other settings"),
            std::string::npos);
  // A pretrained file that is not there is named with its config key.
  Json missing = base_config(dir + "/out_missing", "tensorrt");
  missing["model"]["pretrained"] = dir + "/no_such.safetensors";
  EXPECT_NE(error_of([&] {
              run(write_config(dir, missing));
            }).find("config.json: model.pretrained: no such file"),
            std::string::npos);
  // Settings that do not change the weights may change.
  json["train"]["optimizer"]["lr"] = 0.02;
  json["train"]["log_every"] = 1;
  write_config(dir, json);
  EXPECT_NO_THROW(run(config, resume));
}

// A class-per-directory folder of 28x28 gray PNGs whose class sets the brightness, plus a
// file that claims to be a PNG but is not and a text file (not an image: ignored).
void write_image_folder(const std::string& root, int per_class) {
  for (int label = 0; label < 4; ++label) {
    const std::string dir = root + "/class" + std::to_string(label);
    fs::create_directories(dir);
    for (int i = 0; i < per_class; ++i) {
      std::vector<uint8_t> pixels(28 * 28);
      for (size_t p = 0; p < pixels.size(); ++p)
        pixels[p] = static_cast<uint8_t>((label * 60 + (p * 7 + i * 13) % 40) % 256);
      const std::string path = dir + "/" + std::to_string(i) + ".png";
      ASSERT_NE(stbi_write_png(path.c_str(), 28, 28, 1, pixels.data(), 28), 0) << path;
    }
  }
  std::ofstream(root + "/class1/broken.png") << "not a png";
  std::ofstream(root + "/class2/notes.txt") << "ignored";
}

TEST(Trainer, ImageFolderSkipsOrFailsOnUnreadableImages) {
  const std::string dir = scratch("image_folder");
  write_image_folder(dir + "/train", 8);
  write_image_folder(dir + "/test", 2);
  Json json = base_config(dir + "/out", "tnn");
  json["data"] = Json::parse(R"({"dataset": "image_folder", "batch_size": 8, "on_error": "skip",
      "transforms": [{"name": "random_horizontal_flip"}, {"name": "normalize", "mean": [0.5],
                     "std": [0.25]}]})");
  json["data"]["train_dir"] = dir + "/train";
  json["data"]["test_dir"] = dir + "/test";
  json["train"]["epochs"] = 2;
  json["qat"].erase("freeze_bn_epoch");
  const std::string config = write_config(dir, json);
  const TrainResult result = run(config);  // the broken file is reported and left out
  ASSERT_TRUE(result.completed);
  EXPECT_EQ(result.steps, 2 * 4);  // 32 readable training images, batches of 8
  EXPECT_EQ(row(result, "exported").result->images, 8);
  EXPECT_EQ(row(result, "exported").result->top1, row(result, "int8").result->top1);

  json["data"]["on_error"] = "fail";
  json["train"]["out_dir"] = dir + "/out_fail";
  write_config(dir, json);
  const std::string error = error_of([&] { run(config); });
  EXPECT_NE(error.find(dir + "/train/class1/broken.png"), std::string::npos) << error;
}

TEST(Trainer, FloatOnlyWithAdamWAndAStepSchedule) {
  const std::string dir = scratch("float_only");
  Json json = base_config(dir + "/out", "tensorrt");
  json.erase("qat");
  json["train"]["optimizer"] = Json::parse(R"({"name": "adamw", "lr": 0.002})");
  json["train"]["lr_schedule"] = Json::parse(R"({"name": "step", "step_epochs": 1, "gamma": 0.5})");
  json["train"]["epochs"] = 2;
  const TrainResult result = run(write_config(dir, json));
  ASSERT_TRUE(result.completed);
  ASSERT_EQ(result.table.size(), 1u);
  EXPECT_EQ(result.table[0].name, "float");
  EXPECT_GE(result.table[0].result->top1, 60.0);
  EXPECT_TRUE(result.qat_weights.empty());
  EXPECT_TRUE(fs::exists(result.float_weights));
}

TEST(Trainer, ConfigWithoutTrainSectionIsAnError) {
  const std::string dir = scratch("no_train");
  Json json = base_config(dir + "/out", "tensorrt");
  json.erase("train");
  json["qat"].erase("start_epoch");
  json["qat"].erase("freeze_bn_epoch");
  const std::string config = write_config(dir, json);
  EXPECT_NE(error_of([&] { run(config); }).find("config.json: no \"train\" section"),
            std::string::npos);
}

}  // namespace
}  // namespace qat::zoo
