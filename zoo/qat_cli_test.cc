// Runs the `qat` binary (a data dependency) as a user would: files in, files and text out,
// exit codes. Configs come from zoo/configs; checkpoints and inputs are written here.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>

#include "core/autograd.h"
#include "core/random.h"
#include "core/serialize.h"
#include "tests/testing/compare.h"
#include "zoo/config.h"
#include "zoo/registry.h"

namespace qat::zoo {
namespace {

std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = temp_path(name);
  std::ofstream(path) << text;
  return path;
}

struct Result {
  int exit_code;
  std::string out, err;
};

// Runs `qat <args>` (from the test's working directory, the workspace root of the runfiles).
Result qat(const std::string& args) {
  const std::string binary =
      std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/zoo/qat";
  const std::string out = temp_path("stdout.txt"), err = temp_path("stderr.txt");
  const int status = std::system((binary + " " + args + " >" + out + " 2>" + err).c_str());
  EXPECT_TRUE(WIFEXITED(status)) << args;
  return {WEXITSTATUS(status), read_file(out), read_file(err)};
}

// The failure contract: exit code `code` and exactly one line "qat: error: ..." on stderr.
void expect_error(const Result& result, int code, const std::string& part) {
  EXPECT_EQ(result.exit_code, code) << result.err;
  EXPECT_EQ(result.err.rfind("qat: error: ", 0), 0u) << result.err;
  EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << result.err;
  EXPECT_NE(result.err.find(part), std::string::npos) << result.err;
}

// A model with random weights and BN statistics, so eval mode has something to get wrong.
std::shared_ptr<nn::Module> random_model(const ModelConfig& config) {
  std::shared_ptr<nn::Module> model = create_model(config);
  for (auto& [name, tensor] : model->state_dict()) {
    if (name.find("running_var") != std::string::npos) {
      uniform_(tensor, 0.5, 2.0);
    } else if (is_floating(tensor.dtype())) {
      normal_(tensor, 0.0, 0.1);
    }
  }
  return model;
}

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

  expect_error(qat(run + " --config " + small_cnn + " --checkpoint " + checkpoint + " --input " +
                   input + " --mode int8"),
               1, "--mode int8 is not yet supported (only float)");

  const std::string no_shape = write_file("no_shape.json", R"({"model": {"name": "small_cnn"}})");
  expect_error(
      qat("summary --config " + no_shape), 1,
      "no input shape: set model.input_shape in " + no_shape + " or pass --input-shape N,C,H,W");
}

TEST(QatErrors, UsageErrorsExitWith2) {
  expect_error(qat(""), 2, "no command given (commands: run, summary)");
  expect_error(qat("train"), 2,
               "unknown command 'train' (commands: run, summary; see 'qat --help')");
  expect_error(qat("run --config c.json"), 2, "missing --checkpoint (see 'qat run --help')");
  expect_error(qat("run --bogus 1"), 2, "unknown flag --bogus");
  expect_error(qat("summary --config"), 2, "flag --config needs a value");
  expect_error(qat("summary --config c.json --input-shape 1,3,32"), 2,
               "--input-shape expects N,C,H,W (4 positive integers), got '1,3,32'");
  expect_error(qat("run --config c --checkpoint w --input x --output y --mode fast"), 2,
               "--mode must be float, fakequant or int8, got 'fast'");
}

}  // namespace
}  // namespace qat::zoo
