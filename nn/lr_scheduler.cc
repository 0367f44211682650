#include "nn/lr_scheduler.h"

#include <algorithm>
#include <cmath>

namespace qat::nn {

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (ParamGroup& group : optimizer_.param_groups()) {
    if (!group.initial_lr) group.initial_lr = *group.lr;  // PyTorch's setdefault('initial_lr')
    base_lrs_.push_back(*group.initial_lr);
  }
}

void LRScheduler::step() { set_last_epoch(last_epoch_ + 1); }

void LRScheduler::set_last_epoch(int64_t epoch) {
  QAT_CHECK(epoch >= 0, "lr scheduler: epoch must be >= 0, got ", epoch);
  std::vector<ParamGroup>& groups = optimizer_.param_groups();
  QAT_CHECK(groups.size() == base_lrs_.size(), "lr scheduler: the optimizer has ", groups.size(),
            " param groups but had ", base_lrs_.size(), " when the scheduler was created");
  last_epoch_ = epoch;
  last_lr_.clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].lr = lr_at(base_lrs_[g], epoch);
    last_lr_.push_back(*groups[g].lr);
  }
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  QAT_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  initial_step();
}

double StepLR::lr_at(double base_lr, int64_t epoch) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
  initial_step();
}

double MultiStepLR::lr_at(double base_lr, int64_t epoch) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) -
                      milestones_.begin();  // bisect_right
  return base_lr * std::pow(gamma_, static_cast<double>(passed));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LRScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
  QAT_CHECK(t_max > 0, "CosineAnnealingLR: t_max must be positive, got ", t_max);
  initial_step();
}

double CosineAnnealingLR::lr_at(double base_lr, int64_t epoch) const {
  const double pi = std::acos(-1.0);
  return eta_min_ +
         (base_lr - eta_min_) * (1 + std::cos(pi * static_cast<double>(epoch) / t_max_)) / 2;
}

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor,
                   int64_t total_iters)
    : LRScheduler(optimizer),
      start_factor_(start_factor),
      end_factor_(end_factor),
      total_iters_(total_iters) {
  QAT_CHECK(start_factor > 0 && start_factor <= 1, "LinearLR: start_factor must be in (0, 1], got ",
            start_factor);
  QAT_CHECK(end_factor >= 0 && end_factor <= 1, "LinearLR: end_factor must be in [0, 1], got ",
            end_factor);
  QAT_CHECK(total_iters > 0, "LinearLR: total_iters must be positive, got ", total_iters);
  initial_step();
}

double LinearLR::lr_at(double base_lr, int64_t epoch) const {
  const double progress =
      static_cast<double>(std::min(total_iters_, epoch)) / static_cast<double>(total_iters_);
  return base_lr * (start_factor_ + (end_factor_ - start_factor_) * progress);
}

SequentialLR::SequentialLR(Optimizer& optimizer,
                           std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(optimizer),
      schedulers_(std::move(schedulers)),
      milestones_(std::move(milestones)) {
  QAT_CHECK(!schedulers_.empty(), "SequentialLR: needs at least one scheduler");
  QAT_CHECK(milestones_.size() + 1 == schedulers_.size(),
            "SequentialLR: expects one milestone fewer than schedulers, got ", schedulers_.size(),
            " schedulers and ", milestones_.size(), " milestones");
  QAT_CHECK(std::is_sorted(milestones_.begin(), milestones_.end()),
            "SequentialLR: milestones must be increasing");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    QAT_CHECK(schedulers_[i] != nullptr && &schedulers_[i]->optimizer() == &optimizer,
              "SequentialLR: scheduler ", i, " does not belong to the given optimizer");
  }
  initial_step();
}

double SequentialLR::lr_at(double base_lr, int64_t epoch) const {
  const size_t index =
      std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
  const int64_t start = index == 0 ? 0 : milestones_[index - 1];
  return schedulers_[index]->lr_at(base_lr, epoch - start);
}

}  // namespace qat::nn
