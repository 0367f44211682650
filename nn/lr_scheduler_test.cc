#include "nn/lr_scheduler.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qat::nn {
namespace {

// Expected lrs come from torch 1.13 (/usr/bin/python3): SGD(lr=0.1), the lr after construction,
// then after each of 12 scheduler.step() calls. PyTorch steps most schedules recursively, so
// the closed forms here agree to rounding error only.
class Schedule : public ::testing::Test {
 protected:
  Tensor p = Tensor::zeros({1}).requires_grad_();
  SGD opt{{p}, SGDOptions(0.1)};

  void expect_lrs(LRScheduler& s, const std::vector<double>& expected) {
    for (size_t epoch = 0; epoch < expected.size(); ++epoch) {
      if (epoch > 0) s.step();
      EXPECT_NEAR(*opt.param_groups()[0].lr, expected[epoch], 1e-15) << "epoch " << epoch;
      EXPECT_EQ(s.get_last_lr()[0], *opt.param_groups()[0].lr);
      EXPECT_EQ(s.last_epoch(), static_cast<int64_t>(epoch));
    }
  }
};

TEST_F(Schedule, StepLR) {
  StepLR s(opt, 3, 0.5);
  expect_lrs(
      s, {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125, 0.00625});
}

TEST_F(Schedule, MultiStepLRSortsMilestonesAndCountsRepeats) {
  MultiStepLR s(opt, {5, 2, 8, 8}, 0.1);
  expect_lrs(s,
             {0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 1e-05, 1e-05, 1e-05, 1e-05, 1e-05});
}

TEST_F(Schedule, CosineAnnealingLRKeepsGoingPastTMax) {
  CosineAnnealingLR s(opt, 5, 0.001);
  expect_lrs(
      s, {0.1, 0.0905463412215599, 0.06579634122155989, 0.035203658778440096, 0.010453658778440105,
          0.001, 0.010453658778440102, 0.03520365877844012, 0.06579634122155993,
          0.09054634122155995, 0.10000000000000005, 0.09054634122155998, 0.06579634122155995});
}

TEST_F(Schedule, LinearLRWarmup) {
  LinearLR s(opt, /*start_factor=*/0.1, /*end_factor=*/1.0, /*total_iters=*/4);
  expect_lrs(s, {0.01, 0.0325, 0.055, 0.0775, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1});
}

TEST_F(Schedule, SequentialLRWarmupThenCosine) {
  auto warmup = std::make_shared<LinearLR>(opt, 0.01, 1.0, 3);
  auto cosine = std::make_shared<CosineAnnealingLR>(opt, 6);
  SequentialLR s(opt, {warmup, cosine}, {3});
  expect_lrs(s, {0.001, 0.034, 0.067, 0.1, 0.09330127018922195, 0.07500000000000001, 0.05,
                 0.025000000000000012, 0.006698729810778065, 0.0, 0.006698729810778065, 0.025,
                 0.05000000000000004});
}

TEST_F(Schedule, SequentialLRRestartsEachScheduleAtItsMilestone) {
  auto a = std::make_shared<LinearLR>(opt, 0.25, 1.0, 2);
  auto b = std::make_shared<StepLR>(opt, 2, 0.5);
  auto c = std::make_shared<MultiStepLR>(opt, std::vector<int64_t>{1, 3}, 0.1);
  SequentialLR s(opt, {a, b, c}, {2, 6});
  expect_lrs(s, {0.025, 0.0625, 0.1, 0.1, 0.05, 0.05, 0.1, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001});
}

TEST_F(Schedule, EveryGroupScalesFromItsOwnInitialLr) {
  Tensor q = Tensor::zeros({1}).requires_grad_();
  SGD two({ParamGroup{{p}, 1.0}, ParamGroup{{q}, 0.01}}, SGDOptions(0.1));
  StepLR s(two, 1, 0.5);
  s.step();
  EXPECT_EQ(s.get_last_lr(), (std::vector<double>{0.5, 0.005}));
  EXPECT_EQ(*two.param_groups()[1].initial_lr, 0.01);
}

TEST_F(Schedule, SetLastEpochResumes) {
  CosineAnnealingLR s(opt, 5, 0.001);
  s.set_last_epoch(3);
  EXPECT_NEAR(s.get_last_lr()[0], 0.035203658778440096, 1e-15);
  s.step();
  EXPECT_NEAR(s.get_last_lr()[0], 0.010453658778440105, 1e-15);
}

TEST_F(Schedule, RejectsBadArguments) {
  EXPECT_THROW(StepLR(opt, 0), Error);
  EXPECT_THROW(CosineAnnealingLR(opt, 0), Error);
  EXPECT_THROW(LinearLR(opt, 0.0), Error);
  EXPECT_THROW(LinearLR(opt, 0.5, 1.5), Error);
  auto a = std::make_shared<StepLR>(opt, 2);
  EXPECT_THROW(SequentialLR(opt, {a}, {3}), Error);  // one milestone too many
  Tensor q = Tensor::zeros({1}).requires_grad_();
  SGD other({q}, SGDOptions(0.1));
  auto foreign = std::make_shared<StepLR>(other, 2);
  EXPECT_THROW(SequentialLR(opt, {a, foreign}, {3}), Error);
}

// A fresh optimizer with two param groups and a scheduler built on it, as a resumed run
// rebuilds them from its config.
struct TwoGroups {
  Tensor p = Tensor::zeros({1}).requires_grad_();
  Tensor q = Tensor::zeros({1}).requires_grad_();
  SGD opt{{ParamGroup({p}), ParamGroup({q}, 0.01)}, SGDOptions(0.1)};
  std::shared_ptr<LRScheduler> sched;
};

using MakeScheduler = std::function<std::shared_ptr<LRScheduler>(Optimizer&)>;

std::vector<std::pair<std::string, MakeScheduler>> every_scheduler() {
  return {
      {"StepLR", [](Optimizer& o) { return std::make_shared<StepLR>(o, 3, 0.5); }},
      {"MultiStepLR",
       [](Optimizer& o) {
         return std::make_shared<MultiStepLR>(o, std::vector<int64_t>{2, 5});
       }},
      {"CosineAnnealingLR",
       [](Optimizer& o) { return std::make_shared<CosineAnnealingLR>(o, 7, 0.001); }},
      {"LinearLR", [](Optimizer& o) { return std::make_shared<LinearLR>(o, 0.25, 1.0, 4); }},
      {"SequentialLR",
       [](Optimizer& o) {
         auto warmup = std::make_shared<LinearLR>(o, 0.1, 1.0, 3);
         auto cosine = std::make_shared<CosineAnnealingLR>(o, 6);
         return std::make_shared<SequentialLR>(
             o, std::vector<std::shared_ptr<LRScheduler>>{warmup, cosine}, std::vector<int64_t>{3});
       }},
  };
}

TEST(SchedulerState, ResumedSchedulerGivesTheSameLrs) {
  for (const auto& [name, make] : every_scheduler()) {
    for (int64_t k : {0, 1, 4, 9}) {
      TwoGroups ref, first, resumed;
      ref.sched = make(ref.opt);
      first.sched = make(first.opt);
      for (int64_t e = 0; e < k; ++e) first.sched->step();
      const NamedTensors opt_state = first.opt.state_dict();
      const NamedTensors sched_state = first.sched->state_dict();
      first.sched.reset();  // the killed run

      resumed.sched = make(resumed.opt);  // rebuilt from the config: back at epoch 0
      resumed.opt.load_state_dict(opt_state);
      resumed.sched->load_state_dict(sched_state);
      EXPECT_EQ(resumed.sched->last_epoch(), k) << name;
      for (int64_t e = 0; e < k; ++e) ref.sched->step();
      EXPECT_EQ(resumed.sched->get_last_lr(), ref.sched->get_last_lr()) << name << " k=" << k;
      for (int64_t e = k; e < 14; ++e) {
        ref.sched->step();
        resumed.sched->step();
        for (size_t g = 0; g < 2; ++g) {
          EXPECT_EQ(*resumed.opt.param_groups()[g].lr, *ref.opt.param_groups()[g].lr)
              << name << " resumed at " << k << ", epoch " << e + 1 << ", group " << g;
        }
      }
    }
  }
}

TEST(SchedulerState, KeysFollowPyTorch) {
  TwoGroups run;
  StepLR s(run.opt, 3, 0.5);
  s.step();
  const NamedTensors sd = s.state_dict();
  std::vector<std::string> keys;
  for (const auto& [key, value] : sd) keys.push_back(key);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"last_epoch", "base_lrs", "_last_lr", "step_size", "gamma"}));
  EXPECT_EQ(sd[0].second.dtype(), DType::kInt64);
  EXPECT_EQ(sd[0].second.item(), 1);
  EXPECT_EQ(sd[1].second.to_vector<double>(), (std::vector<double>{0.1, 0.01}));

  auto warmup = std::make_shared<LinearLR>(run.opt, 0.1, 1.0, 3);
  auto cosine = std::make_shared<CosineAnnealingLR>(run.opt, 6);
  SequentialLR seq(run.opt, {warmup, cosine}, {3});
  keys.clear();
  for (const auto& [key, value] : seq.state_dict()) keys.push_back(key);
  EXPECT_EQ(keys,
            (std::vector<std::string>{
                "last_epoch", "base_lrs", "_last_lr", "_milestones", "_schedulers.0.last_epoch",
                "_schedulers.0.base_lrs", "_schedulers.0._last_lr", "_schedulers.0.start_factor",
                "_schedulers.0.end_factor", "_schedulers.0.total_iters", "_schedulers.1.last_epoch",
                "_schedulers.1.base_lrs", "_schedulers.1._last_lr", "_schedulers.1.T_max",
                "_schedulers.1.eta_min"}));
}

TEST(SchedulerState, LoadsHyperparametersAsPyTorchDoes) {
  TwoGroups a, b;
  StepLR saved(a.opt, 2, 0.5);
  StepLR loaded(b.opt, 10, 0.9);
  loaded.load_state_dict(saved.state_dict());
  for (int e = 0; e < 6; ++e) {
    saved.step();
    loaded.step();
    EXPECT_EQ(saved.get_last_lr(), loaded.get_last_lr()) << "epoch " << e + 1;
  }
}

std::string load_error(LRScheduler& s, const NamedTensors& sd) {
  try {
    s.load_state_dict(sd);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

NamedTensors without(NamedTensors sd, const std::string& key) {
  for (auto it = sd.begin(); it != sd.end(); ++it) {
    if (it->first == key) {
      sd.erase(it);
      break;
    }
  }
  return sd;
}

TEST(SchedulerState, RejectsBadStateAndKeepsItsOwn) {
  TwoGroups a, b;
  StepLR saved(a.opt, 2, 0.5);
  saved.step();
  const NamedTensors good = saved.state_dict();
  StepLR s(b.opt, 3, 0.1);
  s.step();
  s.step();
  const NamedTensors before = s.state_dict();

  EXPECT_NE(
      load_error(s, without(good, "gamma")).find("StepLR load_state_dict: missing key 'gamma'"),
      std::string::npos);
  NamedTensors extra = good;
  extra.emplace_back("T_max", Tensor::scalar(3, DType::kInt64));
  EXPECT_NE(load_error(s, extra).find("unexpected key 'T_max'"), std::string::npos);
  NamedTensors bad_type = without(good, "step_size");
  bad_type.emplace_back("step_size", Tensor::scalar(3.0, DType::kFloat64));
  EXPECT_NE(load_error(s, bad_type).find("'step_size' must be one int64"), std::string::npos);
  NamedTensors zero_step = without(good, "step_size");
  zero_step.emplace_back("step_size", Tensor::scalar(0, DType::kInt64));
  EXPECT_NE(load_error(s, zero_step).find("step_size must be positive"), std::string::npos);

  Tensor r = Tensor::zeros({1}).requires_grad_();
  SGD one_group({r}, SGDOptions(0.1));
  StepLR other(one_group, 2);
  EXPECT_NE(load_error(other, good).find("the optimizer has 1 param groups"), std::string::npos);
  CosineAnnealingLR cosine(b.opt, 4);
  EXPECT_NE(load_error(cosine, good).find("CosineAnnealingLR load_state_dict: missing key 'T_max'"),
            std::string::npos);

  const NamedTensors after = s.state_dict();  // every failed load left s as it was
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].second.to_vector<double>(), before[i].second.to_vector<double>())
        << after[i].first;
  }
}

TEST(SchedulerState, FailedSequentialLoadRestoresEveryChild) {
  TwoGroups a, b;
  auto make = [](Optimizer& o, int64_t warmup_iters, int64_t t_max) {
    auto warmup = std::make_shared<LinearLR>(o, 0.1, 1.0, warmup_iters);
    auto cosine = std::make_shared<CosineAnnealingLR>(o, t_max);
    return std::make_shared<SequentialLR>(
        o, std::vector<std::shared_ptr<LRScheduler>>{warmup, cosine}, std::vector<int64_t>{3});
  };
  auto saved = make(a.opt, 5, 8);
  auto s = make(b.opt, 3, 6);
  NamedTensors broken = without(saved->state_dict(), "_schedulers.1.eta_min");  // child 0 loads
  EXPECT_NE(load_error(*s, broken).find("missing key 'eta_min'"), std::string::npos);
  auto fresh = make(a.opt, 3, 6);
  for (int e = 0; e < 10; ++e) {
    s->step();
    fresh->step();
    EXPECT_EQ(s->get_last_lr(), fresh->get_last_lr()) << "epoch " << e + 1;
  }
}

}  // namespace
}  // namespace qat::nn
