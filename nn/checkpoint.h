#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/module.h"

// Training checkpoints that lose nothing: everything a run needs to continue bit for bit
// (model, optimizer, LR schedule, RNG and data position) in one safetensors file, written
// atomically and verified by a CRC32 on load.
namespace qat::nn {

// One moment of a run. A resumed run restores each part and continues the data loader with
// DataLoader::start_epoch(epoch, step_in_epoch):
//   model->load_state_dict(s.model); optimizer.load_state_dict(s.optimizer);
//   scheduler.load_state_dict(s.scheduler); set_rng_state(s.rng.at("default"));
struct TrainingState {
  StateDict model;         // Module::state_dict(); a QAT model's observer/fake-quant state is in it
  NamedTensors optimizer;  // Optimizer::state_dict()
  NamedTensors scheduler;  // LRScheduler::state_dict(); empty without a scheduler
  std::map<std::string, Tensor> rng;            // Generator::get_state() by name ("default", ...)
  int64_t epoch = 0;                            // the epoch in progress
  int64_t step = 0;                             // optimizer steps over the whole run
  int64_t step_in_epoch = 0;                    // batches of `epoch` already trained on
  std::map<std::string, std::string> metadata;  // free-form: config hash, target, ...
};

// Writes `state` to `path` as safetensors: tensors under "model.", "optimizer.", "scheduler."
// and "rng.", the integers and `metadata` in the header's __metadata__ (as "qat.epoch", ...,
// "meta.<key>"), plus "qat.crc32" over every name, dtype, shape, byte of tensor data and
// metadata entry. Atomic (temp file, fsync, rename): a crash leaves the old file or the new one.
void save_checkpoint(const std::string& path, const TrainingState& state);

// Reads a save_checkpoint() file. A truncated or damaged file, a checksum mismatch (a flipped
// bit anywhere in the tensor data or header) or a missing field throws qat::Error naming the
// file and the problem.
TrainingState load_checkpoint(const std::string& path);

struct CheckpointDirOptions {
  QAT_ARG(int64_t, keep_last) = 3;  // newest checkpoints kept, >= 1
  // Also keep the checkpoint with the best metric (given to save()), however old.
  QAT_ARG(bool, keep_best) = false;
  QAT_ARG(bool, higher_is_better) = true;  // accuracy; false for a loss
};

// A directory of checkpoints "ckpt-<step>.safetensors" (step zero-padded). The newest is the
// one with the highest step, found by scanning the names, so there is no pointer file to get
// out of sync. The metric of keep_best is stored in each file's metadata ("qat.metric").
// One writer per directory.
class CheckpointDir {
 public:
  // Creates `dir` (and its parents) if needed.
  explicit CheckpointDir(std::string dir, CheckpointDirOptions options = {});

  // Writes ckpt-<state.step>.safetensors atomically, then removes checkpoints of later steps
  // (left by a timeline this run abandoned when it resumed from an older checkpoint, so the one
  // just written is always the latest), checkpoints beyond keep_last (sparing the best one with
  // keep_best) and temp files left by killed writers. Returns the path written.
  std::string save(const TrainingState& state, std::optional<double> metric = std::nullopt);

  // The newest checkpoint that loads and verifies. Each newer one that does not is reported
  // with a warning naming the file and the reason (on stderr, and appended to `warnings` when
  // given) and skipped. nullopt when the directory holds no checkpoint (a fresh start); throws
  // when there are checkpoints but none is usable, listing every reason.
  std::optional<TrainingState> load_latest(std::vector<std::string>* warnings = nullptr) const;

  // Paths of the checkpoints present, oldest (lowest step) first.
  std::vector<std::string> list() const;
  // The checkpoint with the best readable metric, if any has one.
  std::optional<std::string> best() const;
  const std::string& dir() const { return dir_; }

 private:
  void prune(const std::string& newest) const;

  std::string dir_;
  CheckpointDirOptions options_;
};

}  // namespace qat::nn
