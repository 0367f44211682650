#include "nn/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace qat::nn {
namespace {

Tensor int_tensor(int64_t value) {
  return Tensor::from_vector(std::vector<int64_t>{value}, Shape{});
}

Tensor double_tensor(double value) { return Tensor::scalar(value, DType::kFloat64); }

Tensor doubles_tensor(const std::vector<double>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
}

Tensor ints_tensor(const std::vector<int64_t>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
}

}  // namespace

LRScheduler::StateReader::StateReader(const NamedTensors& state_dict, std::string who)
    : sd_(state_dict), who_(std::move(who)), used_(state_dict.size(), false) {}

const Tensor& LRScheduler::StateReader::at(const std::string& key) {
  for (size_t i = 0; i < sd_.size(); ++i) {
    if (sd_[i].first == key) {
      QAT_CHECK(sd_[i].second.defined(), who_, " load_state_dict: '", key, "' is undefined");
      used_[i] = true;
      return sd_[i].second;
    }
  }
  QAT_CHECK(false, who_, " load_state_dict: missing key '", key, "'");
  return sd_[0].second;  // unreachable
}

int64_t LRScheduler::StateReader::get_int(const std::string& key) {
  const Tensor& t = at(key);
  QAT_CHECK(t.dtype() == DType::kInt64 && t.numel() == 1, who_, " load_state_dict: '", key,
            "' must be one int64, got ", t.to_string());
  return t.data<int64_t>()[0];
}

double LRScheduler::StateReader::get_double(const std::string& key) {
  const Tensor& t = at(key);
  QAT_CHECK(t.dtype() == DType::kFloat64 && t.numel() == 1, who_, " load_state_dict: '", key,
            "' must be one float64, got ", t.to_string());
  return t.data<double>()[0];
}

std::vector<int64_t> LRScheduler::StateReader::get_ints(const std::string& key) {
  const Tensor& t = at(key);
  QAT_CHECK(t.dtype() == DType::kInt64 && t.dim() == 1, who_, " load_state_dict: '", key,
            "' must be a 1-d int64 tensor, got ", t.to_string());
  return t.to_vector<int64_t>();
}

NamedTensors LRScheduler::StateReader::sub(const std::string& prefix) {
  NamedTensors out;
  for (size_t i = 0; i < sd_.size(); ++i) {
    if (sd_[i].first.compare(0, prefix.size(), prefix) == 0) {
      out.emplace_back(sd_[i].first.substr(prefix.size()), sd_[i].second);
      used_[i] = true;
    }
  }
  return out;
}

void LRScheduler::StateReader::done() const {
  for (size_t i = 0; i < sd_.size(); ++i) {
    QAT_CHECK(used_[i], who_, " load_state_dict: unexpected key '", sd_[i].first, "'");
  }
}

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

NamedTensors LRScheduler::state_dict() const {
  NamedTensors out;
  out.emplace_back("last_epoch", int_tensor(last_epoch_));
  out.emplace_back("base_lrs", doubles_tensor(base_lrs_));
  out.emplace_back("_last_lr", doubles_tensor(last_lr_));
  save_hyperparameters(out);
  return out;
}

void LRScheduler::load_state_dict(const NamedTensors& state_dict) {
  const std::string who = type_name();
  StateReader in(state_dict, who);
  const int64_t last_epoch = in.get_int("last_epoch");
  QAT_CHECK(last_epoch >= 0, who, " load_state_dict: last_epoch must be >= 0, got ", last_epoch);
  std::vector<double> base_lrs = in.at("base_lrs").to(DType::kFloat64).to_vector<double>();
  std::vector<double> last_lr = in.at("_last_lr").to(DType::kFloat64).to_vector<double>();
  const size_t groups = optimizer_.param_groups().size();
  QAT_CHECK(base_lrs.size() == groups && last_lr.size() == groups, who,
            " load_state_dict: the checkpoint has ", base_lrs.size(), " base_lrs and ",
            last_lr.size(), " _last_lr but the optimizer has ", groups, " param groups");
  // The hyperparameter loaders validate as they go; put everything back if one throws.
  const NamedTensors before = this->state_dict();
  try {
    load_hyperparameters(in);
    in.done();
  } catch (...) {
    StateReader restore(before, who);
    restore.sub("");  // mark all used; load_hyperparameters reads what it needs
    load_hyperparameters(restore);
    throw;
  }
  last_epoch_ = last_epoch;
  base_lrs_ = std::move(base_lrs);
  last_lr_ = std::move(last_lr);
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  QAT_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  initial_step();
}

double StepLR::lr_at(double base_lr, int64_t epoch) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

void StepLR::save_hyperparameters(NamedTensors& out) const {
  out.emplace_back("step_size", int_tensor(step_size_));
  out.emplace_back("gamma", double_tensor(gamma_));
}

void StepLR::load_hyperparameters(StateReader& in) {
  const int64_t step_size = in.get_int("step_size");
  QAT_CHECK(step_size > 0, "StepLR load_state_dict: step_size must be positive, got ", step_size);
  step_size_ = step_size;
  gamma_ = in.get_double("gamma");
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

void MultiStepLR::save_hyperparameters(NamedTensors& out) const {
  out.emplace_back("milestones", ints_tensor(milestones_));
  out.emplace_back("gamma", double_tensor(gamma_));
}

void MultiStepLR::load_hyperparameters(StateReader& in) {
  std::vector<int64_t> milestones = in.get_ints("milestones");
  const double gamma = in.get_double("gamma");
  std::sort(milestones.begin(), milestones.end());
  milestones_ = std::move(milestones);
  gamma_ = gamma;
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

void CosineAnnealingLR::save_hyperparameters(NamedTensors& out) const {
  out.emplace_back("T_max", int_tensor(t_max_));
  out.emplace_back("eta_min", double_tensor(eta_min_));
}

void CosineAnnealingLR::load_hyperparameters(StateReader& in) {
  const int64_t t_max = in.get_int("T_max");
  QAT_CHECK(t_max > 0, "CosineAnnealingLR load_state_dict: T_max must be positive, got ", t_max);
  t_max_ = t_max;
  eta_min_ = in.get_double("eta_min");
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

void LinearLR::save_hyperparameters(NamedTensors& out) const {
  out.emplace_back("start_factor", double_tensor(start_factor_));
  out.emplace_back("end_factor", double_tensor(end_factor_));
  out.emplace_back("total_iters", int_tensor(total_iters_));
}

void LinearLR::load_hyperparameters(StateReader& in) {
  const double start_factor = in.get_double("start_factor");
  const double end_factor = in.get_double("end_factor");
  const int64_t total_iters = in.get_int("total_iters");
  QAT_CHECK(total_iters > 0, "LinearLR load_state_dict: total_iters must be positive, got ",
            total_iters);
  start_factor_ = start_factor;
  end_factor_ = end_factor;
  total_iters_ = total_iters;
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

void SequentialLR::save_hyperparameters(NamedTensors& out) const {
  out.emplace_back("_milestones", ints_tensor(milestones_));
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    for (auto& [key, value] : schedulers_[i]->state_dict()) {
      out.emplace_back("_schedulers." + std::to_string(i) + "." + key, value);
    }
  }
}

void SequentialLR::load_hyperparameters(StateReader& in) {
  std::vector<int64_t> milestones = in.get_ints("_milestones");
  QAT_CHECK(milestones.size() + 1 == schedulers_.size(),
            "SequentialLR load_state_dict: ", milestones.size(), " milestones for ",
            schedulers_.size(), " schedulers");
  QAT_CHECK(std::is_sorted(milestones.begin(), milestones.end()),
            "SequentialLR load_state_dict: milestones must be increasing");
  std::vector<NamedTensors> children;
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    children.push_back(in.sub("_schedulers." + std::to_string(i) + "."));
  }
  for (size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict(children[i]);
  milestones_ = std::move(milestones);
}

}  // namespace qat::nn
