// The shared int8 arithmetic: grid values per rounding mode, weight codes, int32 bias and
// TNN's requantization (tnn_format.md §3.4), on hand-picked values; the fast requantization
// and the exact accumulators against their reference twins.

#include "quant/int8_arithmetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
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

// TNN's float2int8 as tnn_format.md §3.4 writes it, for the branch-free float2int8.
int8_t float2int8_literal(float v) {
  const float rounded = std::trunc(v + (v >= 0.0f ? 0.5f : -0.5f));
  return static_cast<int8_t>(std::clamp(rounded, -128.0f, 127.0f));
}

TEST(Float2Int8Test, EqualsTnnsExpression) {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::denorm_min()};
  // The 16 floats on either side of every half integer and integer in [-260, 260].
  for (int k = -520; k <= 520; ++k) {
    float up = 0.5f * static_cast<float>(k), down = up;
    for (int step = 0; step < 16; ++step) {
      values.push_back(up);
      values.push_back(down);
      up = std::nextafter(up, 1e9f);
      down = std::nextafter(down, -1e9f);
    }
  }
  // Random bit patterns (NaN left out: the int8 cast of NaN is undefined).
  std::mt19937 gen(7);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t bits = gen();
    float v;
    std::memcpy(&v, &bits, sizeof(v));
    if (!std::isnan(v)) values.push_back(v);
  }
  for (const float v : values) ASSERT_EQ(float2int8(v), float2int8_literal(v)) << v;
}

// acc [N, C, H, W] int32 around the ties and saturation points of `multiplier` per channel.
Tensor tie_accumulators(int64_t batch, const std::vector<float>& multipliers, int64_t inner) {
  const auto channels = static_cast<int64_t>(multipliers.size());
  std::vector<int32_t> acc;
  std::mt19937 gen(11);
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < inner; ++i) {
        // Accumulators whose v lands near k + 0.5 for k in [-140, 140), plus random ones.
        const float target = static_cast<float>(static_cast<int>(gen() % 281) - 140) + 0.5f;
        const auto near = static_cast<int32_t>(std::lround(target / multipliers[c]));
        acc.push_back(i % 4 == 3 ? static_cast<int32_t>(gen() % 2000001) - 1000000
                                 : near + static_cast<int32_t>(gen() % 3) - 1);
      }
    }
  }
  return Tensor::from_vector(acc, {batch, channels, inner / 5, 5});
}

TEST(TnnRequantizePlanesTest, EqualsTheReferenceBitForBit) {
  // Multipliers 0.5 and 0.25 make exact ties v = k + 0.5; the others round in float32.
  const std::vector<float> s_acc = {0.5f, 0.25f, 0.013f, 3.0e-4f, 1.7f, 1e-6f, 0.1f};
  const Tensor scale = Tensor::from_vector(s_acc, {static_cast<int64_t>(s_acc.size())});
  for (const float s_out : {1.0f, 0.047f, 0.75f, 6.0f / 127.5f, 6.0f / 126.5f}) {
    std::vector<float> multipliers;
    for (const float s : s_acc) multipliers.push_back(s / s_out);
    // 3 * 7 planes of 45 elements: above the parallel grain too for the larger case.
    for (const int64_t inner : {45, 2000}) {
      const Tensor acc = tie_accumulators(3, multipliers, inner);
      for (const FusedActivation act :
           {FusedActivation::kNone, FusedActivation::kReLU, FusedActivation::kReLU6}) {
        const std::vector<int8_t> fast =
            tnn_requantize_planes(acc, scale, s_out, act).to_vector<int8_t>();
        EXPECT_EQ(fast, tnn_requantize(acc, scale, s_out, act).to_vector<int8_t>())
            << "s_out " << s_out << ", activation " << static_cast<int>(act);
      }
    }
  }
}

TEST(TnnRequantizePlanesTest, TiesSaturationAndActivations) {
  // Multiplier 0.5 per channel 0, 1 per channel 1: v = 2.5 -> 3, -2.5 -> -3 (away from zero),
  // 255 -> 127.5 -> 127, -257 -> -128.5 -> -128; relu6 caps at float2int8(6 / 1) = 6.
  const Tensor acc = Tensor::from_vector<int32_t>({5, -5, 255, -257, 7, -7, 200, -200}, {1, 2, 4});
  const Tensor scale = Tensor::from_vector<float>({0.5f, 1.0f}, {2});
  const auto run = [&](FusedActivation act) {
    return tnn_requantize_planes(acc, scale, 1.0f, act).to_vector<int8_t>();
  };
  EXPECT_EQ(run(FusedActivation::kNone), (std::vector<int8_t>{3, -3, 127, -128, 7, -7, 127, -128}));
  EXPECT_EQ(run(FusedActivation::kReLU), (std::vector<int8_t>{3, 0, 127, 0, 7, 0, 127, 0}));
  EXPECT_EQ(run(FusedActivation::kReLU6), (std::vector<int8_t>{3, 0, 6, 0, 6, 0, 6, 0}));
  EXPECT_THROW(tnn_requantize_planes(acc, Tensor::from_vector<float>({1.0f}, {1}), 1.0f,
                                     FusedActivation::kNone),
               Error);
}

// sum_k x[n, k] * w[oc, k] + bias[oc] in int64: the reference of exact_accumulators for a
// linear layer.
std::vector<int32_t> linear_reference(const std::vector<float>& x, const std::vector<int8_t>& w,
                                      const std::vector<int32_t>& bias, int64_t batch, int64_t out,
                                      int64_t k) {
  std::vector<int32_t> acc;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oc = 0; oc < out; ++oc) {
      int64_t sum = bias[oc];
      for (int64_t i = 0; i < k; ++i) sum += static_cast<int64_t>(x[n * k + i]) * w[oc * k + i];
      acc.push_back(static_cast<int32_t>(sum));
    }
  }
  return acc;
}

// A float32 linear (x [N, K] times digit [OC, K] transposed), summed in order.
Tensor linear_float32(const Tensor& x, const Tensor& digit) {
  const int64_t batch = x.size(0), k = x.size(1), out = digit.size(0);
  const float* xv = x.data<float>();
  const float* wv = digit.data<float>();
  Tensor y = Tensor::empty({batch, out});
  float* yv = y.data<float>();
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oc = 0; oc < out; ++oc) {
      float sum = 0.0f;
      for (int64_t i = 0; i < k; ++i) sum += xv[n * k + i] * wv[oc * k + i];
      yv[n * out + oc] = sum;
    }
  }
  return y;
}

TEST(ExactAccumulatorsTest, SplitsWideWeightsAndAddsTheBias) {
  // K = 1100 taps of |w| = 127 against |x| = 127: sum |w| * max |x| ~ 1.8e7 > 2^24, so the
  // weight is split into 16 * high + low.
  const int64_t batch = 2, out = 3, k = 1100;
  std::mt19937 gen(3);
  std::vector<float> x(batch * k);
  std::vector<int8_t> w(out * k);
  for (float& v : x) v = static_cast<float>(static_cast<int>(gen() % 2) * 254 - 127);
  for (int8_t& v : w) v = static_cast<int8_t>(static_cast<int>(gen() % 255) - 127);
  for (int64_t i = 0; i < k; ++i) w[i] = 127;  // channel 0 at the bound
  const std::vector<int32_t> bias = {5, -7, 1 << 20};
  const Tensor xt = Tensor::from_vector(x, {batch, k});
  const Tensor wt = Tensor::from_vector(w, {out, k});
  EXPECT_EQ(exact_weight_digits(wt, 127.0f).size(), 2u);
  EXPECT_EQ(exact_weight_digits(wt, 1.0f).size(), 1u);
  int calls = 0;
  const Tensor acc =
      exact_accumulators(wt, 127.0f, Tensor::from_vector(bias, {out}), [&](const Tensor& digit) {
        ++calls;
        return linear_float32(xt, digit);
      });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(acc.to_vector<int32_t>(), linear_reference(x, w, bias, batch, out, k));
  // Inputs so large that even the split is inexact: no accumulators.
  EXPECT_FALSE(exact_accumulators(wt, 1e6f, Tensor(), [&](const Tensor& digit) {
                 return linear_float32(xt, digit);
               }).defined());
}

}  // namespace
}  // namespace qat::quant
