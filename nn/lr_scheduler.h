#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/optim.h"

// Learning-rate schedules with the values of torch.optim.lr_scheduler (1.13) for
// epoch-by-epoch stepping. Each schedule is a closed form lr(base_lr, epoch), PyTorch's
// _get_closed_form_lr; see the PyTorch docs for each formula.
namespace qat::nn {

// Base class. The constructor applies epoch 0 (as PyTorch's constructors do); each step()
// advances one epoch and writes the new lr into every param group of the optimizer. base_lr is
// the group's initial_lr, which the first scheduler built on the optimizer sets to its lr.
// The optimizer must outlive the scheduler.
class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  void step();
  // Jumps to `epoch` and sets its lrs: resuming from a checkpoint.
  void set_last_epoch(int64_t epoch);
  int64_t last_epoch() const { return last_epoch_; }
  // The lrs last written, one per param group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  Optimizer& optimizer() const { return optimizer_; }

  // The class name, as PyTorch prints it ("StepLR").
  virtual std::string type_name() const = 0;
  // The learning rate at `epoch` of a group whose initial lr is base_lr.
  virtual double lr_at(double base_lr, int64_t epoch) const = 0;

  // What PyTorch's scheduler.state_dict() holds, as tensors: "last_epoch" (0-d int64),
  // "base_lrs" and "_last_lr" (float64, one per param group) and the schedule's
  // hyperparameters under their PyTorch names ("step_size", "gamma", "T_max", ...; int64 or
  // float64, "milestones" a 1-d int64 tensor). SequentialLR adds "_milestones" and each
  // scheduler's entries under "_schedulers.<i>.".
  NamedTensors state_dict() const;
  // Restores a state_dict() of the same kind of scheduler: position, base lrs, last lrs and,
  // as in PyTorch, the hyperparameters. Like PyTorch it leaves the optimizer's lrs alone
  // (Optimizer::load_state_dict restores those), so the next step() continues the schedule.
  // Missing, unexpected or mis-shaped keys throw and leave the scheduler as it was.
  void load_state_dict(const NamedTensors& state_dict);

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // Derived constructors call this last (lr_at is virtual, so the object must be complete).
  void initial_step() { set_last_epoch(0); }

  // Reads state_dict entries by key, remembering which were used, with errors naming the key.
  class StateReader {
   public:
    StateReader(const NamedTensors& state_dict, std::string who);
    const Tensor& at(const std::string& key);
    int64_t get_int(const std::string& key);
    double get_double(const std::string& key);
    std::vector<int64_t> get_ints(const std::string& key);  // a 1-d int64 tensor
    // The entries under "<prefix>" with the prefix removed (they count as used).
    NamedTensors sub(const std::string& prefix);
    void done() const;  // throws on keys nobody read

   private:
    const NamedTensors& sd_;
    std::string who_;
    std::vector<bool> used_;
  };

  // The schedule's own entries, appended to / read from the common ones.
  virtual void save_hyperparameters(NamedTensors& out) const = 0;
  virtual void load_hyperparameters(StateReader& in) = 0;

 private:
  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  std::vector<double> last_lr_;
};

// lr = base_lr * gamma^(epoch / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  std::string type_name() const override { return "StepLR"; }
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void save_hyperparameters(NamedTensors& out) const override;
  void load_hyperparameters(StateReader& in) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base_lr * gamma^(number of milestones <= epoch)
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  std::string type_name() const override { return "MultiStepLR"; }
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void save_hyperparameters(NamedTensors& out) const override;
  void load_hyperparameters(StateReader& in) override;

 private:
  std::vector<int64_t> milestones_;  // sorted
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2 (SGDR without
// restarts; past t_max the cosine keeps going, as in PyTorch).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  std::string type_name() const override { return "CosineAnnealingLR"; }
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void save_hyperparameters(NamedTensors& out) const override;
  void load_hyperparameters(StateReader& in) override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// Linear warmup: the factor on base_lr goes linearly from start_factor to end_factor over
// total_iters epochs, then stays at end_factor.
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0,
           int64_t total_iters = 5);
  std::string type_name() const override { return "LinearLR"; }
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void save_hyperparameters(NamedTensors& out) const override;
  void load_hyperparameters(StateReader& in) override;

 private:
  double start_factor_;
  double end_factor_;
  int64_t total_iters_;
};

// Runs schedulers[i] from epoch milestones[i-1] on, restarted at its own epoch 0 there:
// warmup then decay is SequentialLR(opt, {linear, cosine}, {warmup_epochs}). All schedulers
// must drive `optimizer`; afterwards step only the SequentialLR (it uses theirs as formulas).
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  std::string type_name() const override { return "SequentialLR"; }
  double lr_at(double base_lr, int64_t epoch) const override;

 protected:
  void save_hyperparameters(NamedTensors& out) const override;
  void load_hyperparameters(StateReader& in) override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

}  // namespace qat::nn
