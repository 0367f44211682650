// `qat sensitivity` as a user runs it: small_cnn with synthetic data, float and QAT checkpoints.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "zoo/qat_cli_test_util.h"

namespace qat::zoo::cli_test {
namespace {

const std::vector<std::string> kNodes = {"features.0", "features.4", "features.8", "fc"};

// The JSON array on the line `"black_list": [...]` of the output.
nlohmann::json black_list_of(const std::string& out) {
  const std::string key = "\"black_list\": ";
  const size_t at = out.find(key);
  EXPECT_NE(at, std::string::npos) << out;
  if (at == std::string::npos) return nullptr;
  const size_t end = out.find('\n', at);
  return nlohmann::json::parse(out.substr(at + key.size(), end - at - key.size()));
}

TEST(QatSensitivity, FloatCheckpointRankedTableAndBlackList) {
  const std::string config = qat_config("tnn.json", kSmallCnn, "tnn");
  const std::string weights = float_checkpoint(config, "float.safetensors");
  const Result r = qat("sensitivity --config " + config + " --checkpoint " + weights +
                       " --batches 2 --budget 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sensitivity of small_cnn for tnn: 4 nodes, 8 images of the test split"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("float top-1 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank  node"), std::string::npos) << r.out;
  for (int rank = 1; rank <= 4; ++rank) {
    bool found = false;
    for (const std::string& node : kNodes) {
      found =
          found || r.out.find("\n   " + std::to_string(rank) + "  " + node) != std::string::npos;
    }
    EXPECT_TRUE(found) << "rank " << rank << "\n" << r.out;
  }
  // The float checkpoint was calibrated first; progress goes to stderr.
  EXPECT_NE(r.err.find("calibrating "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("measuring nodes: 4/4"), std::string::npos) << r.err;
  const nlohmann::json black_list = black_list_of(r.out);
  ASSERT_TRUE(black_list.is_array()) << r.out;
  for (const auto& name : black_list) {
    ASSERT_TRUE(name.is_string());
    EXPECT_TRUE(std::set<std::string>(kNodes.begin(), kNodes.end()).count(name.get<std::string>()))
        << name;
  }
}

TEST(QatSensitivity, QatCheckpointAsItIsAndAConfiguredBlackListKept) {
  const std::string config =
      qat_config("trt.json", kSmallCnn, "tensorrt", R"(, "black_list": ["fc"])");
  const std::string weights = float_checkpoint(config, "float_trt.safetensors");
  const std::string checkpoint = temp_path("qat_trt.safetensors");
  ASSERT_EQ(
      qat("calibrate --config " + config + " --checkpoint " + weights + " --output " + checkpoint)
          .exit_code,
      0);
  // A budget of 100 points is met by the fully quantized model: nothing to add.
  const Result r = qat("sensitivity --config " + config + " --checkpoint " + checkpoint +
                       " --batches 1 --budget 100 --split train");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("calibrating"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("3 nodes, 4 images of the train split"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("within budget"), std::string::npos) << r.out;
  EXPECT_EQ(black_list_of(r.out), nlohmann::json::array({"fc"})) << r.out;
}

TEST(QatSensitivity, Errors) {
  const std::string config = qat_config("err.json", kSmallCnn, "tnn");
  const std::string weights = float_checkpoint(config, "float_err.safetensors");
  const std::string base = "sensitivity --config " + config + " --checkpoint " + weights;
  expect_error(qat(base + " --budget -1"), 2, "--budget must be a number >= 0");
  expect_error(qat(base + " --budget x"), 2, "--budget must be a number >= 0");
  expect_error(qat(base + " --split val"), 2, "--split must be 'test' or 'train'");
  expect_error(qat(base + " --batches 0"), 2, "--batches must be a positive integer");
  expect_error(qat(base + " --bogus 1"), 2, "bogus");
  expect_error(qat("sensitivity --config " + config), 2, "missing --checkpoint");
  const std::string no_data = write_file(
      "no_data.json", std::string(R"({"model": )") + kSmallCnn + R"(, "qat": {"target": "tnn"}})");
  expect_error(qat("sensitivity --config " + no_data + " --checkpoint " + weights), 1,
               "no \"data\" section");
  const Result help = qat("sensitivity --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("usage: qat sensitivity --config C.json --checkpoint W.safetensors"),
            std::string::npos)
      << help.out;
}

}  // namespace
}  // namespace qat::zoo::cli_test
