// Runs the `qat` binary (a data dependency) as a user would: files in, files and text out,
// exit codes. Configs come from zoo/configs; checkpoints and inputs are written here. `qat export`
// and `qat verify` are in qat_export_test.cc.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>

#include "core/autograd.h"
#include "core/random.h"
#include "core/serialize.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "quant/calibrator.h"
#include "quant/qat_module.h"
#include "tests/testing/compare.h"
#include "zoo/config.h"
#include "zoo/qat_cli_test_util.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"

namespace qat::zoo {
namespace {

using cli_test::expect_error;
using cli_test::float_checkpoint;
using cli_test::kResNet18;
using cli_test::kSmallCnn;
using cli_test::model_json;
using cli_test::qat;
using cli_test::qat_config;
using cli_test::QatCase;
using cli_test::random_model;
using cli_test::Result;
using cli_test::temp_path;
using cli_test::write_file;

void expect_run_matches_in_process_forward(const std::string& config_file) {
  manual_seed(1);
  const std::string config_path = "zoo/configs/" + config_file;
  const std::shared_ptr<nn::Module> model = random_model(load_config(config_path).model);
  const std::string checkpoint = temp_path("weights.safetensors");
  const std::string input_path = temp_path("input.safetensors");
  const std::string output_path = temp_path("output.safetensors");
  save_safetensors(checkpoint, model->state_dict());
  Tensor input = Tensor::empty({2, 1, 28, 28});
  normal_(input, 0.0, 1.0);
  save_safetensors(input_path, {{"input", input}});

  const Result result = qat("run --config " + config_path + " --checkpoint " + checkpoint +
                            " --input " + input_path + " --output " + output_path);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(result.out, "wrote " + output_path + " (output [2, 10] float32)\n");

  const NamedTensors written = load_safetensors(output_path);
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].first, "output");
  NoGradGuard no_grad;
  model->eval();
  EXPECT_TRUE(testing::all_close(written[0].second, model->forward(input), 1e-5, 1e-6));
}

TEST(QatRun, SmallCnnMatchesInProcessForward) {
  expect_run_matches_in_process_forward("small_cnn_fashion_mnist.json");
}

TEST(QatRun, ResNet18SmallInputMatchesInProcessForward) {
  expect_run_matches_in_process_forward("resnet18_fashion_mnist.json");
}

TEST(QatRun, SkipsGoogLeNetAuxHeadsWithANote) {
  ModelConfig with_aux = load_config("zoo/configs/googlenet_fashion_mnist.json").model;
  ASSERT_EQ(with_aux.aux_logits, true);
  const std::string checkpoint = temp_path("googlenet.safetensors");
  save_safetensors(checkpoint, create_model(with_aux)->state_dict());
  const std::string input = temp_path("googlenet_input.safetensors");
  save_safetensors(input, {{"input", Tensor::zeros({1, 1, 28, 28})}});
  const std::string config = write_file("googlenet_no_aux.json", R"({"model": {
      "name": "googlenet", "num_classes": 10, "in_channels": 1, "small_input": true,
      "aux_logits": false}})");

  const Result result = qat("run --config " + config + " --checkpoint " + checkpoint + " --input " +
                            input + " --output " + temp_path("out.safetensors"));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err.rfind("qat: note: skipped ", 0), 0u) << result.err;
  EXPECT_NE(result.err.find("aux1.conv.conv.weight"), std::string::npos);
  EXPECT_NE(result.err.find("aux2.fc2.bias"), std::string::npos);
  EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << result.err;
}

TEST(QatSummary, PrintsTheTreeWithParametersAndOutputShapes) {
  const Result result = qat("summary --config zoo/configs/small_cnn_fashion_mnist.json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  EXPECT_EQ(out.rfind("small_cnn (SmallCnn), input [1, 1, 28, 28], eval mode\n", 0), 0u) << out;
  const auto has_line = [&out](const std::string& pattern) {
    return std::regex_search(out, std::regex("(^|\n)" + pattern + "\n"));
  };
  EXPECT_TRUE(has_line("module +type +params +output")) << out;
  EXPECT_TRUE(has_line(R"(\(root\) +SmallCnn +104,426 +\[1, 10\])")) << out;
  EXPECT_TRUE(has_line(R"(  features +Sequential +92,896 +\[1, 128, 3, 3\])")) << out;
  EXPECT_TRUE(has_line(R"(    features\.0 +Conv2d +288 +\[1, 32, 28, 28\])")) << out;
  EXPECT_TRUE(has_line(R"(    features\.1 +BatchNorm2d +64 +\[1, 32, 28, 28\])")) << out;
  EXPECT_TRUE(has_line(R"(  fc +Linear +11,530 +\[1, 10\])")) << out;
  EXPECT_TRUE(has_line("total: 104,426 parameters")) << out;
}

TEST(QatSummary, ListsEveryCallOfAModuleAndTakesTheInputShapeFlag) {
  const Result result =
      qat("summary --config zoo/configs/resnet18_fashion_mnist.json --input-shape 2,1,16,16");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  // BasicBlock calls its one ReLU twice.
  EXPECT_TRUE(std::regex_search(
      result.out,
      std::regex(R"(\n      layer1\.0\.relu +ReLU +0 +\[2, 64, 16, 16\]; \[2, 64, 16, 16\]\n)")))
      << result.out;
  EXPECT_NE(result.out.find("(root)"), std::string::npos);
  EXPECT_NE(result.out.find("[2, 10]\n"), std::string::npos) << result.out;
}

TEST(QatHelp, TopLevelAndCommandHelp) {
  const Result top = qat("--help");
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_EQ(top.out.rfind("usage: qat <command> [flags]\n", 0), 0u) << top.out;
  EXPECT_NE(top.out.find("\n  run "), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("\n  summary "), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("\n  inspect "), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("\n  calibrate "), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("\n  export "), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("\n  verify "), std::string::npos) << top.out;

  const Result run = qat("run --help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.out.rfind("usage: qat run --config C.json --checkpoint W.safetensors --input "
                          "X.safetensors --output Y.safetensors [--mode float]\n",
                          0),
            0u)
      << run.out;
  const Result summary = qat("summary --help");
  EXPECT_EQ(summary.exit_code, 0);
  EXPECT_EQ(summary.out.rfind("usage: qat summary --config C.json [--input-shape N,C,H,W]\n", 0),
            0u)
      << summary.out;
}

TEST(QatErrors, FailuresAreOneLineWithExitCode1) {
  const std::string small_cnn = "zoo/configs/small_cnn_fashion_mnist.json";
  const std::string checkpoint = temp_path("small_cnn.safetensors");
  ModelConfig config;
  config.name = "small_cnn";
  nn::StateDict state = create_model(config)->state_dict();
  save_safetensors(checkpoint, state);
  const std::string input = temp_path("x.safetensors");
  save_safetensors(input, {{"input", Tensor::zeros({1, 1, 28, 28})}});
  const std::string run = "run --output " + temp_path("y.safetensors");

  const std::string unknown_model =
      write_file("unknown_model.json", R"({"model": {"name": "resnet19"}})");
  expect_error(
      qat(run + " --config " + unknown_model + " --checkpoint " + checkpoint + " --input " + input),
      1, unknown_model + ": model.name: unknown model 'resnet19' (known: resnet18, ");

  const std::string missing_name = write_file("missing_name.json", R"({"model": {}})");
  expect_error(qat("summary --config " + missing_name), 1, missing_name + ": model.name: missing");

  state.pop_back();  // fc.bias
  const std::string partial = temp_path("partial.safetensors");
  save_safetensors(partial, state);
  expect_error(
      qat(run + " --config " + small_cnn + " --checkpoint " + partial + " --input " + input), 1,
      partial +
          ": load_state_dict: error(s) loading the state dict of SmallCnn; missing key(s): "
          "\"fc.bias\"");

  const std::string wide = temp_path("wide.safetensors");
  save_safetensors(wide, {{"input", Tensor::zeros({1, 1, 32, 32})}});
  expect_error(
      qat(run + " --config " + small_cnn + " --checkpoint " + checkpoint + " --input " + wide), 1,
      "SmallCnn expects [N, C, 28, 28] input, got [1, 1, 32, 32]");
  const std::string flat = temp_path("flat.safetensors");
  save_safetensors(flat, {{"input", Tensor::zeros({1, 784})}});
  expect_error(
      qat(run + " --config " + small_cnn + " --checkpoint " + checkpoint + " --input " + flat), 1,
      flat + ": tensor 'input' must be [N, C, H, W], got [1, 784]");

  const std::string missing = temp_path("missing.safetensors");
  expect_error(
      qat(run + " --config " + small_cnn + " --checkpoint " + missing + " --input " + input), 1,
      missing);
  expect_error(qat("summary --config " + temp_path("missing.json")), 1,
               temp_path("missing.json") + ": cannot open the config file");

  const std::string no_shape = write_file("no_shape.json", R"({"model": {"name": "small_cnn"}})");
  expect_error(
      qat("summary --config " + no_shape), 1,
      "no input shape: set model.input_shape in " + no_shape + " or pass --input-shape N,C,H,W");
}

TEST(QatErrors, UsageErrorsExitWith2) {
  expect_error(qat(""), 2,
               "no command given (commands: calibrate, eval, export, inspect, run, sensitivity, "
               "summary, train, verify)");
  expect_error(qat("trian"), 2,
               "unknown command 'trian' (commands: calibrate, eval, export, inspect, run, "
               "sensitivity, summary, train, verify; see 'qat --help')");
  expect_error(qat("train"), 2, "missing --config (see 'qat train --help')");
  expect_error(qat("run --config c.json"), 2, "missing --checkpoint (see 'qat run --help')");
  expect_error(qat("run --bogus 1"), 2, "unknown flag --bogus");
  expect_error(qat("summary --config"), 2, "flag --config needs a value");
  expect_error(qat("summary --config c.json --input-shape 1,3,32"), 2,
               "--input-shape expects N,C,H,W (4 positive integers), got '1,3,32'");
  expect_error(qat("run --config c --checkpoint w --input x --output y --mode fast"), 2,
               "--mode must be float, fakequant or int8, got 'fast'");
}

// ---- QAT subcommands: inspect, calibrate, run --mode fakequant|int8

std::string input_file(const std::string& name, int64_t batch) {
  Tensor input = Tensor::empty({batch, 1, 28, 28});
  normal_(input, 0.0, 1.0);
  const std::string path = temp_path(name);
  save_safetensors(path, {{"input", input}});
  return path;
}

// The tensor of `tensors` called `name`; fails the test when there is none.
Tensor find_tensor(const NamedTensors& tensors, const std::string& name) {
  for (const auto& [key, tensor] : tensors) {
    if (key == name) return tensor;
  }
  ADD_FAILURE() << "no tensor " << name;
  return Tensor::zeros({1});
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The in-process twin of `qat run --mode fakequant|int8`.
Tensor quantized_forward(const std::string& config_path, const std::string& checkpoint,
                         const Tensor& input, bool int8) {
  const Config config = load_config(config_path);
  const auto qm = prepare_model(create_model(config.model), config, config_path);
  load_qat_checkpoint(*qm, checkpoint);
  quant::disable_observer(*qm);
  qm->eval();
  NoGradGuard no_grad;
  return int8 ? graph::simulate(graph::convert(*qm), input) : qm->forward(input);
}

TEST(QatInspect, PrintsThePreparedGraphWithItsQuantizers) {
  const Result result = qat("inspect --config zoo/configs/small_cnn_fashion_mnist.json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  EXPECT_EQ(out.rfind("small_cnn prepared for tnn, input [1, 1, 28, 28], black_list []\n\n", 0), 0u)
      << out;
  EXPECT_NE(out.find("\ninput.activation_post_process: FakeQuantize(input) -> [1, 1, 28, 28]  # "
                     "act: qint8 per_tensor_symmetric [-128, 127] half_away\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\nfeatures.0: ConvBnReLU2d(input.activation_post_process) -> [1, 32, 28, "
                     "28]  # fused features.1, features.2; weight: qint8 "
                     "per_channel_symmetric(axis=0) [-127, 127] half_away"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("quantizers of"), std::string::npos) << out;
}

TEST(QatInspect, BlackListAndTargetComeFromTheConfig) {
  const std::string config =
      qat_config("inspect_trt.json", kResNet18, "tensorrt", R"(, "black_list": ["fc"])");
  const Result result = qat("inspect --config " + config);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out.rfind("resnet18 prepared for tensorrt, input [1, 1, 28, 28], black_list "
                             "[fc]\n",
                             0),
            0u)
      << result.out;
  EXPECT_NE(result.out.find("half_even_div"), std::string::npos);
  EXPECT_NE(result.out.find("\nfc: Linear("), std::string::npos) << result.out;
}

class QatPipelineTest : public ::testing::TestWithParam<QatCase> {};

// calibrate writes a QAT checkpoint with observed scales and the float tensors unchanged (eval
// mode: BN keeps its running statistics); inspect lists its quantizers; run --mode fakequant
// and int8 read it and equal the in-process forward and simulate(convert()).
TEST_P(QatPipelineTest, CalibrateInspectRun) {
  const QatCase& c = GetParam();
  const std::string tag = c.model + "_" + c.target;
  const std::string config = qat_config(tag + ".json", model_json(c.model), c.target);
  const std::string float_path = float_checkpoint(config, tag + "_float.safetensors");
  const std::string qat_path = temp_path(tag + "_qat.safetensors");

  const Result calibrated = qat("calibrate --config " + config + " --checkpoint " + float_path +
                                " --output " + qat_path + " --batches 2");
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.err;
  EXPECT_EQ(calibrated.err, "");
  EXPECT_EQ(calibrated.out.rfind("calibrating " + c.model + " for " + c.target +
                                     ": 2 batches of 4, calibrator minmax\n",
                                 0),
            0u)
      << calibrated.out;
  EXPECT_NE(calibrated.out.find("calibrating: batch 2/2, 8 images, "), std::string::npos)
      << calibrated.out;
  EXPECT_NE(calibrated.out.find("\nwrote " + qat_path + " ("), std::string::npos) << calibrated.out;

  const NamedTensors float_state = load_safetensors(float_path);
  const NamedTensors qat_state = load_safetensors(qat_path);
  ASSERT_GT(qat_state.size(), float_state.size());
  for (const auto& [key, tensor] : float_state) {
    EXPECT_TRUE(testing::all_close(find_tensor(qat_state, key), tensor, 0, 0)) << key;
  }
  int scales = 0;
  for (const auto& [key, tensor] : qat_state) {
    if (!ends_with(key, ".scale")) continue;
    ++scales;
    const float* s = tensor.data<float>();
    for (int64_t i = 0; i < tensor.numel(); ++i) {
      ASSERT_TRUE(std::isfinite(s[i]) && s[i] > 0 && s[i] != 1.0f) << key << "[" << i << "]";
    }
  }
  EXPECT_GE(scales, 8);

  const Result inspected = qat("inspect --config " + config + " --checkpoint " + qat_path);
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_NE(inspected.out.find("\nquantizers of " + qat_path + ":\n"), std::string::npos);
  // The grids: TensorRT / TNN symmetric int8; fbgemm's quint8 [0, 127] activations and
  // [-128, 127] weights.
  const bool pytorch = c.target == "fbgemm";
  const std::string activation_grid = pytorch ? R"(quint8 per_tensor_affine \[0, 127\])"
                                              : R"(qint8 per_tensor_symmetric \[-128, 127\])";
  const std::string weight_range = pytorch ? R"(\[-128, 127\])" : R"(\[-127, 127\])";
  EXPECT_TRUE(std::regex_search(
      inspected.out, std::regex(R"(\ninput\.activation_post_process +input +activation +)" +
                                activation_grid + R"( \S+ +[0-9.e-]+\n)")))
      << inspected.out;
  EXPECT_TRUE(std::regex_search(
      inspected.out,
      std::regex(R"(\n\S+\.weight_fake_quant +\S+ +weight +qint8 per_channel_symmetric\(axis=0\) )" +
                 weight_range + R"( \S+ +min [0-9.e-]+ max [0-9.e-]+ \([0-9]+ channels\)\n)")))
      << inspected.out;
  EXPECT_EQ(inspected.out.find("never observed"), std::string::npos) << inspected.out;

  const std::string input = input_file(tag + "_input.safetensors", 2);
  const Tensor x = load_safetensors(input)[0].second;
  for (const std::string mode : {"fakequant", "int8"}) {
    const std::string output = temp_path(tag + "_" + mode + ".safetensors");
    const Result run = qat("run --config " + config + " --checkpoint " + qat_path + " --input " +
                           input + " --output " + output + " --mode " + mode);
    ASSERT_EQ(run.exit_code, 0) << mode << ": " << run.err;
    EXPECT_EQ(run.out, "wrote " + output + " (output [2, 10] float32)\n");
    const Tensor expected = quantized_forward(config, qat_path, x, mode == "int8");
    EXPECT_TRUE(testing::all_close(load_safetensors(output)[0].second, expected, 0, 0)) << mode;
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, QatPipelineTest, cli_test::qat_cases(), cli_test::qat_case_name);

// The max calibrator sets the input quantizer to max |x| / 127 over the calibration batches.
TEST(QatCalibrate, MaxCalibratorTakesTheLargestMagnitude) {
  const std::string config =
      qat_config("max.json", kSmallCnn, "tensorrt", R"(, "calibrator": "max")");
  const std::string float_path = float_checkpoint(config, "max_float.safetensors");
  const std::string qat_path = temp_path("max_qat.safetensors");
  const Result result = qat("calibrate --config " + config + " --checkpoint " + float_path +
                            " --output " + qat_path + " --batches 2");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("calibrator max"), std::string::npos) << result.out;

  const Config parsed = load_config(config);
  const auto loader = make_loader(*parsed.data, parsed.model, /*train=*/true);
  loader->start_epoch(0);
  float amax = 0;
  for (int b = 0; b < 2; ++b) {
    const Tensor images = loader->next()->images;
    for (int64_t i = 0; i < images.numel(); ++i)
      amax = std::max(amax, std::fabs(images.data<float>()[i]));
  }
  const Tensor scale =
      find_tensor(load_safetensors(qat_path), "input.activation_post_process.scale");
  EXPECT_FLOAT_EQ(scale.data<float>()[0], amax / 127.0f);
}

// The histogram calibrator (qconfig.activation's method and percentile) sets the input
// quantizer to its amax / 127 over the calibration batches.
TEST(QatCalibrate, HistogramCalibratorUsesTheQConfigMethod) {
  const std::string config =
      qat_config("hist.json", kSmallCnn, "tnn",
                 R"(, "calibrator": "histogram", "qconfig": {"activation": {"method": "percentile",
                 "percentile": 99.0}})");
  const std::string float_path = float_checkpoint(config, "hist_float.safetensors");
  const std::string qat_path = temp_path("hist_qat.safetensors");
  const Result result = qat("calibrate --config " + config + " --checkpoint " + float_path +
                            " --output " + qat_path + " --batches 2");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("calibrator histogram"), std::string::npos) << result.out;

  const Config parsed = load_config(config);
  quant::HistogramCalibrator histogram = parsed.qat->qconfig.activation.make_histogram_calibrator();
  const auto loader = make_loader(*parsed.data, parsed.model, /*train=*/true);
  loader->start_epoch(0);
  for (int b = 0; b < 2; ++b) histogram.collect(loader->next()->images);
  const float amax = histogram.compute_amax(quant::CalibMethod::kPercentile, 99.0).data<float>()[0];
  const Tensor scale =
      find_tensor(load_safetensors(qat_path), "input.activation_post_process.scale");
  EXPECT_FLOAT_EQ(scale.data<float>()[0], amax / 127.0f);
}

// The shipped example config end to end on Debian's Fashion-MNIST: calibrate, then int8.
TEST(QatCalibrate, ExampleConfigOnFashionMnist) {
  const std::string config = "zoo/configs/small_cnn_fashion_mnist.json";
  const std::string float_path = float_checkpoint(config, "fm_float.safetensors");
  const std::string qat_path = temp_path("fm_qat.safetensors");
  const Result result = qat("calibrate --config " + config + " --checkpoint " + float_path +
                            " --output " + qat_path + " --batches 2");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(
      result.out.rfind("calibrating small_cnn for tnn: 2 batches of 64, calibrator minmax\n", 0),
      0u)
      << result.out;
  EXPECT_NE(result.out.find("calibrating: batch 2/2, 128 images"), std::string::npos) << result.out;

  const std::string input = input_file("fm_input.safetensors", 1);
  const Result run = qat("run --config " + config + " --checkpoint " + qat_path + " --input " +
                         input + " --output " + temp_path("fm_out.safetensors") + " --mode int8");
  EXPECT_EQ(run.exit_code, 0) << run.err;

  // --all-scales prints one scale per output channel.
  const Result inspected =
      qat("inspect --config " + config + " --checkpoint " + qat_path + " --all-scales true");
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_TRUE(std::regex_search(inspected.out,
                                std::regex(R"(\nfc\.weight_fake_quant +fc +weight +.*half_away +)"
                                           R"(([0-9.e-]+ ){9}[0-9.e-]+\n)")))
      << inspected.out;
}

TEST(QatCalibrate, UsesTheConfigBatchCountAndStopsWhenTheDataEnds) {
  // 12 samples in batches of 4: 3 batches, fewer than calibration_batches.
  const std::string config =
      qat_config("short.json", kSmallCnn, "tnn", R"(, "calibration_batches": 5)");
  const std::string float_path = float_checkpoint(config, "short_float.safetensors");
  const Result result = qat("calibrate --config " + config + " --checkpoint " + float_path +
                            " --output " + temp_path("short_qat.safetensors"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find(": 5 batches of 4,"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("calibrating: batch 3/5, 12 images"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("\nnote: the data has only 3 batches\n"), std::string::npos)
      << result.out;
}

TEST(QatErrors, QuantizedModesAndCalibration) {
  const std::string tnn = qat_config("err_tnn.json", kSmallCnn, "tnn");
  const std::string float_path = float_checkpoint(tnn, "err_float.safetensors");
  const std::string qat_path = temp_path("err_qat.safetensors");
  ASSERT_EQ(qat("calibrate --config " + tnn + " --checkpoint " + float_path + " --output " +
                qat_path + " --batches 1")
                .exit_code,
            0);
  const std::string input = input_file("err_input.safetensors", 1);
  const std::string run = "run --input " + input + " --output " + temp_path("err_out.safetensors");

  const std::string fbgemm = qat_config("err_fbgemm.json", kSmallCnn, "fbgemm");
  expect_error(qat(run + " --config " + fbgemm + " --checkpoint " + qat_path + " --mode int8"), 1,
               qat_path + ": a QAT checkpoint for target 'tnn', but the config's qat.target is "
                          "'fbgemm'");
  const std::string tensorrt = qat_config("err_trt.json", kSmallCnn, "tensorrt");
  expect_error(
      qat(run + " --config " + tensorrt + " --checkpoint " + qat_path + " --mode fakequant"), 1,
      qat_path + ": a QAT checkpoint for target 'tnn', but the config's qat.target is 'tensorrt'");
  expect_error(qat(run + " --config " + tnn + " --checkpoint " + float_path + " --mode int8"), 1,
               float_path + ": no quantization state");
  expect_error(qat(run + " --config " + tnn + " --checkpoint " + qat_path), 1,
               qat_path +
                   ": a QAT checkpoint (target tnn); run it with --mode fakequant or --mode "
                   "int8");
  const std::string no_qat = write_file(
      "err_no_qat.json", R"({"model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]}})");
  expect_error(qat(run + " --config " + no_qat + " --checkpoint " + qat_path + " --mode fakequant"),
               1, "--mode fakequant needs a \"qat\" section in " + no_qat);
  expect_error(qat("inspect --config " + no_qat), 1, no_qat + ": no \"qat\" section");
  expect_error(qat("calibrate --config " + no_qat + " --checkpoint " + float_path + " --output " +
                   temp_path("x.safetensors")),
               1, no_qat + ": no \"data\" section");
  const std::string no_shape = write_file(
      "err_no_shape.json", R"({"model": {"name": "small_cnn"}, "qat": {"target": "tnn"}})");
  expect_error(qat("inspect --config " + no_shape), 1,
               no_shape + ": model.input_shape is needed to trace the model");

  const std::string wrong_size =
      write_file("err_size.json", R"({"model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]},
      "data": {"dataset": "synthetic", "image_shape": [1, 32, 32], "batch_size": 2},
      "qat": {"target": "tnn"}})");
  expect_error(qat("calibrate --config " + wrong_size + " --checkpoint " + float_path +
                   " --output " + temp_path("y.safetensors") + " --batches 1"),
               1,
               "calibrate: the data gives images of [1, 32, 32], the model takes "
               "model.input_shape [1, 1, 28, 28]");

  const std::string typo =
      write_file("err_typo.json", R"({"model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]},
      "qat": {"target": "tnn", "calibrater": "max"}})");
  expect_error(qat("inspect --config " + typo), 1,
               typo + ": qat.calibrater: unknown key (known: target, ");
  const std::string wrong_type =
      write_file("err_type.json", R"({"model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]},
      "data": {"batch_size": "4"}})");
  expect_error(qat("summary --config " + wrong_type), 1,
               wrong_type + ": data.batch_size: expected an integer, got string \"4\"");
  const std::string bad_qconfig = write_file(
      "err_qconfig.json", R"({"model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]},
      "qat": {"target": "tensorrt", "qconfig": {"weight": {"bits": 9}}}})");
  expect_error(qat("inspect --config " + bad_qconfig), 1,
               bad_qconfig + ": qat.qconfig.weight: bits must be in 2..8, got 9");

  expect_error(qat("calibrate --config c.json --checkpoint w --output q --batches 0"), 2,
               "--batches must be a positive integer, got '0'");
  expect_error(qat("calibrate --config c.json --checkpoint w"), 2,
               "missing --output (see 'qat calibrate --help')");
  expect_error(qat("inspect --config c.json --all-scales yes"), 2,
               "--all-scales must be true or false, got 'yes'");
}

}  // namespace
}  // namespace qat::zoo
