#include "core/ops/fake_quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "tests/testing/errors.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using qat::testing::error_of;

using testing::all_close;
using testing::gradcheck;
using testing::random_leaf;

constexpr RoundingMode kModes[] = {RoundingMode::kHalfEvenDiv, RoundingMode::kHalfAway,
                                   RoundingMode::kHalfEvenMul};

Tensor floats(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

Tensor int32s(const std::vector<int32_t>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

TEST(FakeQuantOp, PerTensorForward) {
  // s = 0.5, zp = 2, quint8-like [0, 15]: x / s + zp = [-2, 2, 3, 9, 19] -> clamp [0, 2, 3, 9, 15]
  const Tensor x = floats({-2.0f, 0.0f, 0.5f, 3.5f, 8.5f});
  const Tensor y = fake_quantize_per_tensor_affine(x, floats({0.5f}), int32s({2}), 0, 15,
                                                   RoundingMode::kHalfEvenDiv);
  EXPECT_TRUE(all_close(y, floats({-1.0f, 0.0f, 0.5f, 3.5f, 6.5f}), 0, 0));
  // 0-d scale and int64 zero point are accepted too; float64 input keeps its dtype.
  const Tensor y64 = fake_quantize_per_tensor_affine(x.to(DType::kFloat64), Tensor::scalar(0.5),
                                                     Tensor::scalar(2, DType::kInt64), 0, 15);
  EXPECT_EQ(y64.dtype(), DType::kFloat64);
  EXPECT_TRUE(all_close(y64, floats({-1.0f, 0.0f, 0.5f, 3.5f, 6.5f}), 0, 0));
}

TEST(FakeQuantOp, PerChannelUsesItsAxis) {
  // x [2, 3]; per channel along dim 1 (also written -1): column c uses scale[c].
  const Tensor x =
      Tensor::from_vector(std::vector<float>{1.3f, 1.3f, 1.3f, -0.7f, -0.7f, -0.7f}, {2, 3});
  const Tensor scale = floats({1.0f, 0.5f, 0.25f});
  const Tensor expected =
      Tensor::from_vector(std::vector<float>{1.0f, 1.5f, 1.25f, -1.0f, -0.5f, -0.75f}, {2, 3});
  for (int64_t axis : {1, -1}) {
    const Tensor y = fake_quantize_per_channel_affine(x, scale, int32s({0, 0, 0}), axis, -128, 127,
                                                      RoundingMode::kHalfEvenMul);
    EXPECT_TRUE(all_close(y, expected, 0, 0)) << "axis " << axis;
  }
  // Along dim 0 with scales [1, 0.25].
  const Tensor y0 =
      fake_quantize_per_channel_affine(x, floats({1.0f, 0.25f}), int32s({0, 1}), 0, -128, 127);
  EXPECT_TRUE(all_close(
      y0, Tensor::from_vector(std::vector<float>{1, 1, 1, -0.75f, -0.75f, -0.75f}, {2, 3}), 0, 0));
}

// dx = dy * (quant_min <= q <= quant_max): exactly at the bounds the gradient passes, just
// outside it does not.
TEST(FakeQuantOp, SteMaskAtClipBoundaries) {
  // s = 0.1, zp = 0, [-128, 127]: -12.8 and 12.7 sit on the bounds; +-0.06 beyond rounds out.
  for (RoundingMode mode : kModes) {
    Tensor x = floats({-12.8f, 12.7f, -12.86f, 12.76f, 0.0f, 5.0f, -50.0f, 50.0f});
    x.requires_grad_();
    const Tensor y =
        fake_quantize_per_tensor_affine(x, floats({0.1f}), int32s({0}), -128, 127, mode);
    y.backward(floats({1, 2, 3, 4, 5, 6, 7, 8}));
    EXPECT_TRUE(all_close(x.grad(), floats({1, 2, 0, 0, 5, 6, 0, 0}), 0, 0))
        << rounding_mode_name(mode);
  }
  // Unsigned with a zero point, per channel: channel 1 has [qmin, qmax] = [0, 255] at zp 100,
  // s = 1, so x in [-100, 155] passes.
  Tensor x = Tensor::from_vector(std::vector<float>{0, -100, 0, 155, 0, -101, 0, 156}, {4, 2});
  x.requires_grad_();
  const Tensor y =
      fake_quantize_per_channel_affine(x, floats({1.0f, 1.0f}), int32s({0, 100}), 1, 0, 255);
  y.backward(Tensor::ones({4, 2}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1, 1, 1, 1, 1, 0, 1, 0}));
}

// With every element inside the grid the backward hands dy on unchanged (no pass); the result
// must be what the masked pass gives, and accumulating into a leaf must not alias dy.
TEST(FakeQuantOp, AllInsideGridPassesTheGradientThrough) {
  for (RoundingMode mode : kModes) {
    Tensor x = floats({-12.8f, 12.7f, 0.0f, 5.0f});
    x.requires_grad_();
    const Tensor dy = floats({1, 2, 3, 4});
    const Tensor y = fake_quantize_per_tensor_affine(mul(x, floats({1.0f})), floats({0.1f}),
                                                     int32s({0}), -128, 127, mode);
    y.backward(dy);
    EXPECT_EQ(x.grad().to_vector<float>(), dy.to_vector<float>()) << rounding_mode_name(mode);
    EXPECT_NE(x.grad().data<float>(), dy.data<float>()) << rounding_mode_name(mode);
    // Per channel, fed straight from the leaf; a second backward accumulates.
    Tensor w = Tensor::from_vector(std::vector<float>{0.5f, -0.5f, 1.0f, -1.0f}, {2, 2});
    w.requires_grad_();
    const Tensor g = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
    for (int pass = 0; pass < 2; ++pass) {
      fake_quantize_per_channel_affine(w, floats({0.01f, 0.01f}), int32s({0, 0}), 0, -128, 127,
                                       mode)
          .backward(g);
    }
    EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{2, 4, 6, 8}))
        << rounding_mode_name(mode);
    EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{1, 2, 3, 4})) << rounding_mode_name(mode);
  }
}

TEST(FakeQuantOp, ScaleAndZeroPointGetNoGradient) {
  Tensor x = floats({0.3f, -0.2f});
  x.requires_grad_();
  Tensor scale = floats({0.1f});
  scale.requires_grad_();
  const Tensor y = fake_quantize_per_tensor_affine(x, scale, int32s({0}), -128, 127);
  sum(y).backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(scale.grad().defined());
}

TEST(FakeQuantOp, RecordsNothingWithoutGrad) {
  Tensor x = floats({0.3f});
  x.requires_grad_();
  NoGradGuard no_grad;
  EXPECT_FALSE(
      fake_quantize_per_tensor_affine(x, floats({0.1f}), int32s({0}), -128, 127).requires_grad());
}

TEST(FakeQuantOp, ErrorsNameTheProblem) {
  const Tensor x = Tensor::zeros({2, 3});
  const Tensor s = floats({0.1f}), zp = int32s({0});
  EXPECT_NE(error_of([&] {
              fake_quantize_per_tensor_affine(x, s, zp, 5, 4);
            }).find("expected quant_min <= quant_max, got [5, 4]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              fake_quantize_per_tensor_affine(x, floats({0.0f}), zp, 0, 255);
            }).find("expected a positive finite scale, got scale[0] = 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              fake_quantize_per_tensor_affine(x, s, int32s({300}), 0, 255);
            }).find("got zero_point[0] = 300"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              fake_quantize_per_tensor_affine(x, s, floats({0}), 0, 255);
            }).find("expected an integer zero_point, got float32"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              fake_quantize_per_tensor_affine(x, floats({1, 2}), zp, 0, 255);
            }).find("expected one-element scale and zero_point, got [2] and [1]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { fake_quantize_per_channel_affine(x, s, zp, 1, 0, 255); })
                .find("expected scale and zero_point of shape [3] (size of dim 1 of the input "
                      "[2, 3]), got [1] and [1] (HINT: did the observer see any data?)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              fake_quantize_per_channel_affine(x, s, zp, 2, 0, 255);
            }).find("fake_quantize_per_channel_affine: dim 2 out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              fake_quantize_per_tensor_affine(Tensor::zeros({2}, DType::kInt32), s, zp, 0, 255);
            }).find("expected a float32 or float64 input, got int32"),
            std::string::npos);
}

// ---- LSQ

// LSQ's gradients are the exact derivatives of the surrogate
//   f(x, s) = (clamp(x / s + c + zp, quant_min, quant_max) - zp) * s
// with the rounding offset c = round(x / s) - x / s frozen at the evaluation point (the STE
// through round). fn returns f's value but carries the LSQ op's autograd record, so gradcheck
// compares LSQ's analytic gradients against finite differences of the surrogate.
struct LsqCase {
  Shape shape;
  std::optional<int64_t> axis;
  int64_t quant_min, quant_max;
  std::vector<int32_t> zero_point;  // [channels]
};

::testing::AssertionResult lsq_gradcheck(const LsqCase& c, RoundingMode mode) {
  const int64_t channels = c.axis ? c.shape[*c.axis] : 1;
  Tensor x = random_leaf(c.shape, 1, -1.0, 1.0);
  Tensor scale = random_leaf({channels}, 2, 0.02, 0.04);
  const Tensor zp = Tensor::from_vector(c.zero_point, {channels});
  // scale and zero point broadcast along the axis: [C, 1, ..., 1]
  Shape bshape(c.axis ? c.shape.size() - *c.axis : 1, 1);
  bshape[0] = channels;
  const Tensor zp_b = zp.to(DType::kFloat64).view(bshape);
  // Keep clear of the clamp's kinks: no element may round exactly onto quant_min / quant_max.
  const Tensor s_b = scale.detach().view(bshape);
  {
    const Tensor q = add(div(x.detach(), s_b), zp_b);
    double* px = x.data<double>();
    const double* pq = q.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double r = std::round(pq[i]);
      if (r == c.quant_min || r == c.quant_max) px[i] *= 0.5;
    }
  }
  const Tensor x_over_s = div(x.detach(), s_b);
  Tensor offset = Tensor::empty(x.shape(), DType::kFloat64);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x_over_s.data<double>()[i];
    offset.data<double>()[i] = std::round(v) - v;  // random doubles: no ties
  }
  auto fn = [&](const std::vector<Tensor>& in) {
    const Tensor y = c.axis ? fake_quantize_lsq_per_channel(in[0], in[1], zp, *c.axis, c.quant_min,
                                                            c.quant_max, 1.0, mode)
                            : fake_quantize_lsq_per_tensor(in[0], in[1], zp, c.quant_min,
                                                           c.quant_max, 1.0, mode);
    Tensor surrogate_minus_y;
    {
      NoGradGuard no_grad;
      const Tensor s = in[1].detach().view(bshape);
      const Tensor inner =
          clamp(add(add(div(in[0].detach(), s), offset), zp_b), static_cast<double>(c.quant_min),
                static_cast<double>(c.quant_max));
      surrogate_minus_y = sub(mul(sub(inner, zp_b), s), y.detach());
    }
    return add(y, surrogate_minus_y);
  };
  return gradcheck(fn, {x, scale});
}

TEST(FakeQuantOp, LsqGradcheck) {
  const std::vector<LsqCase> cases = {
      {{3, 4, 5}, std::nullopt, -128, 127, {0}},  // everything inside
      {{3, 4, 5}, std::nullopt, -20, 20, {3}},    // many clipped on both sides
      {{30}, std::nullopt, 0, 30, {10}},          // unsigned with a zero point
      {{3, 4, 5}, 1, -20, 20, {0, 2, -3, 5}},     // per channel, middle axis
      {{4, 6}, 0, -127, 127, {0, 0, 0, 0}},       // per channel, axis 0, narrow range
      {{2, 3, 4}, 2, -10, 12, {1, 0, -1, 2}},     // per channel, last axis
  };
  for (const LsqCase& c : cases) {
    for (RoundingMode mode : kModes) {
      EXPECT_TRUE(lsq_gradcheck(c, mode)) << shape_str(c.shape) << " " << rounding_mode_name(mode);
    }
  }
}

TEST(FakeQuantOp, LsqGradFactorScalesOnlyTheScaleGradient) {
  auto grads = [](double grad_factor) {
    Tensor x = random_leaf({50}, 3, -1.0, 1.0);
    Tensor scale = Tensor::from_vector(std::vector<double>{0.03}, {1});
    scale.requires_grad_();
    sum(fake_quantize_lsq_per_tensor(x, scale, int32s({0}), -20, 20, grad_factor)).backward();
    return std::make_pair(x.grad(), scale.grad());
  };
  const auto [dx1, ds1] = grads(1.0);
  const auto [dx4, ds4] = grads(0.25);
  EXPECT_TRUE(all_close(dx4, dx1, 0, 0));
  EXPECT_NEAR(ds4.item(), 0.25 * ds1.item(), 1e-12);
  EXPECT_NE(ds1.item(), 0.0);
}

TEST(FakeQuantOp, LsqForwardAndInputGradientEqualTheSteOp) {
  Tensor x1 = random_leaf({4, 9}, 4, -1.0, 1.0), x2 = x1.detach().clone();
  x2.requires_grad_();
  Tensor scale = Tensor::from_vector(std::vector<double>{0.02, 0.03, 0.05, 0.01}, {4});
  scale.requires_grad_();
  const Tensor zp = int32s({0, 1, -1, 0});
  const Tensor y1 = fake_quantize_lsq_per_channel(x1, scale, zp, 0, -30, 30, 0.1);
  const Tensor y2 = fake_quantize_per_channel_affine(x2, scale, zp, 0, -30, 30);
  EXPECT_TRUE(all_close(y1, y2, 0, 0));
  sum(y1).backward();
  sum(y2).backward();
  EXPECT_TRUE(all_close(x1.grad(), x2.grad(), 0, 0));
  EXPECT_EQ(scale.grad().shape(), (Shape{4}));
}

}  // namespace
}  // namespace qat::ops
