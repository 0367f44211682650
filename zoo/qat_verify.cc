// `qat verify`: runs exported models (ONNX in ONNX Runtime for Node, TNN read back) on a few
// batches and compares them with the in-process model they were exported from.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "exporters/tnn_net.h"
#include "exporters/tnn_reader.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "zoo/config.h"
#include "zoo/onnx_runtime.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"

namespace qat::zoo::cli {
namespace {

constexpr int64_t kDefaultBatches = 2;
// Without a "data" section: synthetic images of model.input_shape, batches of this size.
constexpr int64_t kSyntheticBatchSize = 8;

// The tolerances, relative to the largest |output| of the in-process model.
// ONNX Q/DQ: simulate() with graph::Accumulation::kOnnxRuntime sums every conv / linear in the
// order of ORT's CPU provider (MLAS on x86-64, one thread, optimizations off), so ORT's outputs
// are reproduced bit for bit. --onnx-tolerance relaxes it where MLAS takes other kernels
// (another CPU): there a sum near a rounding boundary quantizes one step apart and the step
// spreads through the later layers (//exporters:onnx_ort_test measured up to 0.7% of the
// largest logit against the oneDNN order).
constexpr double kOnnxInt8Tolerance = 0;
// Float models (ONNX and TNN): float32 summation order, TNN also BN folded into the conv.
constexpr double kFloatTolerance = 1e-4;

CommandSpec verify_spec() {
  return {
      "verify",
      "Runs the files 'qat export' wrote on a few batches (the test split of the config's\n"
      "\"data\" section, in order; synthetic images of model.input_shape without one) and\n"
      "compares them with the in-process model of the checkpoint:\n"
      "  --onnx   run in ONNX Runtime for Node (graph optimizations off, one thread) against\n"
      "           graph::simulate() of the converted model summed in ORT's order (tensorrt), or\n"
      "           the float eval forward (--float true). Needs node and onnxruntime-node in\n"
      "           $QAT_ORT_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/qat-onnxruntime);\n"
      "           install it there with '" +
          std::string(kOrtInstallCommand) +
          "'.\n"
          "  --tnn    read back with the TNN reader: simulate() of the re-read int8 model against\n"
          "           simulate() of the converted one (tnn), or the float net against the eval\n"
          "           forward (--float true).\n"
          "Prints the largest |difference|, how many outputs differ and for how many images the\n"
          "top-1 class differs. Passes (exit code 0) when the largest |difference| is within the\n"
          "tolerance, relative to the largest |output| of the in-process model: int8 0 (bit for\n"
          "bit: TNN always; ONNX unless --onnx-tolerance says otherwise, for CPUs on which ORT's\n"
          "summation order differs from the x86-64 MLAS order simulate() reproduces); float\n"
          "1e-4. Otherwise prints the comparison and fails with exit code 1.",
      {
          {"config", "C.json", "the config the files were exported with", std::nullopt},
          {"checkpoint", "W.safetensors", "the checkpoint they were exported from", std::nullopt},
          {"onnx", "OUT.onnx", "ONNX file to check; default: export.onnx", ""},
          {"tnn", "OUT/PREFIX", "TNN files to check; default: export.tnn", ""},
          {"float", "BOOL", "the files are float models; default: export.float, else false", ""},
          {"batches", "N", "batches to compare", std::to_string(kDefaultBatches)},
          {"onnx-tolerance", "R",
           "ONNX: the largest |difference| allowed, relative to the largest |output|; default: 0 "
           "for int8, 1e-4 for float",
           ""},
      },
  };
}

// A finite number >= 0.
double tolerance_flag(const std::string& text) {
  char* end = nullptr;
  const double r = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(r >= 0) || !std::isfinite(r))
    throw UsageError("--onnx-tolerance must be a number >= 0, got '" + text + "'");
  return r;
}

// ---- inputs

struct Inputs {
  std::vector<Tensor> batches;  // [N, C, H, W] each
  std::string source;           // "the Fashion-MNIST test split", ... (for the report)
  int64_t images = 0;
};

Inputs verification_inputs(const Config& config, int64_t batches) {
  DataConfig data;
  Inputs inputs;
  if (config.data) {
    data = *config.data;
    inputs.source = data.dataset == DataConfig::Dataset::kFashionMnist
                        ? "the Fashion-MNIST test split"
                        : "synthetic data (test split)";
  } else {
    data.dataset = DataConfig::Dataset::kSynthetic;
    data.batch_size = kSyntheticBatchSize;
    data.num_samples = kSyntheticBatchSize * batches;
    inputs.source = "synthetic images (the config has no \"data\" section)";
  }
  const std::unique_ptr<nn::data::DataLoader> loader =
      make_loader(data, config.model, /*train=*/false);
  loader->start_epoch(0);
  const Shape& expected = config.model.input_shape;
  while (static_cast<int64_t>(inputs.batches.size()) < batches) {
    const std::optional<nn::data::Batch> batch = loader->next();
    if (!batch) break;
    const Shape& shape = batch->images.shape();
    if (expected.size() == 4 && !std::equal(shape.begin() + 1, shape.end(), expected.begin() + 1)) {
      throw Error("verify: the data gives images of " +
                  shape_str(Shape(shape.begin() + 1, shape.end())) +
                  ", the model takes model.input_shape " + shape_str(expected) +
                  " (add a resize or pad transform to data.transforms)");
    }
    inputs.batches.push_back(batch->images);
    inputs.images += shape[0];
  }
  QAT_CHECK(!inputs.batches.empty(), "verify: the data loader gave no batch");
  return inputs;
}

// ---- comparison

struct Agreement {
  double max_abs = 0;     // max |got - expected|
  double max_ref = 0;     // max |expected|
  int64_t differing = 0;  // outputs whose float32 values differ
  int64_t outputs = 0;
  int64_t top1_differing = 0;  // images whose argmax differs
  int64_t images = 0;

  void add(const Tensor& expected, const std::vector<float>& got, const std::string& what) {
    const std::vector<float> e = expected.to_vector<float>();
    if (e.size() != got.size()) {
      throw Error(what + " gives " + std::to_string(got.size()) + " output values for a batch, " +
                  "the in-process model " + std::to_string(e.size()) + " (" +
                  shape_str(expected.shape()) + "): exported from another model or config?");
    }
    for (size_t i = 0; i < e.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(e[i])));
      if (e[i] == got[i]) continue;
      ++differing;
      const double d = std::fabs(static_cast<double>(e[i]) - got[i]);
      max_abs = std::max(max_abs, std::isnan(d) ? INFINITY : d);
    }
    outputs += static_cast<int64_t>(e.size());
    const int64_t n = expected.shape().at(0);
    const int64_t classes = n > 0 ? static_cast<int64_t>(e.size()) / n : 0;
    for (int64_t i = 0; i < n && classes > 0; ++i) {
      const auto row = [&](const std::vector<float>& v) {
        const auto begin = v.begin() + i * classes;
        return std::distance(begin, std::max_element(begin, begin + classes));
      };
      top1_differing += row(e) != row(got) ? 1 : 0;
    }
    images += n;
  }
};

struct Check {
  std::string what;      // "onnx m.onnx in ONNX Runtime 1.31.1 (optimizations off) vs ..."
  double tolerance = 0;  // relative to max_ref
  Agreement agreement;

  bool passed() const {
    return agreement.max_abs <= tolerance * agreement.max_ref &&
           (tolerance > 0 || agreement.differing == 0);
  }
};

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.6g", value);
  return text;
}

std::string tolerance_text(double tolerance) {
  return tolerance == 0 ? "bit for bit" : "tolerance " + number(tolerance) + " of max |output|";
}

void print_check(const Check& c) {
  const Agreement& a = c.agreement;
  std::printf(
      "%s:\n  max |diff| %s (max |output| %s), %lld of %lld outputs differ, top-1 differs "
      "for %lld of %lld images: %s (%s)\n",
      c.what.c_str(), number(a.max_abs).c_str(), number(a.max_ref).c_str(),
      static_cast<long long>(a.differing), static_cast<long long>(a.outputs),
      static_cast<long long>(a.top1_differing), static_cast<long long>(a.images),
      c.passed() ? "ok" : "FAILED", tolerance_text(c.tolerance).c_str());
}

// ---- the checks

// The in-process model: simulate() of the converted QAT model, or the float eval forward.
struct Reference {
  std::shared_ptr<nn::Module> float_model;
  std::optional<graph::IntModel> int_model;

  Tensor operator()(const Tensor& x,
                    const graph::SimulateOptions& options = graph::SimulateOptions()) const {
    NoGradGuard no_grad;
    return int_model ? graph::simulate(*int_model, x, options) : float_model->forward(x);
  }
};

Check check_onnx(const std::string& path, const Reference& reference, const Inputs& inputs,
                 std::optional<double> tolerance) {
  if (!std::filesystem::exists(path))
    throw Error("verify: no ONNX file " + path + " (write it with 'qat export --onnx')");
  std::string version;
  const std::vector<Tensor> got = run_onnx_runtime(path, inputs.batches, "verify --onnx", &version);
  Check check;
  check.what =
      "onnx " + path + " in ONNX Runtime " + version + " (optimizations off) vs " +
      (reference.int_model ? "simulate() in ORT's summation order" : "the float eval forward");
  check.tolerance = tolerance.value_or(reference.int_model ? kOnnxInt8Tolerance : kFloatTolerance);
  graph::SimulateOptions options;
  options.accumulation = graph::Accumulation::kOnnxRuntime;
  for (size_t i = 0; i < got.size(); ++i)
    check.agreement.add(reference(inputs.batches[i], options), got[i].to_vector<float>(),
                        "the ONNX model " + path);
  return check;
}

Check check_tnn(const std::string& prefix, const Reference& reference, const Inputs& inputs) {
  for (const char* suffix : {".tnnproto", ".tnnmodel"}) {
    if (!std::filesystem::exists(prefix + suffix))
      throw Error("verify: no TNN file " + prefix + suffix + " (write it with 'qat export --tnn')");
  }
  const exporters::TnnNet net = exporters::read_tnn(prefix);
  Check check;
  std::function<Tensor(const Tensor&)> run;
  if (reference.int_model) {
    const auto reread = std::make_shared<graph::IntModel>(exporters::tnn_int_model(net));
    run = [reread](const Tensor& x) { return graph::simulate(*reread, x); };
    check.what = "tnn " + prefix + " read back, simulate() vs simulate() of the converted model";
    check.tolerance = 0;
  } else {
    run = [&net](const Tensor& x) { return exporters::run_tnn_float(net, x); };
    check.what = "tnn " + prefix + " read back, float run vs the float eval forward";
    check.tolerance = kFloatTolerance;
  }
  NoGradGuard no_grad;
  for (const Tensor& x : inputs.batches)
    check.agreement.add(reference(x), run(x).to_vector<float>(), "the TNN model " + prefix);
  return check;
}

}  // namespace

int verify_main(int argc, const char* const* argv) {
  const CommandSpec spec = verify_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const int64_t batches = parse_batches(flags->get_string("batches"));
  std::optional<double> onnx_tolerance;
  if (!flags->get_string("onnx-tolerance").empty())
    onnx_tolerance = tolerance_flag(flags->get_string("onnx-tolerance"));
  const ExportFlags file_flags = export_flags(*flags);
  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  const ExportFiles files = export_files(file_flags, config, "verify");
  const std::string checkpoint = flags->get_string("checkpoint");

  Reference reference;
  if (files.float_model) {
    check_float_checkpoint(checkpoint);
    reference.float_model = load_float_model(config.model, checkpoint);
  } else {
    check_int8_targets(files, config, config_path);
    reference.int_model = graph::convert(*load_qat_model(config, config_path, checkpoint));
  }
  const Inputs inputs = verification_inputs(config, batches);
  const std::string kind =
      files.float_model ? "float"
                        : quant::target_name(config.qat->qconfig.target) + std::string(" int8");
  std::printf("verifying %s (%s) on %zu batch%s, %lld images of %s\n", config.model.name.c_str(),
              kind.c_str(), inputs.batches.size(), inputs.batches.size() == 1 ? "" : "es",
              static_cast<long long>(inputs.images), inputs.source.c_str());

  std::vector<Check> checks;
  if (!files.onnx.empty())
    checks.push_back(check_onnx(files.onnx, reference, inputs, onnx_tolerance));
  if (!files.tnn.empty()) checks.push_back(check_tnn(files.tnn, reference, inputs));
  std::string failed;
  for (const Check& check : checks) {
    print_check(check);
    if (!check.passed()) failed += (failed.empty() ? "" : "; ") + check.what;
  }
  std::fflush(stdout);
  if (!failed.empty()) throw Error("verify failed: " + failed);
  std::printf("verified\n");
  return 0;
}

}  // namespace qat::zoo::cli
