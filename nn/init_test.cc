#include "nn/init.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace qat::nn::init {
namespace {

struct Stats {
  double min, max, mean, std;
};

Stats stats_of(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  double sum = 0, sum_sq = 0;
  for (double x : v) sum += x;
  const double mean = sum / v.size();
  for (double x : v) sum_sq += (x - mean) * (x - mean);
  return {*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()), mean,
          std::sqrt(sum_sq / v.size())};
}

TEST(Init, CalculateGainMatchesTorch) {
  EXPECT_EQ(calculate_gain(Nonlinearity::kLinear), 1.0);
  EXPECT_EQ(calculate_gain(Nonlinearity::kConv2d), 1.0);
  EXPECT_EQ(calculate_gain(Nonlinearity::kSigmoid), 1.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::kTanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::kReLU), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::kLeakyReLU), std::sqrt(2.0 / (1 + 0.01 * 0.01)));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::kLeakyReLU, std::sqrt(5.0)), std::sqrt(1.0 / 3));
  EXPECT_EQ(calculate_gain(Nonlinearity::kSELU), 0.75);
}

TEST(Init, FanInAndFanOut) {
  EXPECT_EQ(calculate_fan_in_and_fan_out(Tensor::empty({64, 32, 3, 3})),
            (std::pair<int64_t, int64_t>{288, 576}));
  EXPECT_EQ(calculate_fan_in_and_fan_out(Tensor::empty({10, 5})),
            (std::pair<int64_t, int64_t>{5, 10}));
  EXPECT_THROW(calculate_fan_in_and_fan_out(Tensor::empty({10})), Error);
}

TEST(Init, KaimingUniformWithSqrt5IsUniformOverOneOverSqrtFanIn) {
  Tensor w = Tensor::empty({64, 32, 3, 3});
  kaiming_uniform_(w, std::sqrt(5.0));
  const double bound = 1.0 / std::sqrt(288.0);  // PyTorch's Conv2d default
  const Stats s = stats_of(w);
  EXPECT_GE(s.min, -bound);
  EXPECT_LE(s.max, bound);
  EXPECT_LT(s.min, -0.99 * bound);
  EXPECT_GT(s.max, 0.99 * bound);
  EXPECT_NEAR(s.mean, 0.0, 0.01 * bound);
  EXPECT_NEAR(s.std, bound / std::sqrt(3.0), 0.02 * bound);
}

TEST(Init, KaimingNormalFanOutRelu) {
  // torchvision ResNet: kaiming_normal_(w, mode="fan_out", nonlinearity="relu").
  Tensor w = Tensor::empty({128, 64, 3, 3});
  kaiming_normal_(w, 0.0, FanMode::kFanOut, Nonlinearity::kReLU);
  const double expected_std = std::sqrt(2.0) / std::sqrt(128.0 * 9);
  const Stats s = stats_of(w);
  EXPECT_NEAR(s.mean, 0.0, 0.01 * expected_std);
  EXPECT_NEAR(s.std, expected_std, 0.01 * expected_std);
}

TEST(Init, UniformNormalAndConstants) {
  Tensor t = Tensor::empty({100000}, DType::kFloat64);
  init::uniform_(t, -2.0, 3.0);
  Stats s = stats_of(t);
  EXPECT_GE(s.min, -2.0);
  EXPECT_LT(s.max, 3.0);
  EXPECT_NEAR(s.mean, 0.5, 0.02);
  init::normal_(t, 1.0, 0.01);  // MobileNetV2's Linear init is normal_(0, 0.01)
  s = stats_of(t);
  EXPECT_NEAR(s.mean, 1.0, 1e-3);
  EXPECT_NEAR(s.std, 0.01, 2e-4);
  constant_(t, 0.25);
  EXPECT_EQ(stats_of(t).min, 0.25);
  EXPECT_EQ(stats_of(t).max, 0.25);
  zeros_(t);
  EXPECT_EQ(stats_of(t).max, 0.0);
  ones_(t);
  EXPECT_EQ(stats_of(t).min, 1.0);
}

TEST(Init, TruncNormalMatchesTheTruncatedMoments) {
  // N(0.5, 1) cut to [-1, 1.5]: alpha = -1.5, beta = 1; moments from the standard formulas.
  Tensor t = Tensor::empty({200000}, DType::kFloat64);
  trunc_normal_(t, 0.5, 1.0, -1.0, 1.5);
  const auto pdf = [](double z) { return std::exp(-0.5 * z * z) / std::sqrt(2 * std::acos(-1.0)); };
  const auto cdf = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double alpha = -1.5, beta = 1.0, z = cdf(beta) - cdf(alpha);
  const double shift = (pdf(alpha) - pdf(beta)) / z;
  const double expected_std =
      std::sqrt(1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - shift * shift);
  const Stats s = stats_of(t);
  EXPECT_GE(s.min, -1.0);
  EXPECT_LE(s.max, 1.5);
  EXPECT_LT(s.min, -0.99);
  EXPECT_GT(s.max, 1.49);
  EXPECT_NEAR(s.mean, 0.5 + shift, 0.01);
  EXPECT_NEAR(s.std, expected_std, 0.01);
}

TEST(Init, TruncNormalGoogLeNetSettingIsANormalWithStd001) {
  // trunc_normal_(w, 0, 0.01, -2, 2): the bounds sit 200 std out, so nothing is cut.
  Tensor w = Tensor::empty({256, 128, 3, 3});
  trunc_normal_(w, 0.0, 0.01, -2.0, 2.0);
  const Stats s = stats_of(w);
  EXPECT_NEAR(s.mean, 0.0, 1e-4);
  EXPECT_NEAR(s.std, 0.01, 1e-4);
}

TEST(Init, TruncNormalRejectsBadArguments) {
  Tensor t = Tensor::empty({4});
  EXPECT_THROW(trunc_normal_(t, 0.0, 1.0, 1.0, -1.0), Error);   // a > b
  EXPECT_THROW(trunc_normal_(t, 0.0, 0.0), Error);              // std = 0
  EXPECT_THROW(trunc_normal_(t, 0.0, 1.0, 10.0, 11.0), Error);  // no mass left to sample
  Tensor labels = Tensor::empty({4}, DType::kInt64);
  EXPECT_THROW(trunc_normal_(labels), Error);
}

TEST(Init, SeededGeneratorsRepeat) {
  Generator g1(42), g2(42);
  Tensor a = Tensor::empty({16, 8}), b = Tensor::empty({16, 8});
  kaiming_uniform_(a, 0.0, FanMode::kFanIn, Nonlinearity::kLeakyReLU, g1);
  kaiming_uniform_(b, 0.0, FanMode::kFanIn, Nonlinearity::kLeakyReLU, g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  Generator g3(7), g4(7);
  trunc_normal_(a, 0.0, 1.0, -0.5, 0.5, g3);
  trunc_normal_(b, 0.0, 1.0, -0.5, 0.5, g4);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
}

TEST(Init, ZeroElementTensorsAreANoOp) {
  Tensor w = Tensor::empty({0, 3, 3, 3});
  EXPECT_NO_THROW(kaiming_uniform_(w));
  EXPECT_NO_THROW(kaiming_normal_(w));
}

}  // namespace
}  // namespace qat::nn::init
