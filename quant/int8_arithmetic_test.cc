// The shared int8 arithmetic: grid values per rounding mode, weight codes, int32 bias and
// TNN's requantization (tnn_format.md §3.4), on hand-picked values.

#include "quant/int8_arithmetic.h"

#include <gtest/gtest.h>

#include <vector>

namespace qat::quant {
namespace {

QParams per_channel_int8(const std::vector<float>& scales, RoundingMode rounding) {
  QParams q;
  q.scale = Tensor::from_vector(scales, {static_cast<int64_t>(scales.size())});
  q.zero_point = Tensor::zeros({static_cast<int64_t>(scales.size())}, DType::kInt32);
  q.axis = 0;
  q.quant_min = -127;
  q.quant_max = 127;
  q.rounding = rounding;
  return q;
}

TEST(GridValueTest, TiesFollowTheRoundingMode) {
  EXPECT_EQ(grid_value(RoundingMode::kHalfEvenDiv, 2.5f, 1.0f), 2.0f);
  EXPECT_EQ(grid_value(RoundingMode::kHalfAway, 2.5f, 1.0f), 3.0f);
  EXPECT_EQ(grid_value(RoundingMode::kHalfAway, -2.5f, 1.0f), -3.0f);
  EXPECT_EQ(grid_value(RoundingMode::kHalfEvenMul, 0.75f, 0.5f), 2.0f);  // 1.5 -> 2
}

TEST(QuantizeWeightTest, PerChannelCodesSaturateToTheNarrowRange) {
  const Tensor w = Tensor::from_vector<float>({0.5f, -1.0f, 300.0f, 1.5f}, {2, 2});
  const QParams q = per_channel_int8({0.25f, 1.0f}, RoundingMode::kHalfAway);
  EXPECT_EQ(quantize_weight(w, q).to_vector<int8_t>(), (std::vector<int8_t>{2, -4, 127, 2}));
}

TEST(QuantizeWeightTest, RejectsAPerTensorGrid) {
  QParams q = per_channel_int8({1.0f}, RoundingMode::kHalfAway);
  q.axis.reset();
  EXPECT_THROW(quantize_weight(Tensor::zeros({2, 2}), q), Error);
}

TEST(Int32BiasTest, DividesByInputTimesWeightScale) {
  const Tensor b = Tensor::from_vector<float>({1.25f, -0.3f}, {2});
  const QParams q = per_channel_int8({0.5f, 0.1f}, RoundingMode::kHalfAway);
  // 1.25 / (0.5 * 0.5) = 5; -0.3 / (0.5 * 0.1) = -6.
  EXPECT_EQ(int32_bias(b, 0.5f, q).to_vector<int32_t>(), (std::vector<int32_t>{5, -6}));
}

TEST(Float2Int8Test, RoundsHalfAwayAndSaturates) {
  EXPECT_EQ(float2int8(0.5f), 1);
  EXPECT_EQ(float2int8(-0.5f), -1);
  EXPECT_EQ(float2int8(-128.5f), -128);
  EXPECT_EQ(float2int8(127.5f), 127);
}

TEST(TnnRequantizeTest, AppliesTheFusedActivation) {
  // One channel, s_acc 1, s_out 4: v = acc / 4.
  const Tensor acc = Tensor::from_vector<int32_t>({-10, 6, 30}, {1, 1, 3});
  const Tensor s_acc = Tensor::from_vector<float>({1.0f}, {1});
  EXPECT_EQ(tnn_requantize(acc, s_acc, 4.0f, FusedActivation::kNone).to_vector<int8_t>(),
            (std::vector<int8_t>{-3, 2, 8}));  // -2.5 -> -3, 1.5 -> 2, 7.5 -> 8
  EXPECT_EQ(tnn_requantize(acc, s_acc, 4.0f, FusedActivation::kReLU).to_vector<int8_t>(),
            (std::vector<int8_t>{0, 2, 8}));
  // ReLU6 clamps at float2int8(6 / 4) = 2.
  EXPECT_EQ(tnn_requantize(acc, s_acc, 4.0f, FusedActivation::kReLU6).to_vector<int8_t>(),
            (std::vector<int8_t>{0, 2, 2}));
}

TEST(TnnAccumulatorScaleTest, MultipliesInputAndWeightScales) {
  const QParams q = per_channel_int8({0.5f, 0.25f}, RoundingMode::kHalfAway);
  EXPECT_EQ(tnn_accumulator_scale(2.0f, q).to_vector<float>(), (std::vector<float>{1.0f, 0.5f}));
}

}  // namespace
}  // namespace qat::quant
