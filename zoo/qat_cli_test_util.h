#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>

#include "core/random.h"
#include "core/serialize.h"
#include "nn/module.h"
#include "zoo/config.h"
#include "zoo/registry.h"

// Helpers of the tests that run the `qat` binary (a data dependency) as a user would: files in,
// files and text out, exit codes (header-only, listed in their srcs).
namespace qat::zoo::cli_test {

inline std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

inline std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

inline std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = temp_path(name);
  std::ofstream(path) << text;
  return path;
}

struct Result {
  int exit_code;
  std::string out, err;
};

// Runs `qat <args>` (from the test's working directory, the workspace root of the runfiles).
// `env`: "NAME=value ..." assignments for the command.
inline Result qat(const std::string& args, const std::string& env = "") {
  const std::string binary =
      std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/zoo/qat";
  const std::string out = temp_path("stdout.txt"), err = temp_path("stderr.txt");
  const int status = std::system(
      ((env.empty() ? "" : env + " ") + binary + " " + args + " >" + out + " 2>" + err).c_str());
  EXPECT_TRUE(WIFEXITED(status)) << args;
  return {WEXITSTATUS(status), read_file(out), read_file(err)};
}

// The failure contract: exit code `code` and exactly one line "qat: error: ..." on stderr.
inline void expect_error(const Result& result, int code, const std::string& part) {
  EXPECT_EQ(result.exit_code, code) << result.err;
  EXPECT_EQ(result.err.rfind("qat: error: ", 0), 0u) << result.err;
  EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << result.err;
  EXPECT_NE(result.err.find(part), std::string::npos) << result.err;
}

// A model with random weights and BN statistics, so eval mode has something to get wrong.
inline std::shared_ptr<nn::Module> random_model(const ModelConfig& config) {
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

// A config for `model_json` with synthetic 28x28 data and a "qat" section for `target`;
// `sections` are more top-level sections (", \"export\": {...}").
inline std::string qat_config(const std::string& name, const std::string& model_json,
                              const std::string& target, const std::string& qat_extra = "",
                              const std::string& sections = "") {
  return write_file(name, R"({"model": )" + model_json +
                              R"(, "data": {"dataset": "synthetic", "num_samples": 12,
      "batch_size": 4, "seed": 5}, "qat": {"target": ")" +
                              target + "\"" + qat_extra + "}" + sections + "}");
}

inline const char* const kSmallCnn = R"({"name": "small_cnn", "input_shape": [1, 1, 28, 28]})";
inline const char* const kResNet18 = R"({"name": "resnet18", "num_classes": 10, "in_channels": 1,
    "small_input": true, "input_shape": [1, 1, 28, 28]})";

// kSmallCnn for "small_cnn", else kResNet18.
inline const char* model_json(const std::string& model) {
  return model == "small_cnn" ? kSmallCnn : kResNet18;
}

// The parameter of the tests that take a model ("small_cnn" or "resnet18") through the `qat`
// commands for a target.
struct QatCase {
  std::string model;
  std::string target;
};

inline void PrintTo(const QatCase& c, std::ostream* os) { *os << c.model << " / " << c.target; }

// small_cnn and resnet18, each for tnn and tensorrt; named "small_cnn_tnn", ... by
// qat_case_name.
inline auto qat_cases() {
  return ::testing::Values(QatCase{"small_cnn", "tnn"}, QatCase{"small_cnn", "tensorrt"},
                           QatCase{"small_cnn", "fbgemm"}, QatCase{"resnet18", "tnn"},
                           QatCase{"resnet18", "tensorrt"});
}

inline std::string qat_case_name(const ::testing::TestParamInfo<QatCase>& info) {
  return info.param.model + "_" + info.param.target;
}

// Writes a random float checkpoint for the config's model; returns its path.
inline std::string float_checkpoint(const std::string& config_path, const std::string& name,
                                    uint64_t seed = 3) {
  manual_seed(seed);
  const std::string path = temp_path(name);
  save_safetensors(path, random_model(load_config(config_path).model)->state_dict());
  return path;
}

}  // namespace qat::zoo::cli_test
