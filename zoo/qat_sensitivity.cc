// `qat sensitivity`: per quantized node, the top-1 and logit error with only that node quantized
// and with only that node float; a ranked table and a suggested qat.black_list.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"
#include "zoo/sensitivity.h"

namespace qat::zoo::cli {
namespace {

constexpr int64_t kDefaultBatches = 8;
constexpr int64_t kDefaultCalibrationBatches = 16;  // as qat calibrate

CommandSpec sensitivity_spec() {
  return {
      "sensitivity",
      "Measures, per quantized node (a node qat.black_list can leave float), the top-1 and the\n"
      "logit SQNR against the float model with only that node quantized and with only that\n"
      "node float, by switching fake quant on the same batches. Prints the nodes ranked by the\n"
      "top-1 drop quantizing them alone causes, then a black_list found greedily: nodes left\n"
      "float in order of their gain, each kept when the model with all of them float measures\n"
      "better, until top-1 is within --budget points of float. A QAT checkpoint is measured as\n"
      "it is; a float checkpoint is first calibrated as 'qat calibrate' does.",
      {
          {"config", "C.json", "config file with \"model\", \"data\" and \"qat\" sections",
           std::nullopt},
          {"checkpoint", "W.safetensors", "QAT checkpoint, or a float state_dict to calibrate",
           std::nullopt},
          {"batches", "N", "batches measured per setting", std::to_string(kDefaultBatches)},
          {"budget", "P", "accepted top-1 below float, percentage points", "1"},
          {"split", "test|train", "the data split measured", "test"},
      },
  };
}

double budget_flag(const std::string& text) {
  char* end = nullptr;
  const double p = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(p >= 0) || !std::isfinite(p))
    throw UsageError("--budget must be a number >= 0 (percentage points), got '" + text + "'");
  return p;
}

bool train_split(const std::string& text) {
  if (text != "test" && text != "train")
    throw UsageError("--split must be 'test' or 'train', got '" + text + "'");
  return text == "train";
}

// The model to measure: the QAT checkpoint loaded, or the float one calibrated.
std::shared_ptr<graph::QuantizableModel> measured_model(const Config& config,
                                                        const std::string& config_path,
                                                        const std::string& checkpoint) {
  if (qat_checkpoint_target(checkpoint)) return load_qat_model(config, config_path, checkpoint);
  const std::shared_ptr<graph::QuantizableModel> qm =
      prepare_model(load_float_model(config.model, checkpoint), config, config_path);
  const int64_t batches = config.qat->calibration_batches.value_or(kDefaultCalibrationBatches);
  std::fprintf(stderr, "calibrating %lld batches (calibrator %s)\n",
               static_cast<long long>(batches), calibrator_name(config.qat->calibrator));
  const std::unique_ptr<nn::data::DataLoader> loader =
      make_calibration_loader(*config.data, config.model);
  calibrate(*qm, *loader, batches, config.qat->calibrator, config.model.input_shape);
  quant::disable_observer(*qm);
  qm->eval();
  return qm;
}

std::string sqnr(double db) {
  if (std::isinf(db)) return db > 0 ? "inf" : "-inf";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", db);
  return text;
}

void print_table(const SensitivityReport& report) {
  size_t width = 4;
  for (const SensitivityRow& row : report.rows) width = std::max(width, row.node.name.size());
  std::printf("%4s  %-*s  %-14s  %5s  %9s  %6s  %8s  %9s  %6s  %8s\n", "rank",
              static_cast<int>(width), "node", "kind", "quant", "only-q %", "drop", "SQNR dB",
              "only-f %", "gain", "SQNR dB");
  int rank = 0;
  for (const SensitivityRow& row : report.rows) {
    std::printf("%4d  %-*s  %-14s  %5zu  %9.2f  %6.2f  %8s  %9.2f  %6.2f  %8s\n", ++rank,
                static_cast<int>(width), row.node.name.c_str(), row.node.kind.c_str(),
                row.node.quantizers.size(), row.only_quantized.eval.top1, row.drop,
                sqnr(row.only_quantized.sqnr_db).c_str(), row.only_float.eval.top1, row.gain,
                sqnr(row.only_float.sqnr_db).c_str());
  }
}

}  // namespace

int sensitivity_main(int argc, const char* const* argv) {
  const CommandSpec spec = sensitivity_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  SensitivityOptions options;
  options.batches = parse_batches(flags->get_string("batches"));
  options.budget = budget_flag(flags->get_string("budget"));
  const bool train = train_split(flags->get_string("split"));

  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  if (!config.data) {
    throw Error(config_path +
                ": no \"data\" section: sensitivity needs images (e.g. \"data\": {\"dataset\": "
                "\"fashion_mnist\"})");
  }
  if (!config.qat) throw Error(config_path + ": no \"qat\" section (it needs at least \"target\")");
  const std::shared_ptr<graph::QuantizableModel> qm =
      measured_model(config, config_path, flags->get_string("checkpoint"));
  const std::unique_ptr<nn::data::DataLoader> loader =
      make_loader(*config.data, config.model, train);

  options.progress = [](const std::string& stage, int64_t done, int64_t total) {
    std::fprintf(stderr, "%s: %lld/%lld\n",
                 stage == "nodes" ? "measuring nodes" : "black_list trial",
                 static_cast<long long>(done), static_cast<long long>(total));
  };
  const SensitivityReport report = analyze_sensitivity(*qm, *loader, options);

  std::printf("sensitivity of %s for %s: %zu nodes, %lld images of the %s split\n",
              config.model.name.c_str(), quant::target_name(config.qat->qconfig.target),
              report.rows.size(), static_cast<long long>(report.float_model.eval.images),
              train ? "train" : "test");
  std::printf("float top-1 %.2f%%, fully quantized top-1 %.2f%% (drop %.2f, SQNR %s dB)\n\n",
              report.float_model.eval.top1, report.quantized.eval.top1,
              report.float_model.eval.top1 - report.quantized.eval.top1,
              sqnr(report.quantized.sqnr_db).c_str());
  print_table(report);
  std::printf(
      "\nonly-q: only this node quantized (drop: below float); only-f: only this node float "
      "(gain: above fully quantized)\n\n");
  std::printf("suggested black_list for a budget of %.2f points: top-1 %.2f%% (drop %.2f), %s\n",
              options.budget, report.with_suggested.eval.top1,
              report.float_model.eval.top1 - report.with_suggested.eval.top1,
              report.within_budget ? "within budget" : "NOT within budget");
  std::printf("\"black_list\": %s\n", nlohmann::json(report.black_list).dump().c_str());
  return 0;
}

}  // namespace qat::zoo::cli
