#include "core/kernels/fake_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/shape.h"

namespace qat::kernels {
namespace {

constexpr RoundingMode kModes[] = {RoundingMode::kHalfEvenDiv, RoundingMode::kHalfAway,
                                   RoundingMode::kHalfEvenMul};

template <class T>
std::vector<T> random_values(int64_t n, uint64_t seed, double low, double high) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Per-tensor fake quant of x; returns y and fills mask.
template <class T>
std::vector<T> fake_quant(RoundingMode mode, const std::vector<T>& x, T scale, int32_t zero_point,
                          int64_t quant_min, int64_t quant_max, std::vector<uint8_t>* mask) {
  std::vector<T> y(x.size());
  mask->assign(x.size(), 2);
  fake_quant_forward(mode, x.data(), &scale, &zero_point, quant_min, quant_max, 1, 1,
                     static_cast<int64_t>(x.size()), y.data(), mask->data());
  return y;
}

// ---- rounding semantics

// Exact ties x / s = k + 0.5 (powers of two and 3: both x / s and x * (1 / s) are exact).
TEST(FakeQuantKernel, RoundsExactTiesPerMode) {
  const std::vector<float> ties = {0.5f, 1.5f, 2.5f, 3.5f, -0.5f, -1.5f, -2.5f, -3.5f, 126.5f};
  const std::vector<float> half_even = {0, 2, 2, 4, -0.0f, -2, -2, -4, 126};
  const std::vector<float> half_away = {1, 2, 3, 4, -1, -2, -3, -4, 127};
  for (float s : {1.0f, 0.25f, 0.0078125f, 4.0f, 3.0f}) {
    std::vector<float> x;
    for (float t : ties) x.push_back(t * s);
    std::vector<uint8_t> mask;
    const std::vector<float> div =
        fake_quant(RoundingMode::kHalfEvenDiv, x, s, 0, -128, 127, &mask);
    const std::vector<float> away = fake_quant(RoundingMode::kHalfAway, x, s, 0, -128, 127, &mask);
    const std::vector<float> mul =
        fake_quant(RoundingMode::kHalfEvenMul, x, s, 0, -128, 127, &mask);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(div[i], half_even[i] * s) << "half_even_div, x / s = " << ties[i];
      EXPECT_EQ(mul[i], half_even[i] * s) << "half_even_mul, x / s = " << ties[i];
      EXPECT_EQ(away[i], half_away[i] * s) << "half_away, x / s = " << ties[i];
    }
  }
}

// ONNX QuantizeLinear / TensorRT: saturate(rint(x / s) + zp) with the quotient in float32.
// A million values per scale, spanning the clamp, must match bit for bit.
TEST(FakeQuantKernel, HalfEvenDivIsFloat32RintOfQuotient) {
  const int64_t n = 1000000;
  int64_t mismatches = 0, saturated = 0;
  for (float s : {0.0123456f, 0.1f, 1.0f / 127.0f, 3.7f, 2.5e-4f}) {
    for (int32_t zp : {0, -3, 17}) {
      const std::vector<float> x = random_values<float>(n, 7 + zp, -140.0 * s, 140.0 * s);
      std::vector<uint8_t> mask;
      const std::vector<float> y =
          fake_quant(RoundingMode::kHalfEvenDiv, x, s, zp, -128, 127, &mask);
      for (int64_t i = 0; i < n; ++i) {
        const float quotient = x[i] / s;  // one float32 division
        const float q = std::rint(quotient) + static_cast<float>(zp);
        const float expected = (std::clamp(q, -128.0f, 127.0f) - static_cast<float>(zp)) * s;
        mismatches += y[i] != expected || mask[i] != (q >= -128 && q <= 127);
        saturated += q < -128 || q > 127;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(saturated, 0);  // the range covered the clamp
}

// TNN's float2int8(v) = (int8)clamp(v + (v >= 0 ? 0.5f : -0.5f), -128, 127) of v = x / s + zp,
// all in float32 (naive_compute.cc; the X86 kernels agree).
int8_t tnn_float2int8(float v) {
  return static_cast<int8_t>(std::max(std::min(v + (v >= 0.f ? 0.5f : -0.5f), 127.0f), -128.0f));
}

TEST(FakeQuantKernel, HalfAwayFollowsTnnFloat2Int8) {
  const int64_t n = 1000000;
  int64_t mismatches = 0;
  for (float s : {0.0123456f, 0.1f, 1.0f / 127.0f, 3.7f}) {
    const std::vector<float> x = random_values<float>(n, 11, -140.0 * s, 140.0 * s);
    std::vector<uint8_t> mask;
    const std::vector<float> y = fake_quant(RoundingMode::kHalfAway, x, s, 0, -128, 127, &mask);
    for (int64_t i = 0; i < n; ++i) {
      mismatches += y[i] != static_cast<float>(tnn_float2int8(x[i] / s)) * s;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// TNN adds 0.5 in float32 before truncating: 0.5 - 2^-25 rounds up to 1 (the sum is a tie that
// float32 rounds to 1.0), where an exact round-half-away would give 0. We follow TNN.
TEST(FakeQuantKernel, HalfAwayKeepsTnnFloat32AdditionQuirk) {
  const float v = 0.5f - std::ldexp(1.0f, -25);
  EXPECT_EQ(std::round(v), 0.0f);
  EXPECT_EQ(tnn_float2int8(v), 1);
  std::vector<uint8_t> mask;
  EXPECT_EQ(
      fake_quant(RoundingMode::kHalfAway, std::vector<float>{v, -v}, 1.0f, 0, -128, 127, &mask),
      (std::vector<float>{1.0f, -1.0f}));
}

// PyTorch: inv_scale = 1.0f / s, q = zp + nearbyint(x * inv_scale). The product can round onto
// (or off) a tie where the quotient does not, so it differs from kHalfEvenDiv, but rarely.
TEST(FakeQuantKernel, HalfEvenMulMultipliesByFloatReciprocal) {
  const float s = 0.1f;
  const float inv = 1.0f / s;
  int64_t differ = 0;
  const std::vector<float> x = random_values<float>(1000000, 5, -12.0, 12.0);
  std::vector<uint8_t> mask;
  const std::vector<float> mul = fake_quant(RoundingMode::kHalfEvenMul, x, s, 0, -128, 127, &mask);
  const std::vector<float> div = fake_quant(RoundingMode::kHalfEvenDiv, x, s, 0, -128, 127, &mask);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(mul[i], std::nearbyint(x[i] * inv) * s) << x[i];
    differ += mul[i] != div[i];
  }
  // Rare but real (onnx_qdq.md §9: 3 in 3 million for ORT vs torch).
  EXPECT_LT(differ, 100);
}

// ---- the straight-through mask at the clip boundaries

// The fast kernel rounds without libm on values pulled near the grid: NaN, infinities, huge
// values and the sign of zero come out bit for bit as the reference's.
// Repeated past one thread block (4096) at an odd length, so they pass through the vector loop
// body, its remainder and a block boundary in every lane position.
TEST(FakeQuantKernel, SpecialValuesMatchRefBitForBit) {
  const std::vector<float> specials = {std::nanf(""), INFINITY, -INFINITY, 1e30f,   -1e30f,
                                       -0.0f,         0.0f,     -0.3f,     -0.6f,   -1e-7f,
                                       3e9f,          -3e9f,    0.125f,    -0.125f, 0.375f};
  std::vector<float> x;
  while (x.size() < 5000) x.insert(x.end(), specials.begin(), specials.end());
  x.pop_back();
  for (const RoundingMode mode : kModes) {
    for (const int32_t zp : {0, 3}) {
      std::vector<float> fast(x.size()), ref(x.size());
      std::vector<uint8_t> fast_mask(x.size()), ref_mask(x.size());
      const float scale = 0.25f;
      fake_quant_forward(mode, x.data(), &scale, &zp, -128, 127, 1, 1,
                         static_cast<int64_t>(x.size()), fast.data(), fast_mask.data());
      fake_quant_forward_ref(mode, x.data(), &scale, &zp, -128, 127, 1, 1,
                             static_cast<int64_t>(x.size()), ref.data(), ref_mask.data());
      EXPECT_EQ(std::memcmp(fast.data(), ref.data(), x.size() * sizeof(float)), 0)
          << rounding_mode_name(mode) << ", zero point " << zp;
      EXPECT_EQ(fast_mask, ref_mask) << rounding_mode_name(mode) << ", zero point " << zp;
    }
  }
}

TEST(FakeQuantKernel, MaskIsInclusiveAtTheClipBoundaries) {
  // s = 1, zp = 0, [-128, 127]: the mask tests the rounded value, so -128.5 (ties to -128) is
  // inside and 127.5 (ties to 128) is outside for the half-even modes.
  const std::vector<float> x = {-128.0f,  127.0f,  -128.5f, 127.5f,
                                -128.51f, 127.49f, -129.0f, 128.0f};
  const std::vector<uint8_t> half_even_mask = {1, 1, 1, 0, 0, 1, 0, 0};
  const std::vector<uint8_t> half_away_mask = {1, 1, 0, 0, 0, 1, 0, 0};
  const std::vector<float> clamped = {-128, 127, -128, 127, -128, 127, -128, 127};
  for (RoundingMode mode : kModes) {
    std::vector<uint8_t> mask;
    const std::vector<float> y = fake_quant(mode, x, 1.0f, 0, -128, 127, &mask);
    EXPECT_EQ(y, clamped) << rounding_mode_name(mode);
    EXPECT_EQ(mask, mode == RoundingMode::kHalfAway ? half_away_mask : half_even_mask)
        << rounding_mode_name(mode);
  }
}

TEST(FakeQuantKernel, MaskWithZeroPointAndUnsignedRange) {
  // quint8 [0, 255], zp 10, s = 0.5: x in [-5, 122.5] is inside.
  const std::vector<float> x = {-5.0f, 122.5f, -5.5f, 123.0f, -5.25f, 122.75f};
  for (RoundingMode mode : kModes) {
    std::vector<uint8_t> mask;
    const std::vector<float> y = fake_quant(mode, x, 0.5f, 10, 0, 255, &mask);
    EXPECT_EQ(mask[0], 1);
    EXPECT_EQ(mask[1], 1);
    EXPECT_EQ(mask[2], 0);
    EXPECT_EQ(mask[3], 0);
    EXPECT_EQ(y[2], -5.0f);
    EXPECT_EQ(y[3], 122.5f);
  }
}

TEST(FakeQuantKernel, NarrowRangeClipsAtMinus127) {
  std::vector<uint8_t> mask;
  const std::vector<float> y =
      fake_quant(RoundingMode::kHalfEvenDiv, std::vector<float>{-127.0f, -127.6f, -128.0f}, 1.0f, 0,
                 -127, 127, &mask);
  EXPECT_EQ(y, (std::vector<float>{-127, -127, -127}));
  EXPECT_EQ(mask, (std::vector<uint8_t>{1, 0, 0}));
}

// ---- fast vs reference

struct Case {
  Shape shape;
  int64_t axis;  // -1: per tensor
};

// Odd sizes, every axis, and shapes large enough for the OpenMP branches.
const std::vector<Case> kCases = {
    {{7}, -1},
    {{3, 5, 7, 2}, -1},
    {{3, 5, 7, 2}, 0},
    {{3, 5, 7, 2}, 1},
    {{3, 5, 7, 2}, 2},
    {{3, 5, 7, 2}, 3},
    {{1}, 0},
    {{4, 33, 37, 41}, -1},
    {{4, 33, 37, 41}, 0},
    {{4, 33, 37, 41}, 1},
    {{4, 33, 37, 41}, 3},
    {{2, 3, 40000}, 1},
};

struct View {
  int64_t outer = 1, channels = 1, inner = 1;
};

View view_of(const Case& c) {
  View v;
  if (c.axis < 0) {
    v.inner = shape_numel(c.shape);
    return v;
  }
  for (int64_t d = 0; d < c.axis; ++d) v.outer *= c.shape[d];
  v.channels = c.shape[c.axis];
  for (size_t d = c.axis + 1; d < c.shape.size(); ++d) v.inner *= c.shape[d];
  return v;
}

template <class T>
void expect_forward_fast_matches_ref(const Case& c, RoundingMode mode) {
  const View v = view_of(c);
  const int64_t n = shape_numel(c.shape);
  const std::vector<T> x = random_values<T>(n, 3, -3.0, 3.0);
  const std::vector<T> scale = random_values<T>(v.channels, 4, 0.005, 0.05);
  std::vector<int32_t> zero_point(v.channels);
  for (int64_t ch = 0; ch < v.channels; ++ch) zero_point[ch] = static_cast<int32_t>(ch % 7) - 3;
  std::vector<T> fast(n), ref(n);
  std::vector<uint8_t> fast_mask(n, 2), ref_mask(n, 3);
  const int64_t fast_outside =
      fake_quant_forward(mode, x.data(), scale.data(), zero_point.data(), -100, 90, v.outer,
                         v.channels, v.inner, fast.data(), fast_mask.data());
  const int64_t ref_outside =
      fake_quant_forward_ref(mode, x.data(), scale.data(), zero_point.data(), -100, 90, v.outer,
                             v.channels, v.inner, ref.data(), ref_mask.data());
  const std::string what =
      shape_str(c.shape) + " axis " + std::to_string(c.axis) + " " + rounding_mode_name(mode);
  EXPECT_EQ(std::memcmp(fast.data(), ref.data(), n * sizeof(T)), 0) << what;
  EXPECT_EQ(fast_mask, ref_mask) << what;
  EXPECT_EQ(fast_outside, std::count(ref_mask.begin(), ref_mask.end(), 0)) << what;
  EXPECT_EQ(fast_outside, ref_outside) << what;
  // Null mask: inference, same values.
  std::vector<T> no_mask(n);
  fake_quant_forward(mode, x.data(), scale.data(), zero_point.data(), -100, 90, v.outer, v.channels,
                     v.inner, no_mask.data(), nullptr);
  EXPECT_EQ(std::memcmp(no_mask.data(), ref.data(), n * sizeof(T)), 0) << what;
}

TEST(FakeQuantKernel, ForwardFastMatchesRef) {
  for (const Case& c : kCases) {
    for (RoundingMode mode : kModes) {
      expect_forward_fast_matches_ref<float>(c, mode);
      expect_forward_fast_matches_ref<double>(c, mode);
    }
  }
}

template <class T>
void expect_lsq_fast_matches_ref(const Case& c, RoundingMode mode) {
  const View v = view_of(c);
  const int64_t n = shape_numel(c.shape);
  const std::vector<T> x = random_values<T>(n, 5, -3.0, 3.0);
  const std::vector<T> dy = random_values<T>(n, 6, -1.0, 1.0);
  const std::vector<T> scale = random_values<T>(v.channels, 7, 0.005, 0.05);
  const std::vector<int32_t> zero_point(v.channels, 2);
  std::vector<T> fast_dx(n), ref_dx(n), fast_ds(v.channels), ref_ds(v.channels);
  fake_quant_lsq_backward(mode, x.data(), scale.data(), zero_point.data(), -100, 90, 0.5, v.outer,
                          v.channels, v.inner, dy.data(), fast_dx.data(), fast_ds.data());
  fake_quant_lsq_backward_ref(mode, x.data(), scale.data(), zero_point.data(), -100, 90, 0.5,
                              v.outer, v.channels, v.inner, dy.data(), ref_dx.data(),
                              ref_ds.data());
  const std::string what =
      shape_str(c.shape) + " axis " + std::to_string(c.axis) + " " + rounding_mode_name(mode);
  EXPECT_EQ(fast_dx, ref_dx) << what;
  // Same terms, summed in a different order (both in double).
  for (int64_t ch = 0; ch < v.channels; ++ch) {
    EXPECT_NEAR(fast_ds[ch], ref_ds[ch], 1e-6 * (1 + std::fabs(ref_ds[ch]))) << what;
  }
  // The forward's mask is the backward's: dx = dy * mask.
  std::vector<T> y(n);
  std::vector<uint8_t> mask(n);
  fake_quant_forward(mode, x.data(), scale.data(), zero_point.data(), -100, 90, v.outer, v.channels,
                     v.inner, y.data(), mask.data());
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(fast_dx[i], mask[i] ? dy[i] : T(0)) << what;
}

TEST(FakeQuantKernel, LsqBackwardFastMatchesRef) {
  for (const Case& c : kCases) {
    for (RoundingMode mode : kModes) {
      expect_lsq_fast_matches_ref<float>(c, mode);
      expect_lsq_fast_matches_ref<double>(c, mode);
    }
  }
}

TEST(FakeQuantKernel, LsqScaleGradientTerms) {
  // s = 0.5, zp = 1, [-4, 3]: x = 0.3 -> x/s = 0.6, q - zp = 1, ds = 0.4; x = -10 -> below,
  // ds = -4 - 1; x = 10 -> above, ds = 3 - 1. dy = 1, grad_factor 2.
  const std::vector<double> x = {0.3, -10.0, 10.0}, dy = {1.0, 1.0, 1.0};
  const double scale = 0.5;
  const int32_t zero_point = 1;
  for (RoundingMode mode : kModes) {
    std::vector<double> dx(3);
    double dscale = 0;
    fake_quant_lsq_backward(mode, x.data(), &scale, &zero_point, -4, 3, 2.0, 1, 1, 3, dy.data(),
                            dx.data(), &dscale);
    EXPECT_EQ(dx, (std::vector<double>{1, 0, 0}));
    EXPECT_NEAR(dscale, 2.0 * (0.4 - 5.0 + 2.0), 1e-12) << rounding_mode_name(mode);
  }
}

}  // namespace
}  // namespace qat::kernels
