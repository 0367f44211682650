// `qat export` and `qat verify` run as a user would: calibrate a random float checkpoint on
// synthetic data, export the int8 model of its target (or the float model), read the files
// back, and verify them (ONNX in ONNX Runtime when $QAT_ORT_DIR is set, TNN read back).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/random.h"
#include "exporters/tnn_net.h"
#include "exporters/tnn_reader.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "tests/testing/compare.h"
#include "zoo/config.h"
#include "zoo/qat_cli_test_util.h"
#include "zoo/qat_pipeline.h"

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
using cli_test::Result;
using cli_test::temp_path;

const char kInstall[] = "npm install onnxruntime-node --onnxruntime-node-install=skip";

// .bazelrc passes QAT_ORT_DIR to tests (tools/test.sh installs onnxruntime-node there). Without
// it, `qat verify --onnx` must fail with the install command.
bool ort_dir_set() {
  const char* dir = std::getenv("QAT_ORT_DIR");
  return dir != nullptr && *dir != '\0';
}

bool exists(const std::string& path) { return std::filesystem::exists(path); }

// `qat calibrate` of a random float checkpoint, 1 batch; returns {float, QAT} checkpoint paths.
std::pair<std::string, std::string> calibrated(const std::string& config, const std::string& tag,
                                               uint64_t seed = 3) {
  const std::string float_path = float_checkpoint(config, tag + "_float.safetensors", seed);
  const std::string qat_path = temp_path(tag + "_qat.safetensors");
  const Result result = qat("calibrate --config " + config + " --checkpoint " + float_path +
                            " --output " + qat_path + " --batches 1");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return {float_path, qat_path};
}

Tensor random_input(const Shape& shape) {
  Tensor x = Tensor::empty(shape);
  normal_(x, 0.0, 1.0);
  return x;
}

// The ONNX file parses; returns how many nodes have op type `op`.
int count_onnx_nodes(const std::string& path, const std::string& op) {
  onnx::ModelProto proto;
  EXPECT_TRUE(proto.ParseFromString(exporters::read_file_bytes(path))) << path;
  int n = 0;
  for (const onnx::NodeProto& node : proto.graph().node()) n += node.op_type() == op ? 1 : 0;
  return n;
}

// Runs `qat verify <args>` on ONNX (2 batches of 4 images): passes in ONNX Runtime when
// $QAT_ORT_DIR is set -- bit for bit for int8 (simulate() sums in ORT's order) -- else fails
// with the install command.
void expect_onnx_verified(const std::string& args, bool int8) {
  const Result result = qat("verify " + args);
  if (!ort_dir_set()) {
    expect_error(result, 1, kInstall);
    return;
  }
  std::cout << result.out;  // the measured agreement, for the log
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_TRUE(std::regex_search(result.out, std::regex(R"(in ONNX Runtime 1\.[0-9]+\.[0-9]+ )")))
      << result.out;
  const std::string agreement =
      int8 ? R"(max \|diff\| 0 \(max \|output\| \S+\), 0 of 80 outputs differ, top-1 differs )"
             R"(for 0 of 8 images: ok \(bit for bit\))"
           : R"(max \|diff\| \S+ \(max \|output\| \S+\), [0-9]+ of 80 outputs differ, top-1 )"
             R"(differs for [0-9] of 8 images: ok \(tolerance 0\.0001 of max \|output\|\))";
  EXPECT_TRUE(std::regex_search(result.out, std::regex("\n  " + agreement + "\n"))) << result.out;
  EXPECT_NE(result.out.find("\nverified\n"), std::string::npos) << result.out;
}

class QatExportTest : public ::testing::TestWithParam<QatCase> {};

// export writes the target's int8 model (into a directory it creates), the files read back,
// and verify passes: TNN bit for bit, ONNX in ONNX Runtime.
TEST_P(QatExportTest, ExportsTheTargetsInt8ModelAndVerifies) {
  const QatCase& c = GetParam();
  const std::string tag = "export_" + c.model + "_" + c.target;
  const std::string config = qat_config(tag + ".json", model_json(c.model), c.target);
  const auto [float_path, qat_path] = calibrated(config, tag);
  const bool tnn = c.target == "tnn";
  const std::string out = temp_path(tag + "_out/" + (tnn ? "model" : "model.onnx"));
  const std::string file_flag = (tnn ? " --tnn " : " --onnx ") + out;

  const Result exported =
      qat("export --config " + config + " --checkpoint " + qat_path + file_flag);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(exported.err, "");
  EXPECT_TRUE(std::regex_search(
      exported.out,
      std::regex("^exporting " + c.model + " for " + c.target + ": int8 model of " + qat_path +
                 R"( \([0-9]+ conv / linear layers, [0-9]+ quantizers\)\n)")))
      << exported.out;

  // The in-process int8 model the files must reproduce.
  const Config parsed = load_config(config);
  const graph::IntModel int_model = graph::convert(*load_qat_model(parsed, config, qat_path));
  manual_seed(11);
  const Tensor x = random_input({1, 1, 28, 28});
  if (tnn) {
    EXPECT_TRUE(std::regex_search(
        exported.out,
        std::regex("\nwrote " + out +
                   R"(\.tnnproto \([0-9]+ layers, [0-9]+ int8; [0-9]+ bytes\) )" + "and " + out +
                   R"(\.tnnmodel \([0-9]+ resources; [0-9]+ bytes\)\n$)")))
        << exported.out;
    const graph::IntModel reread = exporters::tnn_int_model(exporters::read_tnn(out));
    EXPECT_TRUE(
        testing::all_close(graph::simulate(reread, x), graph::simulate(int_model, x), 0, 0));
    // One batch: the tnn simulate() of resnet18 takes about a second per image.
    const Result verified = qat("verify --config " + config + " --checkpoint " + qat_path +
                                " --tnn " + out + " --batches 1");
    ASSERT_EQ(verified.exit_code, 0) << verified.out << verified.err;
    EXPECT_EQ(verified.out.rfind("verifying " + c.model +
                                     " (tnn int8) on 1 batch, 4 images of synthetic data (test "
                                     "split)\ntnn " +
                                     out +
                                     " read back, simulate() vs simulate() of the converted "
                                     "model:\n  max |diff| 0 (max |output| ",
                                 0),
              0u)
        << verified.out;
    EXPECT_NE(verified.out.find(
                  "), 0 of 40 outputs differ, top-1 differs for 0 of 4 images: ok (bit for bit)\n"
                  "verified\n"),
              std::string::npos)
        << verified.out;
  } else {
    EXPECT_TRUE(std::regex_search(
        exported.out, std::regex("\nwrote " + out +
                                 R"( \([0-9]+ nodes: [0-9]+ QuantizeLinear, [0-9]+ )"
                                 R"(DequantizeLinear, [0-9]+ other; [0-9]+ bytes\)\n$)")))
        << exported.out;
    EXPECT_GT(count_onnx_nodes(out, "QuantizeLinear"), 0);
    EXPECT_GT(count_onnx_nodes(out, "Conv"), 0);
    expect_onnx_verified("--config " + config + " --checkpoint " + qat_path + " --onnx " + out,
                         /*int8=*/true);
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, QatExportTest, cli_test::qat_cases(), cli_test::qat_case_name);

class QatExportFloatTest : public ::testing::TestWithParam<std::string> {};

// --float true exports the float checkpoint to ONNX and TNN in one call, whatever qat.target;
// the TNN float net read back runs like the eval forward.
TEST_P(QatExportFloatTest, ExportsTheFloatModelToBothFormats) {
  const std::string model = GetParam();
  const std::string tag = "float_" + model;
  const std::string config = qat_config(tag + ".json", model_json(model), "tnn");
  const std::string float_path = float_checkpoint(config, tag + ".safetensors");
  const std::string onnx = temp_path(tag + ".onnx"), tnn = temp_path(tag);
  const std::string files = " --onnx " + onnx + " --tnn " + tnn + " --float true";

  const Result exported = qat("export --config " + config + " --checkpoint " + float_path + files);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(exported.out.rfind("exporting " + model + ": float model of " + float_path +
                                   " (eval mode), input [1, 1, 28, 28]\nwrote " + onnx + " (",
                               0),
            0u)
      << exported.out;
  EXPECT_NE(exported.out.find(" 0 QuantizeLinear, 0 DequantizeLinear, "), std::string::npos)
      << exported.out;
  EXPECT_NE(exported.out.find("\nwrote " + tnn + ".tnnproto ("), std::string::npos) << exported.out;
  EXPECT_NE(exported.out.find(" layers, 0 int8; "), std::string::npos) << exported.out;
  EXPECT_GT(count_onnx_nodes(onnx, "Conv"), 0);
  EXPECT_EQ(count_onnx_nodes(onnx, "QuantizeLinear"), 0);

  const std::string verify = "--config " + config + " --checkpoint " + float_path + " --float true";
  const Result verified = qat("verify " + verify + " --tnn " + tnn + " --batches 1");
  ASSERT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_EQ(verified.out.rfind("verifying " + model + " (float) on 1 batch, 4 images", 0), 0u)
      << verified.out;
  EXPECT_NE(verified.out.find("tnn " + tnn +
                              " read back, float run vs the float eval forward:\n  max |diff| "),
            std::string::npos)
      << verified.out;
  EXPECT_NE(verified.out.find(": ok (tolerance 0.0001 of max |output|)\nverified\n"),
            std::string::npos)
      << verified.out;
  expect_onnx_verified(verify + " --onnx " + onnx, /*int8=*/false);
}

INSTANTIATE_TEST_SUITE_P(Models, QatExportFloatTest, ::testing::Values("small_cnn", "resnet18"));

// Without --onnx / --tnn, the config's "export" section says what to write; flags override it.
TEST(QatExport, TheConfigsExportSectionAndFlagsOverIt) {
  const std::string from_config = temp_path("section/from_config");
  const std::string config = qat_config("section.json", kSmallCnn, "tnn", "",
                                        R"(, "export": {"tnn": ")" + from_config + "\"}");
  const auto [float_path, qat_path] = calibrated(config, "section");
  const Result exported = qat("export --config " + config + " --checkpoint " + qat_path);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_TRUE(exists(from_config + ".tnnproto") && exists(from_config + ".tnnmodel"));
  const Result verified = qat("verify --config " + config + " --checkpoint " + qat_path);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;

  const std::string from_flag = temp_path("section/from_flag");
  const Result overridden =
      qat("export --config " + config + " --checkpoint " + qat_path + " --tnn " + from_flag);
  ASSERT_EQ(overridden.exit_code, 0) << overridden.err;
  EXPECT_TRUE(exists(from_flag + ".tnnproto"));
  EXPECT_EQ(overridden.out.find(from_config), std::string::npos) << overridden.out;

  // "float": true in the section exports the float model; --float false overrides it.
  const std::string float_config =
      qat_config("section_float.json", kSmallCnn, "tnn", "",
                 R"(, "export": {"tnn": ")" + temp_path("section/float") + R"(", "float": true})");
  const Result float_export =
      qat("export --config " + float_config + " --checkpoint " + float_path);
  ASSERT_EQ(float_export.exit_code, 0) << float_export.err;
  EXPECT_NE(float_export.out.find("float model of"), std::string::npos) << float_export.out;
  expect_error(
      qat("export --config " + float_config + " --checkpoint " + float_path + " --float false"), 1,
      float_path + ": no quantization state");
}

// verify fails (exit code 1, the comparison printed) when the files are not the checkpoint's.
TEST(QatVerify, FailsForFilesOfAnotherCheckpoint) {
  const std::string config = qat_config("other.json", kSmallCnn, "tnn");
  const auto [float_a, qat_a] = calibrated(config, "other_a", 3);
  const auto [float_b, qat_b] = calibrated(config, "other_b", 4);
  const std::string tnn = temp_path("other_a");
  ASSERT_EQ(qat("export --config " + config + " --checkpoint " + qat_a + " --tnn " + tnn).exit_code,
            0);
  const Result result =
      qat("verify --config " + config + " --checkpoint " + qat_b + " --tnn " + tnn);
  expect_error(result, 1, "verify failed: tnn " + tnn + " read back");
  EXPECT_NE(result.out.find(": FAILED (bit for bit)\n"), std::string::npos) << result.out;
}

// Without onnxruntime-node in the ORT directory, verify --onnx says how to install it there.
TEST(QatVerify, SaysHowToInstallOnnxRuntime) {
  const std::string config = qat_config("no_ort.json", kSmallCnn, "tensorrt");
  const auto [float_path, qat_path] = calibrated(config, "no_ort");
  const std::string onnx = temp_path("no_ort.onnx");
  ASSERT_EQ(
      qat("export --config " + config + " --checkpoint " + qat_path + " --onnx " + onnx).exit_code,
      0);
  const std::string empty_dir = temp_path("empty_ort_dir");
  std::filesystem::create_directories(empty_dir);
  const Result result =
      qat("verify --config " + config + " --checkpoint " + qat_path + " --onnx " + onnx,
          "QAT_ORT_DIR=" + empty_dir);
  expect_error(result, 1,
               "verify --onnx needs ONNX Runtime for Node, and there is no " + empty_dir +
                   "/node_modules/onnxruntime-node/package.json");
  EXPECT_NE(result.err.find("install it once with: mkdir -p " + empty_dir + " && cd " + empty_dir +
                            " && " + kInstall),
            std::string::npos)
      << result.err;
}

TEST(QatExport, Errors) {
  const std::string trt = qat_config("err_trt.json", kSmallCnn, "tensorrt");
  const std::string tnn = qat_config("err_tnn.json", kSmallCnn, "tnn");
  const auto [float_path, qat_path] = calibrated(tnn, "err");
  const std::string files = " --onnx " + temp_path("e.onnx") + " --tnn " + temp_path("e");

  for (const std::string command : {"export", "verify"}) {
    expect_error(qat(command + " --config " + tnn + " --checkpoint " + qat_path), 2,
                 "no model file: give --onnx and / or --tnn, or set \"export\": {\"onnx\": ..., "
                 "\"tnn\": ...} in the config (see 'qat " +
                     command + " --help')");
  }
  expect_error(qat("export --config " + tnn + " --checkpoint " + qat_path + " --onnx " +
                   temp_path("e.onnx")),
               1,
               "an ONNX Q/DQ model (--onnx " + temp_path("e.onnx") +
                   ") needs qat.target \"tensorrt\" or a PyTorch preset; " + tnn +
                   " has \"tnn\", whose int8 model is TNN's (--tnn); for a float ONNX model, pass "
                   "--float true");
  expect_error(
      qat("verify --config " + trt + " --checkpoint " + qat_path + " --tnn " + temp_path("e")), 1,
      "a TNN int8 model (--tnn " + temp_path("e") + ") needs qat.target \"tnn\"; " + trt +
          " has \"tensorrt\", whose int8 model is the ONNX Q/DQ graph (--onnx)");
  const std::string fbgemm = qat_config("err_fbgemm.json", kSmallCnn, "fbgemm");
  expect_error(qat("export --config " + fbgemm + " --checkpoint " + qat_path + files), 1,
               "a TNN int8 model (--tnn " + temp_path("e") + ") needs qat.target \"tnn\"; " +
                   fbgemm + " has \"fbgemm\", whose int8 model is the ONNX Q/DQ graph (--onnx)");
  const std::string missing = temp_path("missing.safetensors");
  const std::string tnn_file = " --tnn " + temp_path("e");
  expect_error(qat("export --config " + tnn + " --checkpoint " + missing + tnn_file), 1, missing);
  expect_error(qat("export --config " + tnn + " --checkpoint " + missing + files + " --float 1"), 1,
               missing);
  expect_error(qat("verify --config " + tnn + " --checkpoint " + missing + tnn_file), 1, missing);
  expect_error(
      qat("export --config " + tnn + " --checkpoint " + float_path + " --tnn " + temp_path("e")), 1,
      float_path + ": no quantization state");
  expect_error(
      qat("export --config " + tnn + " --checkpoint " + qat_path + files + " --float true"), 1,
      qat_path +
          ": a QAT checkpoint (target tnn), but --float true takes a float "
          "checkpoint (drop --float for the int8 model)");
  const std::string no_qat = cli_test::write_file(
      "err_no_qat.json", R"({"model": {"name": "small_cnn", "input_shape": [1, 1, 28, 28]}})");
  expect_error(qat("export --config " + no_qat + " --checkpoint " + qat_path + files), 1,
               no_qat + ": no \"qat\" section: the int8 model needs the target");
  const std::string no_shape =
      cli_test::write_file("err_no_shape.json", R"({"model": {"name": "small_cnn"}})");
  expect_error(
      qat("export --config " + no_shape + " --checkpoint " + float_path + files + " --float true"),
      1, no_shape + ": model.input_shape is needed to trace the model for export");
  expect_error(qat("verify --config " + tnn + " --checkpoint " + qat_path + " --tnn " +
                   temp_path("never_written")),
               1,
               "verify: no TNN file " + temp_path("never_written") +
                   ".tnnproto (write it with 'qat export --tnn')");
  expect_error(qat("verify --config " + tnn + " --checkpoint " + float_path +
                   " --float true --onnx " + temp_path("never_written.onnx")),
               1,
               "verify: no ONNX file " + temp_path("never_written.onnx") +
                   " (write it with 'qat export --onnx')");
  expect_error(qat("export --config c.json --checkpoint w --tnn t --float maybe"), 2,
               "--float must be true or false, got 'maybe'");
  expect_error(qat("verify --config c.json --checkpoint w --tnn t --batches 0"), 2,
               "--batches must be a positive integer, got '0'");
  expect_error(qat("verify --config c.json --checkpoint w --onnx o --onnx-tolerance -1"), 2,
               "--onnx-tolerance must be a number >= 0, got '-1'");
  expect_error(qat("export --config c.json"), 2, "missing --checkpoint (see 'qat export --help')");
  EXPECT_FALSE(exists(temp_path("e.onnx")));
  EXPECT_FALSE(exists(temp_path("e.tnnproto")));
}

TEST(QatExport, Help) {
  const Result exported = qat("export --help");
  EXPECT_EQ(exported.exit_code, 0);
  EXPECT_EQ(exported.out.rfind("usage: qat export --config C.json --checkpoint W.safetensors "
                               "[--onnx OUT.onnx] [--tnn OUT/PREFIX] [--float BOOL]\n",
                               0),
            0u)
      << exported.out;
  const Result verified = qat("verify --help");
  EXPECT_EQ(verified.exit_code, 0);
  EXPECT_NE(verified.out.find(kInstall), std::string::npos) << verified.out;
}

}  // namespace
}  // namespace qat::zoo
