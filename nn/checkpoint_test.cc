#include "nn/checkpoint.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops/loss.h"
#include "core/random.h"
#include "core/serialize.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/data/data_loader.h"
#include "nn/data/dataset.h"
#include "nn/data/transforms.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/lr_scheduler.h"
#include "nn/optim.h"
#include "nn/sequential.h"

extern char** environ;

namespace qat::nn {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSeed = 11;
constexpr int64_t kEpochs = 4;  // of 8 batches: 32 steps

// Everything a tiny training run owns: a conv + BN + dropout model, SGD with momentum and
// weight decay, warmup then step decay, and a shuffled loader with a random flip.
struct TrainRun {
  std::shared_ptr<Sequential> model;
  std::unique_ptr<SGD> optimizer;
  std::shared_ptr<SequentialLR> scheduler;
  std::unique_ptr<data::DataLoader> loader;
  int64_t epoch = 0;
  int64_t step = 0;
  int64_t step_in_epoch = 0;
};

// A fresh run as a process starting from its config builds it.
std::unique_ptr<TrainRun> make_run() {
  manual_seed(kSeed);
  auto run = std::make_unique<TrainRun>();
  run->model = std::make_shared<Sequential>(
      std::make_shared<Conv2d>(1, 4, 3, Conv2dOptions().padding(1)),
      std::make_shared<BatchNorm2d>(4), std::make_shared<ReLU>(), std::make_shared<Flatten>(),
      std::make_shared<Dropout>(0.3), std::make_shared<Linear>(64, 3));
  run->optimizer = std::make_unique<SGD>(run->model->parameters(),
                                         SGDOptions(0.05).momentum(0.9).weight_decay(1e-4));
  auto warmup = std::make_shared<LinearLR>(*run->optimizer, 0.2, 1.0, 2);
  auto decay = std::make_shared<StepLR>(*run->optimizer, 1, 0.7);
  run->scheduler = std::make_shared<SequentialLR>(
      *run->optimizer, std::vector<std::shared_ptr<LRScheduler>>{warmup, decay},
      std::vector<int64_t>{2});
  auto dataset = std::make_shared<data::SyntheticDataset>(30, Shape{1, 4, 4}, 3, kSeed);
  run->loader =
      std::make_unique<data::DataLoader>(dataset, data::DataLoaderOptions()
                                                      .batch_size(4)
                                                      .shuffle(true)
                                                      .seed(kSeed)
                                                      .transforms({data::RandomHorizontalFlip()})
                                                      .num_workers(2));
  return run;
}

TrainingState capture(const TrainRun& run) {
  TrainingState state;
  state.model = run.model->state_dict();
  state.optimizer = run.optimizer->state_dict();
  state.scheduler = run.scheduler->state_dict();
  state.rng["default"] = get_rng_state();
  state.epoch = run.epoch;
  state.step = run.step;
  state.step_in_epoch = run.step_in_epoch;
  state.metadata["config_hash"] = "abc123";
  return state;
}

void restore(TrainRun& run, const TrainingState& state) {
  run.model->load_state_dict(state.model);
  run.optimizer->load_state_dict(state.optimizer);
  run.scheduler->load_state_dict(state.scheduler);
  set_rng_state(state.rng.at("default"));
  run.epoch = state.epoch;
  run.step = state.step;
  run.step_in_epoch = state.step_in_epoch;
}

// Trains to the end, or stops before step `stop_at` (a simulated kill); after_step runs after
// every optimizer step.
void train(TrainRun& run, int64_t stop_at = -1,
           const std::function<void(const TrainRun&)>& after_step = nullptr) {
  while (run.epoch < kEpochs) {
    run.loader->start_epoch(run.epoch, run.step_in_epoch);
    while (std::optional<data::Batch> batch = run.loader->next()) {
      if (run.step == stop_at) return;
      run.optimizer->zero_grad();
      ops::cross_entropy(run.model->forward(batch->images), batch->labels).backward();
      run.optimizer->step();
      ++run.step;
      ++run.step_in_epoch;
      if (after_step) after_step(run);
    }
    run.scheduler->step();
    ++run.epoch;
    run.step_in_epoch = 0;
  }
}

// Bitwise equality of every tensor, with the first differing name.
::testing::AssertionResult bit_identical(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " tensors";
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first || a[i].second.dtype() != b[i].second.dtype() ||
        a[i].second.shape() != b[i].second.shape() ||
        std::memcmp(a[i].second.raw_data(), b[i].second.raw_data(), a[i].second.nbytes()) != 0) {
      return ::testing::AssertionFailure() << "'" << a[i].first << "' differs";
    }
  }
  return ::testing::AssertionSuccess();
}

std::string scratch_dir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp ? tmp : "/tmp") / ("checkpoint_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// The weights and optimizer state of an uninterrupted run.
const NamedTensors& reference_final_state() {
  static const NamedTensors final_state = [] {
    std::unique_ptr<TrainRun> run = make_run();
    train(*run);
    EXPECT_EQ(run->step, kEpochs * 8);
    NamedTensors out;
    for (auto& [name, t] : run->model->state_dict()) out.emplace_back("model." + name, t.clone());
    for (auto& [name, t] : run->optimizer->state_dict()) out.emplace_back("opt." + name, t.clone());
    return out;
  }();
  return final_state;
}

NamedTensors final_state_of(const NamedTensors& model, const NamedTensors& optimizer) {
  NamedTensors out;
  for (auto& [name, t] : model) out.emplace_back("model." + name, t);
  for (auto& [name, t] : optimizer) out.emplace_back("opt." + name, t);
  return out;
}

TEST(Checkpoint, InterruptedAndResumedRunIsBitIdentical) {
  const NamedTensors& expected = reference_final_state();
  const std::string dir = scratch_dir("in_process");
  for (int64_t k : {1, 5, 8, 13, 31}) {  // mid-epoch, right at an epoch start, the last step
    const std::string path = dir + "/ckpt.safetensors";
    {
      std::unique_ptr<TrainRun> run = make_run();
      train(*run, /*stop_at=*/k);
      save_checkpoint(path, capture(*run));
    }                    // everything destroyed
    manual_seed(12345);  // whatever the process did meanwhile
    std::unique_ptr<TrainRun> resumed = make_run();
    restore(*resumed, load_checkpoint(path));
    EXPECT_EQ(resumed->step, k);
    train(*resumed);
    EXPECT_TRUE(bit_identical(
        final_state_of(resumed->model->state_dict(), resumed->optimizer->state_dict()), expected))
        << "interrupted before step " << k;
  }
}

TEST(Checkpoint, ResumeWithoutRngStateDiverges) {  // the test above would notice a lost part
  const NamedTensors& expected = reference_final_state();
  const std::string path = scratch_dir("no_rng") + "/ckpt.safetensors";
  {
    std::unique_ptr<TrainRun> run = make_run();
    train(*run, 10);
    save_checkpoint(path, capture(*run));
  }
  std::unique_ptr<TrainRun> resumed = make_run();
  TrainingState state = load_checkpoint(path);
  restore(*resumed, state);
  manual_seed(12345);  // dropout masks differ from here on
  train(*resumed);
  EXPECT_FALSE(bit_identical(
      final_state_of(resumed->model->state_dict(), resumed->optimizer->state_dict()), expected));
}

// ---- across a process boundary, with SIGKILL

constexpr const char* kChildDirEnv = "QAT_CHECKPOINT_CHILD_DIR";

// The child process (main() runs it instead of the tests when the parent set kChildDirEnv):
// resumes from the directory's newest checkpoint (or starts afresh) and trains to the end,
// checkpointing after every step.
int run_child(const std::string& dir) {
  CheckpointDir checkpoints(dir, CheckpointDirOptions().keep_last(2));
  std::unique_ptr<TrainRun> run = make_run();
  if (std::optional<TrainingState> state = checkpoints.load_latest()) restore(*run, *state);
  train(*run, -1, [&](const TrainRun& r) {
    checkpoints.save(capture(r));
    std::this_thread::sleep_for(std::chrono::milliseconds(15));  // room for the parent's kill
  });
  return 0;
}

// Re-executes this test binary as the child (exec: a forked copy of a process running
// OpenMP and loader threads must not go on using them).
pid_t spawn_child(const std::string& dir) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    // The child must not write the parent's test.xml or touch its premature-exit marker.
    if (entry.rfind("XML_OUTPUT_FILE=", 0) == 0 || entry.rfind("GTEST_OUTPUT=", 0) == 0 ||
        entry.rfind("TEST_PREMATURE_EXIT_FILE=", 0) == 0 || entry.rfind(kChildDirEnv, 0) == 0) {
      continue;
    }
    env.push_back(entry);
  }
  env.push_back(std::string(kChildDirEnv) + "=" + dir);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::string name = "checkpoint_test_child";
  char* argv[] = {name.data(), nullptr};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execve("/proc/self/exe", argv, envp.data());
    ::_exit(127);
  }
  return pid;
}

int64_t newest_step(const CheckpointDir& checkpoints) {
  const std::vector<std::string> paths = checkpoints.list();
  if (paths.empty()) return -1;
  const std::string name = fs::path(paths.back()).filename().string();  // ckpt-<step>.safetensors
  return std::stoll(name.substr(5));
}

TEST(Checkpoint, KilledProcessResumesBitIdentical) {
  const NamedTensors& expected = reference_final_state();
  const std::string dir = scratch_dir("killed");
  CheckpointDir checkpoints(dir, CheckpointDirOptions().keep_last(2));
  int kills = 0;
  for (int64_t kill_after : {3, 11, 20, -1}) {  // -1: let the last child finish
    const pid_t child = spawn_child(dir);
    ASSERT_GT(child, 0) << std::strerror(errno);
    int status = 0;
    pid_t reaped = 0;
    if (kill_after >= 0) {
      while (newest_step(checkpoints) < kill_after &&
             (reaped = ::waitpid(child, &status, WNOHANG)) == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (reaped == 0) ::kill(child, SIGKILL);  // at whatever the child is doing now
    }
    if (reaped == 0) reaped = ::waitpid(child, &status, 0);
    ASSERT_EQ(reaped, child);
    if (kill_after >= 0) {
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "the child ended before the kill after step " << kill_after;
      kills += WIFSIGNALED(status);
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "the last child failed, status " << status;
    }
  }
  EXPECT_EQ(kills, 3);
  std::optional<TrainingState> final_state = checkpoints.load_latest();
  ASSERT_TRUE(final_state.has_value());
  EXPECT_EQ(final_state->step, kEpochs * 8);
  EXPECT_EQ(final_state->metadata.at("config_hash"), "abc123");
  EXPECT_EQ(checkpoints.list().size(), 2u);  // keep_last, and no temp files counted

  // The child's last checkpoint, taken after the last step but before the epoch's scheduler
  // step: resuming it here just finishes the epoch.
  std::unique_ptr<TrainRun> loaded = make_run();
  restore(*loaded, *final_state);
  train(*loaded);
  EXPECT_TRUE(bit_identical(
      final_state_of(loaded->model->state_dict(), loaded->optimizer->state_dict()), expected));
}

// ---- file format, corruption, pruning

TrainingState small_state(int64_t step) {
  std::unique_ptr<TrainRun> run = make_run();
  run->step = step;
  run->epoch = step / 8;
  run->step_in_epoch = step % 8;
  TrainingState state = capture(*run);
  state.metadata["target"] = "tensorrt";
  return state;
}

TEST(Checkpoint, RoundTripKeepsEveryPart) {
  const std::string path = scratch_dir("round_trip") + "/c.safetensors";
  const TrainingState saved = small_state(13);
  save_checkpoint(path, saved);
  const TrainingState loaded = load_checkpoint(path);
  EXPECT_TRUE(bit_identical(loaded.model, saved.model));
  EXPECT_TRUE(bit_identical(loaded.optimizer, saved.optimizer));
  EXPECT_TRUE(bit_identical(loaded.scheduler, saved.scheduler));
  ASSERT_EQ(loaded.rng.size(), 1u);
  EXPECT_TRUE(bit_identical({{"default", loaded.rng.at("default")}},
                            {{"default", saved.rng.at("default")}}));
  EXPECT_EQ(loaded.epoch, 1);
  EXPECT_EQ(loaded.step, 13);
  EXPECT_EQ(loaded.step_in_epoch, 5);
  EXPECT_EQ(loaded.metadata, saved.metadata);

  // Plain safetensors underneath: namespaced keys, ints and strings in the metadata.
  SafetensorsMetadata metadata;
  const NamedTensors raw = load_safetensors(path, &metadata);
  EXPECT_EQ(raw.front().first, "model.0.weight");
  EXPECT_EQ(metadata.at("qat.step"), "13");
  EXPECT_EQ(metadata.at("meta.target"), "tensorrt");
  EXPECT_EQ(metadata.at("qat.crc32").size(), 8u);
  bool has_bn_counter = false;
  for (const auto& [name, t] : raw) {
    if (name == "model.1.num_batches_tracked") has_bn_counter = t.dtype() == DType::kInt64;
  }
  EXPECT_TRUE(has_bn_counter);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string load_error(const std::string& path) {
  try {
    load_checkpoint(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Offset of the first byte of tensor data: after the u64 header length and the header.
size_t data_start(const std::string& bytes) {
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  return 8 + static_cast<size_t>(header);
}

TEST(Checkpoint, RejectsTruncatedAndBitFlippedFiles) {
  const std::string dir = scratch_dir("corrupt");
  const std::string path = dir + "/c.safetensors";
  save_checkpoint(path, small_state(3));
  const std::string good = read_file(path);

  write_file(path, good.substr(0, good.size() / 2));
  std::string error = load_error(path);
  EXPECT_NE(error.find("checkpoint '" + path + "' is unreadable"), std::string::npos) << error;

  for (size_t offset : {data_start(good), data_start(good) + 77, good.size() - 1}) {
    std::string flipped = good;
    flipped[offset] ^= 0x10;  // one bit of tensor data
    write_file(path, flipped);
    error = load_error(path);
    EXPECT_NE(error.find("checkpoint '" + path + "' is corrupted: CRC32 mismatch"),
              std::string::npos)
        << "offset " << offset << ": " << error;
  }
  std::string header_flip = good;  // a digit of "qat.step": still valid JSON
  const size_t step_at = header_flip.find("\"qat.step\":\"3\"");
  ASSERT_NE(step_at, std::string::npos);
  header_flip[step_at + 12] = '4';
  write_file(path, header_flip);
  EXPECT_NE(load_error(path).find("CRC32 mismatch"), std::string::npos);

  save_safetensors(path, {{"w", Tensor::zeros({2})}});  // valid safetensors, not a checkpoint
  EXPECT_NE(load_error(path).find("not a qat training checkpoint"), std::string::npos);
}

TEST(Checkpoint, LoadLatestFallsBackToThePreviousCheckpoint) {
  const std::string dir = scratch_dir("fallback");
  CheckpointDir checkpoints(dir, CheckpointDirOptions().keep_last(3));
  std::vector<std::string> warnings;
  EXPECT_FALSE(checkpoints.load_latest(&warnings).has_value());  // empty: a fresh start
  std::vector<std::string> paths;
  for (int64_t step : {2, 4, 6}) paths.push_back(checkpoints.save(small_state(step)));
  EXPECT_EQ(checkpoints.list(), paths);
  EXPECT_EQ(checkpoints.load_latest()->step, 6);

  const std::string newest = read_file(paths[2]);
  write_file(paths[2], newest.substr(0, newest.size() - 100));  // killed mid-copy, say
  std::optional<TrainingState> state = checkpoints.load_latest(&warnings);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 4);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("warning: checkpoint '" + paths[2] + "' is unreadable"),
            std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("falling back to '" + paths[1] + "'"), std::string::npos);

  std::string middle = read_file(paths[1]);
  middle[data_start(middle) + 5] ^= 0x01;
  write_file(paths[1], middle);
  warnings.clear();
  state = checkpoints.load_latest(&warnings);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 2);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[1].find("CRC32 mismatch"), std::string::npos) << warnings[1];

  write_file(paths[0], "");
  try {
    checkpoints.load_latest();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("none of the 3 checkpoints in '" + dir + "' is usable"), std::string::npos)
        << what;
  }
}

TEST(Checkpoint, KeepLastAndKeepBestPrune) {
  const std::string dir = scratch_dir("prune");
  CheckpointDir last_two(dir, CheckpointDirOptions().keep_last(2));
  write_file(dir + "/ckpt-00000009.safetensors.tmp.999999", "left by a killed writer");
  write_file(dir + "/notes.txt", "not ours");
  for (int64_t step = 1; step <= 5; ++step) last_two.save(small_state(step));
  EXPECT_EQ(last_two.list(), (std::vector<std::string>{dir + "/ckpt-00000004.safetensors",
                                                       dir + "/ckpt-00000005.safetensors"}));
  EXPECT_FALSE(fs::exists(dir + "/ckpt-00000009.safetensors.tmp.999999"));
  EXPECT_TRUE(fs::exists(dir + "/notes.txt"));

  const std::string best_dir = scratch_dir("prune_best");
  CheckpointDir best(best_dir, CheckpointDirOptions().keep_last(2).keep_best(true));
  const double accuracy[] = {0.5, 0.9, 0.1, 0.2, 0.3};
  for (int64_t step = 1; step <= 5; ++step) best.save(small_state(step), accuracy[step - 1]);
  EXPECT_EQ(best.list(), (std::vector<std::string>{best_dir + "/ckpt-00000002.safetensors",
                                                   best_dir + "/ckpt-00000004.safetensors",
                                                   best_dir + "/ckpt-00000005.safetensors"}));
  EXPECT_EQ(best.best(), best_dir + "/ckpt-00000002.safetensors");

  CheckpointDir lowest(best_dir,
                       CheckpointDirOptions().keep_last(1).keep_best(true).higher_is_better(false));
  lowest.save(small_state(6), 0.05);  // a loss: lower is better, and the newest is the best
  EXPECT_EQ(lowest.list(), (std::vector<std::string>{best_dir + "/ckpt-00000006.safetensors"}));

  EXPECT_THROW(CheckpointDir(dir, CheckpointDirOptions().keep_last(0)), Error);
}

TEST(Checkpoint, SavingAnOlderStepDropsTheAbandonedNewerOnes) {
  const std::string dir = scratch_dir("rewind");
  CheckpointDir checkpoints(dir, CheckpointDirOptions().keep_last(2));
  checkpoints.save(small_state(5));
  checkpoints.save(small_state(6));
  write_file(checkpoints.list().back(), "damaged");  // a run then resumes from step 5...
  EXPECT_EQ(checkpoints.load_latest()->step, 5);
  const std::string path = checkpoints.save(small_state(3));      // ...or, here, from further back
  EXPECT_EQ(checkpoints.list(), std::vector<std::string>{path});  // 5 and 6 were the future
  EXPECT_EQ(checkpoints.load_latest()->step, 3);
}

}  // namespace
}  // namespace qat::nn

int main(int argc, char** argv) {
  if (const char* dir = std::getenv(qat::nn::kChildDirEnv)) return qat::nn::run_child(dir);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
