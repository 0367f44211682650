// `qat eval`: top-1 / top-5 accuracy and loss of a checkpoint over the config's data, in every
// form the model takes on its way to deployment, side by side.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "graph/convert.h"
#include "graph/int_model.h"
#include "zoo/config.h"
#include "zoo/evaluate.h"
#include "zoo/onnx_runtime.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"

namespace qat::zoo::cli {
namespace {

const char* const kModes[] = {"all", "float", "fakequant", "int8", "onnx", "tnn"};

CommandSpec eval_spec() {
  return {
      "eval",
      "Evaluates a checkpoint on the config's \"data\" section (the test split by default, in\n"
      "order) and prints one row per mode: images, top-1 and top-5 accuracy (%) and the mean\n"
      "cross-entropy loss.\n"
      "  float:     the float model (a float checkpoint; the only mode for one);\n"
      "  fakequant: the model prepared as the \"qat\" section says, with the QAT checkpoint;\n"
      "  int8:      its integer model (graph::convert), simulated in-process;\n"
      "  onnx:      the ONNX Q/DQ export (tensorrt, PyTorch presets) in ONNX Runtime for Node\n"
      "             (optimizations off, one thread): the --onnx file, else exported to a\n"
      "             temporary directory. Needs onnxruntime-node in $QAT_ORT_DIR (default\n"
      "             ${XDG_CACHE_HOME:-$HOME/.cache}/qat-onnxruntime); install it there with\n"
      "             '" +
          std::string(kOrtInstallCommand) +
          "';\n"
          "  tnn:       the TNN int8 export (tnn) read back and run: the --tnn files, else\n"
          "             exported to a temporary directory.\n"
          "all runs every mode the checkpoint has (onnx is skipped, with a note, when ONNX\n"
          "Runtime is not installed). Progress goes to stderr on long runs.",
      {
          {"config", "C.json", "config file with \"model\" and \"data\" (and \"qat\" for QAT)",
           std::nullopt},
          {"checkpoint", "W.safetensors", "float or QAT checkpoint", std::nullopt},
          {"mode", "all", "all, float, fakequant, int8, onnx or tnn", "all"},
          {"onnx", "F.onnx", "the ONNX file of --mode onnx; default: export to a temp dir", ""},
          {"tnn", "PREFIX", "the TNN files of --mode tnn; default: export to a temp dir", ""},
          {"batches", "N", "batches to evaluate; default: all", ""},
          {"split", "test", "test or train", "test"},
      },
  };
}

std::string mode_list() {
  std::string list;
  for (const char* mode : kModes) list += (list.empty() ? "" : ", ") + std::string(mode);
  return list;
}

void check_flags(const std::string& mode, const std::string& split) {
  if (std::find_if(std::begin(kModes), std::end(kModes),
                   [&](const char* m) { return mode == m; }) == std::end(kModes))
    throw UsageError("--mode must be one of " + mode_list() + ", got '" + mode + "'");
  if (split != "test" && split != "train")
    throw UsageError("--split must be test or train, got '" + split + "'");
}

// "eval int8: batch 40/157, 2560 images, 812 img/s" on stderr once a run takes over a second:
// one line rewritten in place on a terminal, else a line per tenth of the batches.
class Progress {
 public:
  explicit Progress(std::string mode)
      : mode_(std::move(mode)), tty_(::isatty(STDERR_FILENO) == 1), start_(Clock::now()) {}
  ~Progress() {
    if (tty_ && printed_) std::fprintf(stderr, "\n");
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void operator()(int64_t done, int64_t total, int64_t images) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const int64_t step = std::max<int64_t>(1, total / 10);
    if (seconds < 1 || (!tty_ && done % step != 0 && done != total)) return;
    std::fprintf(stderr, "%seval %s: batch %lld/%lld, %lld images, %.0f img/s%s", tty_ ? "\r" : "",
                 mode_.c_str(), static_cast<long long>(done), static_cast<long long>(total),
                 static_cast<long long>(images), images / seconds, tty_ ? "" : "\n");
    std::fflush(stderr);
    printed_ = true;
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string mode_;
  bool tty_;
  Clock::time_point start_;
  bool printed_ = false;
};

struct Row {
  std::string mode;
  EvalResult result;
};

void print_table(const std::vector<Row>& rows) {
  std::printf("%-10s %8s %8s %8s %8s\n", "mode", "images", "top-1 %", "top-5 %", "loss");
  for (const Row& row : rows) {
    const EvalResult& r = row.result;
    std::printf("%-10s %8lld %8.2f %8.2f %8.4f\n", row.mode.c_str(),
                static_cast<long long>(r.images), r.top1, r.top5, r.loss);
  }
}

// What one `qat eval` evaluates on.
struct Evaluation {
  const Config& config;
  std::string config_path, checkpoint;
  nn::data::DataLoader& loader;
  int64_t batches = 0;  // <= 0: all

  // Runs `run` with a progress line and adds its row.
  void add(std::vector<Row>& rows, const std::string& mode,
           const std::function<EvalResult(const EvalProgress&)>& run) const {
    Progress progress(mode);
    rows.push_back({mode, run(std::ref(progress))});
  }
};

std::vector<Row> eval_float(const Evaluation& e, const std::string& mode) {
  if (mode != "all" && mode != "float") {
    throw Error(e.checkpoint + " is a float checkpoint; --mode " + mode +
                " needs a QAT checkpoint ('qat calibrate' or training); evaluate this one with "
                "--mode float");
  }
  const std::shared_ptr<nn::Module> model = load_float_model(e.config.model, e.checkpoint);
  std::vector<Row> rows;
  e.add(rows, "float", [&](const EvalProgress& progress) {
    return evaluate_module(*model, e.loader, e.batches, progress);
  });
  return rows;
}

// The modes a QAT checkpoint of `target` has, in table order: onnx for the Q/DQ targets, tnn for
// tnn. A mode it does not have is an error.
std::vector<std::string> qat_modes(const std::string& mode, quant::Target target,
                                   const std::string& checkpoint) {
  const std::string name = quant::target_name(target);
  const std::string exported = graph::runs_qdq(target) ? "onnx" : "tnn";
  if (mode == "float") {
    throw Error(checkpoint + " is a QAT checkpoint (target " + name +
                "); evaluate it with --mode fakequant, int8 or " + exported +
                " (--mode float takes the float checkpoint)");
  }
  if ((mode == "onnx" || mode == "tnn") && mode != exported) {
    throw Error("--mode " + mode + " needs a checkpoint whose target exports " +
                (mode == "onnx" ? "ONNX Q/DQ (tensorrt or a PyTorch preset)" : "TNN int8 (tnn)") +
                "; " + checkpoint + " has target " + name + " (use --mode " + exported + ")");
  }
  if (mode == "all") return {"fakequant", "int8", exported};
  return {mode};
}

// The --onnx / --tnn file of `mode`, or the int8 model exported into `temp`.
std::string exported_file(const std::string& mode, const std::string& given,
                          const graph::IntModel& int_model, const TempDir& temp) {
  if (!given.empty()) return given;
  ExportFiles files;
  (mode == "onnx" ? files.onnx : files.tnn) =
      temp.path() + (mode == "onnx" ? "/model.onnx" : "/model");
  write_int8_files(int_model, files, stderr);
  return mode == "onnx" ? files.onnx : files.tnn;
}

std::vector<Row> eval_qat(const Evaluation& e, const std::string& mode, const Flags& flags) {
  if (!e.config.qat) {
    throw Error(e.config_path + ": no \"qat\" section: a QAT checkpoint (" + e.checkpoint +
                ") is evaluated with the target and qconfig it was calibrated with");
  }
  const std::vector<std::string> modes =
      qat_modes(mode, e.config.qat->qconfig.target, e.checkpoint);
  const std::shared_ptr<graph::QuantizableModel> qm =
      load_qat_model(e.config, e.config_path, e.checkpoint);
  const graph::IntModel int_model = graph::convert(*qm);
  const TempDir temp("eval");
  std::vector<Row> rows;
  for (const std::string& m : modes) {
    if (m == "fakequant") {
      e.add(rows, m, [&](const EvalProgress& progress) {
        return evaluate_module(*qm, e.loader, e.batches, progress);
      });
    } else if (m == "int8") {
      e.add(rows, m, [&](const EvalProgress& progress) {
        return evaluate_int_model(int_model, graph::SimulateOptions(), e.loader, e.batches,
                                  progress);
      });
    } else if (m == "onnx") {
      // Checked before exporting: without ORT, all goes on without onnx, --mode onnx fails.
      std::string reason;
      if (!onnx_runtime_available(&reason)) {
        if (mode != "all") throw Error(reason);
        std::fprintf(stderr, "qat: note: skipping onnx: %s\n", reason.c_str());
        continue;
      }
      const std::string onnx = exported_file(m, flags.get_string("onnx"), int_model, temp);
      e.add(rows, m, [&](const EvalProgress& progress) {
        return evaluate_onnx_runtime(onnx, e.loader, e.batches, progress);
      });
    } else {
      const std::string tnn = exported_file(m, flags.get_string("tnn"), int_model, temp);
      e.add(rows, m, [&](const EvalProgress& progress) {
        return evaluate_tnn_files(tnn, e.loader, e.batches, progress);
      });
    }
  }
  return rows;
}

}  // namespace

int eval_main(int argc, const char* const* argv) {
  const CommandSpec spec = eval_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const std::string mode = flags->get_string("mode"), split = flags->get_string("split");
  check_flags(mode, split);
  const std::string batches_text = flags->get_string("batches");
  const int64_t batches = batches_text.empty() ? 0 : parse_batches(batches_text);
  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  if (!config.data) {
    throw Error(config_path +
                ": no \"data\" section: eval needs one (the images and labels to evaluate on)");
  }
  const std::string checkpoint = flags->get_string("checkpoint");
  const std::optional<std::string> target = qat_checkpoint_target(checkpoint);
  const std::unique_ptr<nn::data::DataLoader> loader =
      make_loader(*config.data, config.model, /*train=*/split == "train");
  const Evaluation evaluation{config, config_path, checkpoint, *loader, batches};
  const int64_t planned =
      batches > 0 ? std::min(batches, loader->num_batches()) : loader->num_batches();
  std::printf("evaluating %s (%s) on the %s split: %lld batch%s of %lld\n",
              config.model.name.c_str(), target ? ("QAT " + *target).c_str() : "float",
              split.c_str(), static_cast<long long>(planned), planned == 1 ? "" : "es",
              static_cast<long long>(config.data->batch_size));
  std::fflush(stdout);
  const std::vector<Row> rows =
      target ? eval_qat(evaluation, mode, *flags) : eval_float(evaluation, mode);
  print_table(rows);
  return 0;
}

}  // namespace qat::zoo::cli
