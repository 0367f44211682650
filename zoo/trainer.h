#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "zoo/config.h"
#include "zoo/evaluate.h"

// `qat train`: the whole run a config describes (README, "Training").
//   epochs [0, qat.start_epoch)            float training
//   at qat.start_epoch                     float weights saved and evaluated, prepare_qat,
//                                          calibration on qat.calibration_batches
//   epochs [qat.start_epoch, train.epochs) QAT fine-tuning at qat.lr, BN frozen from
//                                          qat.freeze_bn_epoch, observers from
//                                          qat.freeze_observer_epoch
//   the end                                QAT checkpoint, export, and the accuracy table:
//                                          float / fake-quant / int8 simulation / exported
// Each phase runs train.lr_schedule over its own steps. A checkpoint (nn/checkpoint.h) is
// written at every epoch end, every checkpoint.every_steps steps and on SIGINT / SIGTERM; it
// holds everything a resumed run needs to reach the weights of an uninterrupted one bit for
// bit (same seed and thread count).
namespace qat::zoo {

struct TrainOptions {
  // Continue from the newest usable checkpoint of the checkpoint directory. Without it, a
  // directory that already holds checkpoints is an error (nothing is overwritten).
  bool resume = false;
  // Where the progress line and the table go. A terminal gets one live line; anything else
  // plain lines every train.log_every steps.
  std::FILE* out = stdout;
  // Stop as an interruption does (checkpoint, then return) once this process has run this many
  // steps: tests of resume.
  std::optional<int64_t> stop_after_steps;
  // Called with the images of each step before the forward (run-wide step number, 1-based):
  // tests inject bad data here.
  std::function<void(int64_t step, Tensor& images)> on_batch;
};

// One row of the final table.
struct AccuracyRow {
  std::string name;                  // "float", "fake-quant", "int8 simulation", "exported ..."
  std::optional<EvalResult> result;  // nullopt: not measured (see note)
  std::string note;                  // why not measured, or what was run
};

struct TrainResult {
  bool completed = false;  // false: interrupted; resume with TrainOptions::resume
  int64_t steps = 0;       // optimizer steps of the run so far
  std::string last_checkpoint;
  std::string float_weights;  // <out_dir>/float.safetensors (state_dict of the float model)
  std::string qat_weights;    // <out_dir>/qat.safetensors (QAT checkpoint), when there is QAT
  std::vector<std::string> exported;  // files written at the end
  std::string accuracy_table;         // <out_dir>/accuracy.txt: the table as printed
  std::vector<AccuracyRow> table;
};

// Runs the config's training. `config_path` names the file in errors; the config must have a
// "data" and a "train" section. A NaN or infinite loss stops the run with a qat::Error that
// names the step and the last good checkpoint (no checkpoint is written after it).
TrainResult train(const Config& config, const std::string& config_path,
                  const TrainOptions& options = {});

// The table as printed at the end of a run.
std::string format_accuracy_table(const std::vector<AccuracyRow>& rows);

}  // namespace qat::zoo
