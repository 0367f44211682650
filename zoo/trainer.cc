#include "zoo/trainer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/autograd.h"
#include "core/check.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/random.h"
#include "core/serialize.h"
#include "core/threads.h"
#include "exporters/onnx.h"
#include "exporters/tnn_export.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "nn/checkpoint.h"
#include "nn/data/data_loader.h"
#include "nn/lr_scheduler.h"
#include "nn/optim.h"
#include "quant/conv_bn_relu.h"
#include "quant/qat_module.h"
#include "zoo/config_reader.h"
#include "zoo/googlenet.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"

namespace qat::zoo {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr int64_t kDefaultCalibrationBatches = 16;
constexpr double kAuxLossWeight = 0.3;  // torchvision's GoogLeNet recipe

// Set by SIGINT / SIGTERM; the loop checkpoints after the current step and returns.
std::atomic<bool> g_stop_requested{false};

extern "C" void request_stop(int) { g_stop_requested.store(true); }

// Installs request_stop for SIGINT and SIGTERM while a run is in progress, restoring the
// previous handlers afterwards (a second Ctrl-C then kills as usual once the run returns).
class StopSignals {
 public:
  StopSignals() {
    g_stop_requested.store(false);
    struct sigaction action = {};
    action.sa_handler = request_stop;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &old_int_);
    ::sigaction(SIGTERM, &action, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ = {}, old_term_ = {};
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string format_duration(double seconds) {
  const int64_t total = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                  static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  }
  return text;
}

// FNV-1a, 64 bit: a stable fingerprint of the settings that decide the trained weights.
std::string fingerprint(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(hash));
  return out;
}

// The config file without what may change between a run and its resumption: where files go,
// how often progress is logged and how much of the test split is evaluated.
std::string config_fingerprint(const std::string& config_path) {
  Json json = load_config_file(config_path);
  json.erase("export");
  json.erase("checkpoint");
  if (json.contains("train") && json["train"].is_object()) {
    for (const char* key : {"out_dir", "log_every", "eval_batches", "final_eval_batches"})
      json["train"].erase(key);
  }
  return fingerprint(json.dump());
}

// ---- output

// The live progress line on a terminal, plain lines otherwise.
class Progress {
 public:
  Progress(std::FILE* out, int64_t log_every)
      : out_(out), log_every_(log_every), live_(::isatty(::fileno(out)) != 0) {}

  // Prints `line` now: a message between progress updates.
  void line(const std::string& text) {
    end_live_line();
    std::fprintf(out_, "%s\n", text.c_str());
    std::fflush(out_);
  }

  // Whether the update after `step` is shown: every log_every steps, or on a terminal at most
  // five times a second; always at the last step of an epoch. The caller formats the text
  // only then.
  bool due(int64_t step, bool epoch_end) const {
    if (epoch_end) return true;
    return live_ ? seconds_since(last_draw_) >= 0.2 : step % log_every_ == 0;
  }

  // Shows a progress text: rewrites the live line on a terminal, else prints a line.
  void show(const std::string& text) {
    if (!live_) {
      line(text);
      return;
    }
    last_draw_ = Clock::now();
    std::fprintf(out_, "\r%s\033[K", text.c_str());
    std::fflush(out_);
    drawn_ = true;
  }

  // Progress of an evaluation: live on a terminal, else a line per quarter of the batches.
  EvalProgress evaluation(const std::string& what) {
    return [this, what, start = Clock::now()](int64_t done, int64_t total, int64_t images) {
      const bool quarter = total >= 4 && done % ((total + 3) / 4) == 0;
      const bool last = done == total;
      if (!(live_ ? last || seconds_since(last_draw_) >= 0.2 : quarter || last)) return;
      char text[160];
      std::snprintf(text, sizeof text, "evaluating %s: batch %lld/%lld, %lld images, %.0f img/s",
                    what.c_str(), static_cast<long long>(done), static_cast<long long>(total),
                    static_cast<long long>(images),
                    static_cast<double>(images) / std::max(seconds_since(start), 1e-9));
      show(text);
      if (last) end_live_line();
    };
  }

  void end_live_line() {
    if (!drawn_) return;
    std::fprintf(out_, "\n");
    drawn_ = false;
  }

 private:
  std::FILE* out_;
  int64_t log_every_;
  bool live_;
  bool drawn_ = false;
  Clock::time_point last_draw_ = Clock::now() - std::chrono::seconds(1);
};

// metrics.jsonl: one JSON object per line, appended and flushed per record. A resumed run
// first drops the records of steps after its checkpoint (the killed run's lost work), so the
// log reads as one uninterrupted run.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, std::optional<int64_t> resume_step) : path_(path) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::string kept;
    if (resume_step) {
      std::ifstream in(path);
      std::string record;
      while (std::getline(in, record)) {
        const Json json = Json::parse(record, nullptr, /*allow_exceptions=*/false);
        if (json.is_object() && json.value("step", int64_t{0}) <= *resume_step)
          kept += record + "\n";
      }
    }
    write_file_atomically(path, kept);
    file_ = std::fopen(path.c_str(), "a");
    QAT_CHECK(file_ != nullptr, "cannot open the metrics log ", path);
  }
  ~MetricsLog() { std::fclose(file_); }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(const Json& record) {
    std::fprintf(file_, "%s\n", record.dump().c_str());
    std::fflush(file_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

Json eval_json(const EvalResult& r) {
  return {{"images", r.images}, {"top1", r.top1}, {"top5", r.top5}, {"loss", r.loss}};
}

// ---- optimization

// Adam and AdamW take the same settings (AdamW decouples the weight decay).
template <class Adam, class Options>
std::unique_ptr<nn::Optimizer> make_adam(std::vector<Tensor> params, const OptimizerConfig& c,
                                         double lr) {
  return std::make_unique<Adam>(std::move(params), Options()
                                                       .lr(lr)
                                                       .betas({c.betas.first, c.betas.second})
                                                       .eps(c.eps)
                                                       .weight_decay(c.weight_decay));
}

std::unique_ptr<nn::Optimizer> make_optimizer(std::vector<Tensor> params, const OptimizerConfig& c,
                                              double lr) {
  switch (c.kind) {
    case OptimizerConfig::Kind::kSgd:
      return std::make_unique<nn::SGD>(std::move(params), nn::SGDOptions(lr)
                                                              .momentum(c.momentum)
                                                              .nesterov(c.nesterov)
                                                              .weight_decay(c.weight_decay));
    case OptimizerConfig::Kind::kAdam:
      return make_adam<nn::Adam, nn::AdamOptions>(std::move(params), c, lr);
    case OptimizerConfig::Kind::kAdamW:
      return make_adam<nn::AdamW, nn::AdamWOptions>(std::move(params), c, lr);
  }
  QAT_CHECK(false, "make_optimizer: invalid OptimizerConfig::Kind");
  return nullptr;
}

// The per-step schedule of one phase of `steps` optimizer steps, stepped once per step.
std::unique_ptr<nn::LRScheduler> make_schedule(nn::Optimizer& optimizer, const LrScheduleConfig& c,
                                               int64_t steps, int64_t steps_per_epoch,
                                               bool warmup) {
  const int64_t warmup_steps =
      warmup ? std::min<int64_t>(
                   steps - 1, static_cast<int64_t>(std::llround(c.warmup_epochs * steps_per_epoch)))
             : 0;
  const int64_t decay_steps = std::max<int64_t>(1, steps - std::max<int64_t>(0, warmup_steps));
  std::shared_ptr<nn::LRScheduler> decay;
  switch (c.kind) {
    case LrScheduleConfig::Kind::kCosine:
      decay = std::make_shared<nn::CosineAnnealingLR>(optimizer, decay_steps);
      break;
    case LrScheduleConfig::Kind::kStep:
      decay = std::make_shared<nn::StepLR>(optimizer, c.step_epochs * steps_per_epoch, c.gamma);
      break;
    case LrScheduleConfig::Kind::kConstant:
      decay = std::make_shared<nn::LinearLR>(optimizer, 1.0, 1.0, 1);
      break;
  }
  if (warmup_steps <= 0) {
    // SequentialLR with one scheduler keeps one state_dict layout for both cases.
    return std::make_unique<nn::SequentialLR>(
        optimizer, std::vector<std::shared_ptr<nn::LRScheduler>>{decay}, std::vector<int64_t>{});
  }
  auto ramp = std::make_shared<nn::LinearLR>(optimizer, c.warmup_start_factor, 1.0, warmup_steps);
  return std::make_unique<nn::SequentialLR>(
      optimizer, std::vector<std::shared_ptr<nn::LRScheduler>>{ramp, decay},
      std::vector<int64_t>{warmup_steps});
}

// ---- the run

enum class Phase { kFloat, kQat };

const char* phase_name(Phase phase) { return phase == Phase::kFloat ? "float" : "qat"; }

class Trainer {
 public:
  Trainer(const Config& config, const std::string& config_path, const TrainOptions& options)
      : config_(config),
        path_(config_path),
        options_(options),
        train_(config.train.value()),
        data_(config.data.value()),
        out_dir_(train_.out_dir),
        progress_(options.out, train_.log_every) {}

  TrainResult run();

 private:
  int64_t qat_start() const { return config_.qat ? config_.qat->start_epoch : train_.epochs; }
  Phase phase_of_epoch(int64_t epoch) const {
    return epoch >= qat_start() ? Phase::kQat : Phase::kFloat;
  }
  int64_t phase_epochs(Phase phase) const {
    return phase == Phase::kFloat ? qat_start() : train_.epochs - qat_start();
  }

  void set_up();
  void start_phase(Phase phase);  // optimizer and schedule over the phase's model
  void enter_qat(bool calibrate_now);
  void apply_freeze_schedule(int64_t epoch);
  nn::Module& trained_module() {
    return qat_model_ ? static_cast<nn::Module&>(*qat_model_) : *model_;
  }
  Tensor loss_of(const Tensor& logits, const Tensor& labels);
  // What one epoch's training loop ended with.
  struct EpochOutcome {
    bool stopped_mid_epoch = false;  // interrupted before the epoch's last step (checkpointed)
    bool stop_requested = false;     // interrupted at its last step: stop after the epoch end
    double train_loss = 0, train_acc = 0;
  };
  // Trains the rest of `epoch` (from the batch step_ says).
  EpochOutcome train_epoch(int64_t epoch);
  // The float phase's end: evaluate and save the float model, prepare and calibrate for QAT.
  void begin_qat(int64_t epoch);
  nn::TrainingState state(int64_t epoch, int64_t step_in_epoch) const;
  std::string save_checkpoint(int64_t epoch, int64_t step_in_epoch,
                              std::optional<double> metric = std::nullopt);
  void restore(const nn::TrainingState& state);
  // The final files and the accuracy table.
  void finish(TrainResult& result);
  std::vector<AccuracyRow> export_and_evaluate(TrainResult& result);

  const Config& config_;
  std::string path_;
  TrainOptions options_;
  const TrainConfig& train_;
  const DataConfig& data_;
  std::string out_dir_;
  Progress progress_;

  std::string fingerprint_;
  std::shared_ptr<nn::Module> model_;                   // the float model
  std::shared_ptr<graph::QuantizableModel> qat_model_;  // from qat.start_epoch on
  std::unique_ptr<nn::data::DataLoader> train_loader_, test_loader_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  std::unique_ptr<nn::LRScheduler> schedule_;
  CheckpointConfig checkpoint_config_;
  std::unique_ptr<nn::CheckpointDir> checkpoints_;
  std::unique_ptr<MetricsLog> metrics_;
  int64_t steps_per_epoch_ = 0;
  int64_t step_ = 0;  // optimizer steps of the run
  int64_t steps_this_process_ = 0;
  std::optional<EvalResult> float_result_;  // the float model at the end of its phase
  std::string last_checkpoint_;
  Clock::time_point start_ = Clock::now();
  int64_t start_step_ = 0;  // step_ when this process started training (for images/s, ETA)
};

void Trainer::set_up() {
  if (train_.threads > 0) set_num_threads(static_cast<int>(train_.threads));
  manual_seed(static_cast<uint64_t>(train_.seed));
  model_ = create_model(config_.model);
  if (!config_.model.pretrained.empty()) {
    if (!std::filesystem::exists(config_.model.pretrained)) {
      throw Error(path_ + ": model.pretrained: no such file '" + config_.model.pretrained +
                  "' (relative paths are relative to the working directory)");
    }
    const std::vector<std::string> skipped = load_checkpoint(*model_, config_.model.pretrained);
    progress_.line("loaded " + config_.model.pretrained +
                   (skipped.empty()
                        ? ""
                        : " (skipped " + std::to_string(skipped.size()) + " aux-head tensors)"));
  }
  auto train_set = make_dataset(data_, config_.model, /*train=*/true);
  train_loader_ = std::make_unique<nn::data::DataLoader>(
      train_set, nn::data::DataLoaderOptions()
                     .batch_size(data_.batch_size)
                     .shuffle(true)
                     .drop_last(true)
                     .seed(static_cast<uint64_t>(train_.seed))
                     .num_workers(data_.workers)
                     .transforms(make_transforms(data_, /*train=*/true)));
  steps_per_epoch_ = train_loader_->num_batches();
  if (train_.max_steps_per_epoch)
    steps_per_epoch_ = std::min(steps_per_epoch_, *train_.max_steps_per_epoch);
  if (steps_per_epoch_ < 1) {
    throw Error(path_ + ": data.batch_size " + std::to_string(data_.batch_size) + " exceeds the " +
                std::to_string(train_set->size()) + " training images (the last partial batch " +
                "is dropped, so no step would run)");
  }
  test_loader_ = make_loader(data_, config_.model, /*train=*/false);
  if (config_.qat && config_.model.input_shape.empty()) {
    throw Error(path_ + ": model.input_shape is needed to trace the model for QAT, e.g. " +
                "[1, 1, 28, 28]");
  }
}

void Trainer::start_phase(Phase phase) {
  const double lr = phase == Phase::kFloat ? train_.optimizer.lr
                                           : config_.qat->lr.value_or(train_.optimizer.lr * 0.1);
  optimizer_ = make_optimizer(trained_module().parameters(), train_.optimizer, lr);
  schedule_ = make_schedule(*optimizer_, train_.lr_schedule, phase_epochs(phase) * steps_per_epoch_,
                            steps_per_epoch_,
                            /*warmup=*/phase == Phase::kFloat);
}

void Trainer::enter_qat(bool calibrate_now) {
  qat_model_ = prepare_model(model_, config_, path_);
  if (!calibrate_now) return;
  const std::unique_ptr<nn::data::DataLoader> loader =
      make_calibration_loader(data_, config_.model);
  const int64_t batches = config_.qat->calibration_batches.value_or(kDefaultCalibrationBatches);
  const int64_t ran =
      calibrate(*qat_model_, *loader, batches, config_.qat->calibrator, config_.model.input_shape);
  progress_.line("prepared " + config_.model.name + " for " +
                 quant::target_name(config_.qat->qconfig.target) + "; calibrated (" +
                 calibrator_name(config_.qat->calibrator) + ") on " + std::to_string(ran) +
                 " batches");
}

void Trainer::apply_freeze_schedule(int64_t epoch) {
  const QatConfig& qat = *config_.qat;
  if (qat.freeze_bn_epoch && epoch >= *qat.freeze_bn_epoch) quant::freeze_bn_stats(*qat_model_);
  if (qat.freeze_observer_epoch && epoch >= *qat.freeze_observer_epoch)
    quant::disable_observer(*qat_model_);
}

Tensor Trainer::loss_of(const Tensor& logits, const Tensor& labels) {
  Tensor loss = ops::cross_entropy(logits, labels);
  // GoogLeNet's aux heads train with the float model (the QAT graph is the main path).
  if (qat_model_ == nullptr) {
    if (const auto* googlenet = dynamic_cast<const GoogLeNet*>(model_.get())) {
      const GoogLeNetAuxLogits& aux = googlenet->last_aux_logits();
      if (aux.aux1.defined()) {
        Tensor aux_loss =
            ops::add(ops::cross_entropy(aux.aux1, labels), ops::cross_entropy(aux.aux2, labels));
        loss = ops::add(loss, ops::mul(aux_loss, kAuxLossWeight));
      }
    }
  }
  return loss;
}

nn::TrainingState Trainer::state(int64_t epoch, int64_t step_in_epoch) const {
  nn::TrainingState s;
  s.model = qat_model_ ? qat_model_->state_dict() : model_->state_dict();
  s.optimizer = optimizer_->state_dict();
  s.scheduler = schedule_->state_dict();
  s.rng["default"] = get_rng_state();
  s.epoch = epoch;
  s.step = step_;
  s.step_in_epoch = step_in_epoch;
  s.metadata["phase"] = phase_name(qat_model_ ? Phase::kQat : Phase::kFloat);
  s.metadata["config"] = fingerprint_;
  s.metadata["model"] = config_.model.name;
  if (float_result_) s.metadata["float_result"] = eval_json(*float_result_).dump();
  return s;
}

std::string Trainer::save_checkpoint(int64_t epoch, int64_t step_in_epoch,
                                     std::optional<double> metric) {
  last_checkpoint_ = checkpoints_->save(state(epoch, step_in_epoch), metric);
  return last_checkpoint_;
}

void Trainer::restore(const nn::TrainingState& s) {
  const auto meta = [&](const std::string& key) {
    const auto it = s.metadata.find(key);
    return it == s.metadata.end() ? std::string() : it->second;
  };
  if (meta("config") != fingerprint_) {
    throw Error("cannot resume from " + checkpoints_->dir() + ": its checkpoints were written " +
                "with other settings than " + path_ + " (model, data, qat or train changed). " +
                "Resume with the config of that run, or start a new run with another " +
                "checkpoint.dir");
  }
  if (const std::string result = meta("float_result"); !result.empty()) {
    const Json json = Json::parse(result);
    float_result_ = EvalResult{json.at("images").get<int64_t>(), json.at("top1").get<double>(),
                               json.at("top5").get<double>(), json.at("loss").get<double>()};
  }
  const Phase phase = meta("phase") == "qat" ? Phase::kQat : Phase::kFloat;
  if (phase == Phase::kQat) enter_qat(/*calibrate_now=*/false);
  start_phase(phase);
  trained_module().load_state_dict(s.model);
  optimizer_->load_state_dict(s.optimizer);
  schedule_->load_state_dict(s.scheduler);
  set_rng_state(s.rng.at("default"));
  step_ = s.step;
}

std::string percent(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f%%", value);
  return text;
}

std::string describe(const EvalResult& r) {
  char text[128];
  std::snprintf(text, sizeof text, "top-1 %.2f%%, top-5 %.2f%%, loss %.4f (%lld images)", r.top1,
                r.top5, r.loss, static_cast<long long>(r.images));
  return text;
}

Trainer::EpochOutcome Trainer::train_epoch(int64_t epoch) {
  nn::Module& module = trained_module();
  module.train();
  const Phase phase = phase_of_epoch(epoch);
  const int64_t total_steps = train_.epochs * steps_per_epoch_;
  EpochOutcome outcome;
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  for (int64_t step_in_epoch = step_ - epoch * steps_per_epoch_; step_in_epoch < steps_per_epoch_;
       ++step_in_epoch) {
    std::optional<nn::data::Batch> batch = train_loader_->next();
    QAT_CHECK(batch.has_value(), "the training data ended before batch ", step_in_epoch + 1,
              " of epoch ", epoch + 1);
    if (options_.on_batch) options_.on_batch(step_ + 1, batch->images);
    const Tensor logits = module.forward(batch->images);
    Tensor loss = loss_of(logits, batch->labels);
    const double loss_value = loss.item();
    if (!std::isfinite(loss_value)) {
      progress_.end_live_line();
      throw Error("the loss is " + std::string(std::isnan(loss_value) ? "NaN" : "infinite") +
                  " at step " + std::to_string(step_ + 1) + " (epoch " + std::to_string(epoch + 1) +
                  ", batch " + std::to_string(step_in_epoch + 1) +
                  "); training stopped without saving. The last good checkpoint is " +
                  (last_checkpoint_.empty() ? std::string("none yet") : last_checkpoint_) +
                  "; check the data and the learning rate, then continue with --resume");
    }
    optimizer_->zero_grad();
    loss.backward();
    optimizer_->step();
    schedule_->step();
    ++step_;
    ++steps_this_process_;
    const int64_t n = batch->labels.numel();
    loss_sum += loss_value * static_cast<double>(n);
    correct += count_top_k(logits, batch->labels, 1);
    seen += n;
    const double running_loss = loss_sum / static_cast<double>(seen);
    const double running_acc = 100.0 * static_cast<double>(correct) / static_cast<double>(seen);

    const double steps_per_s =
        static_cast<double>(step_ - start_step_) / std::max(seconds_since(start_), 1e-9);
    const double images_per_s = steps_per_s * static_cast<double>(data_.batch_size);
    const bool epoch_end = step_in_epoch + 1 == steps_per_epoch_;
    if (progress_.due(step_, epoch_end)) {
      char text[256];
      std::snprintf(
          text, sizeof text,
          "%s epoch %lld/%lld step %lld/%lld loss %.4f acc %.2f%% lr %.3g %.0f img/s "
          "ETA %s",
          phase_name(phase), static_cast<long long>(epoch + 1),
          static_cast<long long>(train_.epochs), static_cast<long long>(step_in_epoch + 1),
          static_cast<long long>(steps_per_epoch_), running_loss, running_acc,
          schedule_->get_last_lr()[0], images_per_s,
          format_duration(static_cast<double>(total_steps - step_) / steps_per_s).c_str());
      progress_.show(text);
    }
    if (step_ % train_.log_every == 0) {
      metrics_->write({{"event", "step"},
                       {"phase", phase_name(phase)},
                       {"epoch", epoch + 1},
                       {"step", step_},
                       {"loss", loss_value},
                       {"running_loss", running_loss},
                       {"running_acc", running_acc},
                       {"lr", schedule_->get_last_lr()[0]},
                       {"images_per_s", images_per_s}});
    }

    const bool stop =
        g_stop_requested.load() ||
        (options_.stop_after_steps && steps_this_process_ >= *options_.stop_after_steps);
    const bool periodic =
        checkpoint_config_.every_steps > 0 && step_ % checkpoint_config_.every_steps == 0;
    if (epoch_end) {
      outcome.stop_requested = stop;  // the epoch end checkpoints anyway
    } else if (stop || periodic) {
      save_checkpoint(epoch, step_in_epoch + 1);
      if (stop) {
        outcome.stopped_mid_epoch = true;
        break;
      }
    }
  }
  outcome.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
  outcome.train_acc =
      100.0 * static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(seen, 1));
  return outcome;
}

void Trainer::begin_qat(int64_t epoch) {
  if (!float_result_) {
    float_result_ = evaluate_module(*model_, *test_loader_, train_.final_eval_batches,
                                    progress_.evaluation("the float model"));
    progress_.line("float model: " + describe(*float_result_));
  }
  std::filesystem::create_directories(out_dir_);
  save_safetensors(out_dir_ + "/float.safetensors", model_->state_dict());
  enter_qat(/*calibrate_now=*/true);
  start_phase(Phase::kQat);
  metrics_->write({{"event", "qat_start"},
                   {"epoch", epoch + 1},
                   {"step", step_},
                   {"float", eval_json(*float_result_)}});
  save_checkpoint(epoch, 0);
}

TrainResult Trainer::run() {
  StopSignals signals;
  TrainResult result;
  fingerprint_ = config_fingerprint(path_);
  set_up();
  checkpoint_config_ = config_.checkpoint.value_or(CheckpointConfig{});
  const std::string dir =
      checkpoint_config_.dir.empty() ? out_dir_ + "/checkpoints" : checkpoint_config_.dir;
  checkpoints_ =
      std::make_unique<nn::CheckpointDir>(dir, nn::CheckpointDirOptions()
                                                   .keep_last(checkpoint_config_.keep_last)
                                                   .keep_best(checkpoint_config_.keep_best));
  std::optional<nn::TrainingState> resumed;
  if (options_.resume) {
    resumed = checkpoints_->load_latest();
    if (!resumed) progress_.line("no checkpoint in " + dir + ": starting from the beginning");
  } else if (!checkpoints_->list().empty()) {
    throw Error(dir + " already holds checkpoints of a run: continue it with --resume, or give " +
                "the new run its own train.out_dir or checkpoint.dir");
  }
  metrics_ = std::make_unique<MetricsLog>(
      out_dir_ + "/metrics.jsonl", resumed ? std::optional<int64_t>(resumed->step) : std::nullopt);

  int64_t epoch = 0;
  if (resumed) {
    restore(*resumed);
    epoch = resumed->epoch;
    last_checkpoint_ = checkpoints_->list().back();
    progress_.line("resumed from " + last_checkpoint_ + ": epoch " + std::to_string(epoch + 1) +
                   ", step " + std::to_string(step_));
  } else if (qat_start() > 0) {
    start_phase(Phase::kFloat);
  }
  start_step_ = step_;
  start_ = Clock::now();
  {
    char text[256];
    std::snprintf(
        text, sizeof text,
        "training %s: %lld epochs (%lld float, %lld QAT%s) x %lld steps, batch %lld, "
        "%d threads",
        config_.model.name.c_str(), static_cast<long long>(train_.epochs),
        static_cast<long long>(qat_start()), static_cast<long long>(train_.epochs - qat_start()),
        config_.qat
            ? (std::string(" for ") + quant::target_name(config_.qat->qconfig.target)).c_str()
            : "",
        static_cast<long long>(steps_per_epoch_), static_cast<long long>(data_.batch_size),
        get_num_threads());
    progress_.line(text);
  }

  for (; epoch < train_.epochs; ++epoch) {
    if (phase_of_epoch(epoch) == Phase::kQat && qat_model_ == nullptr) begin_qat(epoch);
    if (qat_model_) apply_freeze_schedule(epoch);
    train_loader_->start_epoch(epoch, step_ - epoch * steps_per_epoch_);
    const EpochOutcome outcome = train_epoch(epoch);
    if (outcome.stopped_mid_epoch) {
      progress_.line("stopped at step " + std::to_string(step_) + "; saved " + last_checkpoint_ +
                     " (continue with --resume)");
      result.steps = step_;
      result.last_checkpoint = last_checkpoint_;
      return result;
    }
    const EvalResult test =
        evaluate_module(trained_module(), *test_loader_, train_.eval_batches,
                        progress_.evaluation("epoch " + std::to_string(epoch + 1)));
    progress_.line(std::string(phase_name(phase_of_epoch(epoch))) + " epoch " +
                   std::to_string(epoch + 1) + "/" + std::to_string(train_.epochs) +
                   " done: train loss " + std::to_string(outcome.train_loss).substr(0, 6) +
                   ", train acc " + percent(outcome.train_acc) + "; test " + describe(test) +
                   "; elapsed " + format_duration(seconds_since(start_)));
    metrics_->write({{"event", "epoch"},
                     {"phase", phase_name(phase_of_epoch(epoch))},
                     {"epoch", epoch + 1},
                     {"step", step_},
                     {"train_loss", outcome.train_loss},
                     {"train_acc", outcome.train_acc},
                     {"test", eval_json(test)}});
    save_checkpoint(epoch + 1, 0, test.top1);
    if (outcome.stop_requested && epoch + 1 < train_.epochs) {
      progress_.line("stopped at step " + std::to_string(step_) + "; saved " + last_checkpoint_ +
                     " (continue with --resume)");
      result.steps = step_;
      result.last_checkpoint = last_checkpoint_;
      return result;
    }
  }
  finish(result);
  return result;
}

std::vector<AccuracyRow> Trainer::export_and_evaluate(TrainResult& result) {
  std::vector<AccuracyRow> rows;
  const std::string prefix = out_dir_ + "/" + config_.model.name;
  const ExportConfig exports = config_.exports.value_or(ExportConfig{});
  if (qat_model_ == nullptr) {
    rows.push_back({"float", float_result_, ""});
    if (!exports.onnx.empty()) {
      exporters::export_onnx(*model_, config_.model.input_shape, exports.onnx);
      result.exported.push_back(exports.onnx);
      rows.push_back({"exported ONNX (ONNX Runtime)", std::nullopt, ""});
      if (onnx_runtime_available(&rows.back().note)) {
        rows.back().result =
            evaluate_onnx_runtime(exports.onnx, *test_loader_, train_.final_eval_batches,
                                  progress_.evaluation("ONNX Runtime"));
        rows.back().note = exports.onnx;
      }
    }
    return rows;
  }
  rows.push_back({"float", float_result_, "the float model before QAT"});
  quant::disable_observer(*qat_model_);
  rows.push_back({"fake-quant",
                  evaluate_module(*qat_model_, *test_loader_, train_.final_eval_batches,
                                  progress_.evaluation("fake-quant")),
                  "the QAT model, eval mode"});
  const graph::IntModel int_model = graph::convert(*qat_model_);
  rows.push_back(
      {"int8 simulation",
       evaluate_int_model(int_model, graph::SimulateOptions(), *test_loader_,
                          train_.final_eval_batches, progress_.evaluation("int8 simulation")),
       std::string("graph::simulate, ") + quant::target_name(int_model.target) + " arithmetic"});
  if (int_model.target == quant::Target::kTNN) {
    const std::string tnn = exports.tnn.empty() ? prefix + "_tnn" : exports.tnn;
    std::filesystem::create_directories(std::filesystem::path(tnn).parent_path());
    exporters::export_tnn(int_model, tnn);
    result.exported.push_back(tnn + ".tnnproto");
    result.exported.push_back(tnn + ".tnnmodel");
    rows.push_back({"exported TNN (read back)",
                    evaluate_tnn_files(tnn, *test_loader_, train_.final_eval_batches,
                                       progress_.evaluation("TNN files")),
                    tnn + ".tnnproto / .tnnmodel, simulated as TNN's int8 kernels"});
  } else {
    const std::string onnx = exports.onnx.empty()
                                 ? prefix + "_" + quant::target_name(int_model.target) + ".onnx"
                                 : exports.onnx;
    std::filesystem::create_directories(std::filesystem::path(onnx).parent_path());
    exporters::export_onnx(int_model, onnx);
    result.exported.push_back(onnx);
    rows.push_back({"exported ONNX (ONNX Runtime)", std::nullopt, onnx});
    std::string reason;
    if (onnx_runtime_available(&reason)) {
      rows.back().result = evaluate_onnx_runtime(onnx, *test_loader_, train_.final_eval_batches,
                                                 progress_.evaluation("ONNX Runtime"));
    } else {
      rows.back().note = "not run: " + reason;
    }
  }
  return rows;
}

void Trainer::finish(TrainResult& result) {
  std::filesystem::create_directories(out_dir_);
  result.float_weights = out_dir_ + "/float.safetensors";
  if (qat_model_ == nullptr) {
    model_->eval();
    float_result_ = evaluate_module(*model_, *test_loader_, train_.final_eval_batches,
                                    progress_.evaluation("float"));
    save_safetensors(result.float_weights, model_->state_dict());
  } else {
    quant::disable_observer(*qat_model_);
    result.qat_weights = out_dir_ + "/qat.safetensors";
    save_qat_checkpoint(*qat_model_, result.qat_weights);
  }
  progress_.line("evaluating and exporting ...");
  result.table = export_and_evaluate(result);
  Json rows = Json::array();
  for (const AccuracyRow& row : result.table) {
    rows.push_back({{"name", row.name},
                    {"result", row.result ? eval_json(*row.result) : Json()},
                    {"note", row.note}});
  }
  metrics_->write({{"event", "final"}, {"step", step_}, {"table", rows}});
  const std::string table = format_accuracy_table(result.table);
  progress_.line(table);
  result.accuracy_table = out_dir_ + "/accuracy.txt";
  write_file_atomically(result.accuracy_table,
                        config_.model.name + " (" + path_ + ")\n" + table + "\n");
  std::string files = "wrote " + result.float_weights;
  if (!result.qat_weights.empty()) files += ", " + result.qat_weights;
  for (const std::string& file : result.exported) files += ", " + file;
  progress_.line(files + ", " + metrics_->path() + ", " + result.accuracy_table);
  result.completed = true;
  result.steps = step_;
  result.last_checkpoint = last_checkpoint_;
}

}  // namespace

std::string format_accuracy_table(const std::vector<AccuracyRow>& rows) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-30s %8s %8s %8s %8s %8s  %s\n", "model", "images", "top-1",
                "top-5", "loss", "d top-1", "");
  out << line;
  std::optional<double> float_top1;
  for (const AccuracyRow& row : rows) {
    if (row.name == "float" && row.result) float_top1 = row.result->top1;
  }
  for (const AccuracyRow& row : rows) {
    if (!row.result) {
      std::snprintf(line, sizeof line, "%-30s %8s %8s %8s %8s %8s  %s\n", row.name.c_str(), "-",
                    "-", "-", "-", "-", row.note.c_str());
    } else {
      const EvalResult& r = *row.result;
      char delta[16] = "";
      if (float_top1 && row.name != "float")
        std::snprintf(delta, sizeof delta, "%+.2f", r.top1 - *float_top1);
      std::snprintf(line, sizeof line, "%-30s %8lld %7.2f%% %7.2f%% %8.4f %8s  %s\n",
                    row.name.c_str(), static_cast<long long>(r.images), r.top1, r.top5, r.loss,
                    delta, row.note.c_str());
    }
    out << line;
  }
  std::string text = out.str();
  if (!text.empty()) text.pop_back();
  return text;
}

TrainResult train(const Config& config, const std::string& config_path,
                  const TrainOptions& options) {
  if (!config.data) throw Error(config_path + ": no \"data\" section (training needs data)");
  if (!config.train) {
    throw Error(config_path + ": no \"train\" section (it sets at least \"epochs\" and the " +
                "optimizer; see README, \"Config reference\")");
  }
  return Trainer(config, config_path, options).run();
}

}  // namespace qat::zoo
