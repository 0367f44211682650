// `qat eval` run as a user would: a float checkpoint gives the float row; QAT checkpoints give
// fakequant, int8 and their export (ONNX in ONNX Runtime for tensorrt, TNN for tnn), which
// agree; errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <utility>

#include "zoo/qat_cli_test_util.h"

namespace qat::zoo {
namespace {

using cli_test::expect_error;
using cli_test::float_checkpoint;
using cli_test::kSmallCnn;
using cli_test::qat;
using cli_test::qat_config;
using cli_test::Result;
using cli_test::temp_path;
using cli_test::write_file;

const char kInstall[] = "npm install onnxruntime-node --onnxruntime-node-install=skip";
const char kHeader[] = "mode         images  top-1 %  top-5 %     loss\n";

// The table rows of `qat eval` output: mode -> "images top-1 top-5 loss".
std::map<std::string, std::string> rows(const std::string& out) {
  std::map<std::string, std::string> table;
  const std::regex row(R"(^(\w+) +([0-9]+) +([0-9.]+) +([0-9.]+) +([0-9.]+)$)");
  std::smatch m;
  std::string::size_type start = out.find(kHeader);
  EXPECT_NE(start, std::string::npos) << out;
  if (start == std::string::npos) return table;
  std::istringstream lines(out.substr(start + sizeof(kHeader) - 1));
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(std::regex_match(line, m, row)) << line;
    table[m[1]] = std::string(m[2]) + " " + std::string(m[3]) + " " + std::string(m[4]) + " " +
                  std::string(m[5]);
  }
  return table;
}

std::string top1(const std::string& row) {
  const auto first = row.find(' ');
  return row.substr(first + 1, row.find(' ', first + 1) - first - 1);
}

// `qat calibrate` of a random float checkpoint (1 batch); returns {float, QAT} paths.
std::pair<std::string, std::string> calibrated(const std::string& config, const std::string& tag) {
  const std::string float_path = float_checkpoint(config, tag + "_float.safetensors");
  const std::string qat_path = temp_path(tag + "_qat.safetensors");
  const Result result = qat("calibrate --config " + config + " --checkpoint " + float_path +
                            " --output " + qat_path + " --batches 1");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return {float_path, qat_path};
}

TEST(QatEval, FloatCheckpointGivesTheFloatRow) {
  const std::string config = qat_config("eval_float.json", kSmallCnn, "tensorrt");
  const std::string weights = float_checkpoint(config, "eval_float.safetensors");
  const Result result = qat("eval --config " + config + " --checkpoint " + weights);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(result.out.rfind("evaluating small_cnn (float) on the test split: 3 batches of 4\n" +
                                 std::string(kHeader),
                             0),
            0u)
      << result.out;
  const auto table = rows(result.out);
  ASSERT_EQ(table.size(), 1u) << result.out;
  EXPECT_EQ(table.at("float").rfind("12 ", 0), 0u) << result.out;

  // --batches, --split train and --mode float.
  const Result two = qat("eval --config " + config + " --checkpoint " + weights +
                         " --mode float --batches 2 --split train");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.out.find("on the train split: 2 batches of 4\n"), std::string::npos) << two.out;
  EXPECT_EQ(rows(two.out).at("float").rfind("8 ", 0), 0u) << two.out;

  expect_error(qat("eval --config " + config + " --checkpoint " + weights + " --mode int8"), 1,
               weights + " is a float checkpoint; --mode int8 needs a QAT checkpoint");
}

// tensorrt: int8 (simulate, oneDNN order) and ONNX Runtime give the same top-1; a given --onnx
// file gives what the temporary export does; without ORT, all skips onnx with a note and
// --mode onnx fails with the install command.
TEST(QatEval, TensorrtGivesFakeQuantInt8AndOnnxRows) {
  const std::string config = qat_config("eval_trt.json", kSmallCnn, "tensorrt");
  const std::string qat_path = calibrated(config, "eval_trt").second;
  const std::string args = "eval --config " + config + " --checkpoint " + qat_path;
  const Result result = qat(args);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("evaluating small_cnn (QAT tensorrt)"), std::string::npos);
  const auto table = rows(result.out);
  ASSERT_EQ(table.size(), 3u) << result.out << result.err;
  EXPECT_EQ(table.at("fakequant").rfind("12 ", 0), 0u) << result.out;
  EXPECT_EQ(top1(table.at("int8")), top1(table.at("onnx"))) << result.out;

  const std::string onnx = temp_path("eval_trt.onnx");
  ASSERT_EQ(
      qat("export --config " + config + " --checkpoint " + qat_path + " --onnx " + onnx).exit_code,
      0);
  const Result given = qat(args + " --mode onnx --onnx " + onnx);
  ASSERT_EQ(given.exit_code, 0) << given.err;
  EXPECT_EQ(given.err, "");
  EXPECT_EQ(rows(given.out), (std::map<std::string, std::string>{{"onnx", table.at("onnx")}}));

  const std::string no_ort = temp_path("eval_no_ort");
  std::filesystem::create_directories(no_ort);
  const Result skipped = qat(args, "QAT_ORT_DIR=" + no_ort);
  ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_EQ(rows(skipped.out).count("onnx"), 0u) << skipped.out;
  EXPECT_EQ(skipped.err.rfind("qat: note: skipping onnx: ", 0), 0u) << skipped.err;
  EXPECT_NE(skipped.err.find(kInstall), std::string::npos) << skipped.err;
  expect_error(qat(args + " --mode onnx", "QAT_ORT_DIR=" + no_ort), 1, kInstall);
}

// tnn: the integer model and the TNN files equal the fake-quant eval (small_cnn has no 1x1 conv
// + add for TNN's load-time fusion to round differently).
TEST(QatEval, TnnGivesEqualFakeQuantInt8AndTnnRows) {
  const std::string config = qat_config("eval_tnn.json", kSmallCnn, "tnn");
  const std::string qat_path = calibrated(config, "eval_tnn").second;
  const Result result = qat("eval --config " + config + " --checkpoint " + qat_path);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto table = rows(result.out);
  ASSERT_EQ(table.size(), 3u) << result.out;
  EXPECT_EQ(table.at("int8"), table.at("fakequant")) << result.out;
  EXPECT_EQ(table.at("tnn"), table.at("fakequant")) << result.out;

  const std::string prefix = temp_path("eval_tnn_files/model");
  ASSERT_EQ(
      qat("export --config " + config + " --checkpoint " + qat_path + " --tnn " + prefix).exit_code,
      0);
  const Result given =
      qat("eval --config " + config + " --checkpoint " + qat_path + " --mode tnn --tnn " + prefix);
  ASSERT_EQ(given.exit_code, 0) << given.err;
  EXPECT_EQ(rows(given.out), (std::map<std::string, std::string>{{"tnn", table.at("tnn")}}));
}

TEST(QatEval, Errors) {
  const std::string config = qat_config("eval_err.json", kSmallCnn, "tnn");
  const std::string qat_path = calibrated(config, "eval_err").second;
  const std::string args = "eval --config " + config + " --checkpoint " + qat_path;
  expect_error(qat(args + " --mode int4"), 2,
               "--mode must be one of all, float, fakequant, int8, onnx, tnn, got 'int4'");
  expect_error(qat(args + " --split val"), 2, "--split must be test or train, got 'val'");
  expect_error(qat(args + " --batches 0"), 2, "--batches must be a positive integer");
  expect_error(qat(args + " --mode float"), 1,
               qat_path +
                   " is a QAT checkpoint (target tnn); evaluate it with --mode fakequant, "
                   "int8 or tnn");
  expect_error(qat(args + " --mode onnx"), 1,
               "--mode onnx needs a checkpoint whose target exports ONNX Q/DQ");
  const std::string no_data =
      write_file("eval_no_data.json", R"({"model": )" + std::string(kSmallCnn) + "}");
  expect_error(qat("eval --config " + no_data + " --checkpoint " + qat_path), 1,
               no_data + ": no \"data\" section: eval needs one");
}

}  // namespace
}  // namespace qat::zoo
