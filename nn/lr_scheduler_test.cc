#include "nn/lr_scheduler.h"

#include <gtest/gtest.h>

#include <memory>
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

}  // namespace
}  // namespace qat::nn
