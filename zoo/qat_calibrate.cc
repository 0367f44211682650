// `qat calibrate`: float checkpoint -> prepared model -> calibration batches -> QAT checkpoint.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"

namespace qat::zoo::cli {
namespace {

constexpr int64_t kDefaultBatches = 16;

CommandSpec calibrate_spec() {
  return {
      "calibrate",
      "Builds the config's model, loads the float checkpoint, prepares the model for QAT as the\n"
      "\"qat\" section says, and runs calibration batches from the \"data\" section (training\n"
      "split, in order) in eval mode: BN on its running statistics, observers on, as PyTorch's\n"
      "model.eval() calibration. qat.calibrator picks where activation ranges come from\n"
      "(minmax: the observers, fake quant on; max / histogram: a calibrator on float\n"
      "activations). Writes the QAT checkpoint (the float keys plus the quant state) atomically;\n"
      "'qat run --mode fakequant|int8' and training start from it.",
      {
          {"config", "C.json", "config file with \"model\", \"data\" and \"qat\" sections",
           std::nullopt},
          {"checkpoint", "W.safetensors", "float state_dict with the torchvision keys",
           std::nullopt},
          {"output", "Q.safetensors", "the QAT checkpoint to write", std::nullopt},
          {"batches", "N",
           "calibration batches; default: qat.calibration_batches, else " +
               std::to_string(kDefaultBatches),
           ""},
      },
  };
}

// "calibrating: batch 3/16, 96 images, 412 img/s": a line per tenth of the batches, or one
// line rewritten in place on a terminal.
class ProgressLine {
 public:
  ProgressLine() : tty_(::isatty(STDOUT_FILENO) == 1), start_(Clock::now()) {}

  void operator()(int64_t done, int64_t total, int64_t images) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const int64_t step = std::max<int64_t>(1, total / 10);
    if (!tty_ && done % step != 0 && done != total) return;
    std::printf("%scalibrating: batch %lld/%lld, %lld images, %.0f img/s%s", tty_ ? "\r" : "",
                static_cast<long long>(done), static_cast<long long>(total),
                static_cast<long long>(images), seconds > 0 ? images / seconds : 0.0,
                tty_ ? "" : "\n");
    std::fflush(stdout);
  }

  void finish() {
    if (tty_) std::printf("\n");
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool tty_;
  Clock::time_point start_;
};

}  // namespace

int calibrate_main(int argc, const char* const* argv) {
  const CommandSpec spec = calibrate_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const std::string batches_text = flags->get_string("batches");
  const int64_t flag_batches = batches_text.empty() ? 0 : parse_batches(batches_text);  // 0: unset

  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  if (!config.data) {
    throw Error(config_path +
                ": no \"data\" section: calibration needs images (e.g. \"data\": {\"dataset\": "
                "\"fashion_mnist\"})");
  }
  const std::shared_ptr<nn::Module> model = create_model(config.model);
  const std::string checkpoint = flags->get_string("checkpoint");
  const std::vector<std::string> skipped = load_checkpoint(*model, checkpoint);
  if (!skipped.empty()) {
    std::fprintf(stderr, "qat: note: skipped %zu aux-head tensors of %s\n", skipped.size(),
                 checkpoint.c_str());
  }
  const std::shared_ptr<graph::QuantizableModel> qm = prepare_model(model, config, config_path);
  const int64_t batches =
      flag_batches > 0 ? flag_batches : config.qat->calibration_batches.value_or(kDefaultBatches);
  const std::unique_ptr<nn::data::DataLoader> loader =
      make_calibration_loader(*config.data, config.model);

  std::printf("calibrating %s for %s: %lld batches of %lld, calibrator %s\n",
              config.model.name.c_str(), quant::target_name(config.qat->qconfig.target),
              static_cast<long long>(batches), static_cast<long long>(config.data->batch_size),
              calibrator_name(config.qat->calibrator));
  ProgressLine progress;
  const int64_t done =
      calibrate(*qm, *loader, batches, config.qat->calibrator, config.model.input_shape,
                [&progress](int64_t d, int64_t t, int64_t i) { progress(d, t, i); });
  progress.finish();
  if (done < batches) {
    std::printf("note: the data has only %lld batches\n", static_cast<long long>(done));
  }

  const std::string output = flags->get_string("output");
  save_qat_checkpoint(*qm, output);
  std::printf("wrote %s (%zu quantizers, %zu tensors)\n", output.c_str(), quantizers(*qm).size(),
              qm->state_dict().size());
  return 0;
}

}  // namespace qat::zoo::cli
