#include "nn/batch_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/testing/compare.h"

namespace qat::nn {
namespace {

// (arange(24) ** 1.5) / 10 as [2, 3, 2, 2], the input of the torch 1.13 reference values below.
Tensor input() {
  Tensor x = Tensor::empty({2, 3, 2, 2});
  for (int64_t i = 0; i < 24; ++i) x.data<float>()[i] = std::pow(float(i), 1.5f) / 10;
  return x;
}

Tensor vec(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

TEST(BatchNorm2d, KeysDtypesAndInitialValues) {
  auto bn = std::make_shared<BatchNorm2d>(3);
  const StateDict sd = bn->state_dict();
  std::vector<std::string> keys;
  for (const auto& entry : sd) keys.push_back(entry.first);
  EXPECT_EQ(keys, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var",
                                            "num_batches_tracked"}));
  EXPECT_EQ(bn->weight.to_vector<float>(), std::vector<float>(3, 1.0f));
  EXPECT_EQ(bn->bias.to_vector<float>(), std::vector<float>(3, 0.0f));
  EXPECT_EQ(bn->running_mean.to_vector<float>(), std::vector<float>(3, 0.0f));
  EXPECT_EQ(bn->running_var.to_vector<float>(), std::vector<float>(3, 1.0f));
  EXPECT_EQ(bn->num_batches_tracked.dtype(), DType::kInt64);
  EXPECT_EQ(bn->num_batches_tracked.dim(), 0);
  EXPECT_EQ(bn->num_batches_tracked.item(), 0);
  EXPECT_EQ(bn->parameters().size(), 2u);
  EXPECT_EQ(bn->options.momentum(), 0.1);
  EXPECT_EQ(bn->options.eps(), 1e-5);
}

TEST(BatchNorm2d, TrainingUpdatesRunningStatsInPlaceLikeTorch) {
  auto bn = std::make_shared<BatchNorm2d>(3);
  const Tensor held_mean = bn->running_mean;
  const Tensor y = bn->forward(input());
  EXPECT_EQ(bn->num_batches_tracked.item(), 1);
  EXPECT_TRUE(testing::all_close(held_mean, vec({0.259929895f, 0.432096213f, 0.646128953f})));
  EXPECT_TRUE(testing::all_close(bn->running_var, vec({1.56784511f, 1.97306156f, 2.36419892f})));
  EXPECT_NEAR(y.data<float>()[0], -1.07526112, 1e-5);
  EXPECT_NEAR(y.data<float>()[4], -1.14906538, 1e-5);
  EXPECT_NEAR(y.data<float>()[23], 1.27652299, 1e-5);

  bn->forward(input());
  EXPECT_EQ(bn->num_batches_tracked.item(), 2);
  EXPECT_TRUE(testing::all_close(held_mean, vec({0.493866801f, 0.820982814f, 1.22764492f})));
  EXPECT_TRUE(testing::all_close(bn->running_var, vec({2.07890582f, 2.84881687f, 3.59197807f})));
}

TEST(BatchNorm2d, EvalUsesRunningStatsAndLeavesThemAlone) {
  auto bn = std::make_shared<BatchNorm2d>(3);
  bn->forward(input());
  bn->forward(input());
  bn->eval();
  bn->weight.copy_(vec({1.0f, 2.0f, 0.5f}));
  bn->bias.copy_(vec({0.0f, -1.0f, 0.25f}));
  const Tensor y = bn->forward(input());
  // y[1, :, 1, 0] from torch
  EXPECT_NEAR(y.data<float>()[12 + 2], 3.29054427, 1e-5);
  EXPECT_NEAR(y.data<float>()[16 + 2], 7.07629013, 1e-5);
  EXPECT_NEAR(y.data<float>()[20 + 2], 2.64843011, 1e-5);
  EXPECT_EQ(bn->num_batches_tracked.item(), 2);
}

TEST(BatchNorm2d, WithoutAffineOrRunningStats) {
  auto bn = std::make_shared<BatchNorm2d>(
      3, BatchNorm2dOptions().affine(false).track_running_stats(false));
  EXPECT_TRUE(bn->state_dict().empty());
  bn->eval();  // still batch statistics: there are no running ones
  const std::vector<float> y = bn->forward(input()).to_vector<float>();
  EXPECT_NEAR(y[0], -1.07526112, 1e-5);
}

TEST(BatchNorm2d, ReprMatchesTorch) {
  EXPECT_EQ(BatchNorm2d(64).to_string(),
            "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  EXPECT_EQ(BatchNorm2d(64, BatchNorm2dOptions().eps(0.001)).to_string(),
            "BatchNorm2d(64, eps=0.001, momentum=0.1, affine=True, track_running_stats=True)");
  EXPECT_EQ(
      BatchNorm2d(8, BatchNorm2dOptions().momentum(0.01).affine(false).track_running_stats(false))
          .to_string(),
      "BatchNorm2d(8, eps=1e-05, momentum=0.01, affine=False, track_running_stats=False)");
}

TEST(BatchNorm2d, RejectsNon4dInput) {
  auto bn = std::make_shared<BatchNorm2d>(3);
  EXPECT_THROW(bn->forward(Tensor::zeros({4, 3})), Error);
  EXPECT_EQ(bn->num_batches_tracked.item(), 0);
}

}  // namespace
}  // namespace qat::nn
