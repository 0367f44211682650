#include "core/kernels/elementwise.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace qat::kernels {
namespace {

template <class T>
std::vector<T> random_values(const Shape& shape, uint64_t seed, double low = -2.0,
                             double high = 2.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<T> v(shape_numel(shape));
  for (T& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Broadcast pairs covering every fast path and the reference fallback, on odd sizes; the
// [4, 33, 37, 41] ones are large enough to run the OpenMP branches.
const std::vector<std::pair<Shape, Shape>> kBroadcastPairs = {
    {{3, 5, 7}, {3, 5, 7}},              // same shape
    {{3, 5, 7, 9}, {5, 1, 1}},           // per-channel, [C, 1, 1]
    {{3, 5, 7, 9}, {1, 5, 1, 1}},        // per-channel, [1, C, 1, 1]
    {{3, 5, 7, 9}, {9}},                 // last dim
    {{3, 5, 7, 9}, {}},                  // 0-d scalar
    {{3, 5, 7, 9}, {1, 1}},              // one element, rank 2
    {{3, 5, 7, 9}, {3, 5, 1, 1}},        // [N, C] of a [N, C, H, W]
    {{7, 13}, {7, 1}},                   // column
    {{3, 5, 7, 9}, {3, 1, 7, 1}},        // not a channel: reference path
    {{3, 1, 5}, {1, 4, 1}},              // both broadcast: reference path
    {{4, 33, 37, 41}, {33, 1, 1}},       // parallel per-channel
    {{4, 33, 37, 41}, {}},               // parallel scalar
    {{4, 33, 37, 41}, {4, 33, 37, 41}},  // parallel same shape
};

Shape broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (size_t i = 1; i <= a.size(); ++i) out[out.size() - i] = a[a.size() - i];
  for (size_t i = 1; i <= b.size(); ++i)
    if (b[b.size() - i] != 1) out[out.size() - i] = b[b.size() - i];
  return out;
}

template <class T>
void expect_binary_fast_matches_ref(const Shape& a_shape, const Shape& b_shape) {
  const Shape y_shape = broadcast(a_shape, b_shape);
  const std::vector<T> a = random_values<T>(a_shape, 1);
  const std::vector<T> b = random_values<T>(b_shape, 2, 0.5, 1.5);  // keeps div away from 0
  for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul, BinaryOp::kDiv}) {
    std::vector<T> fast(shape_numel(y_shape)), ref(fast.size());
    binary(op, a.data(), a_shape, b.data(), b_shape, fast.data(), y_shape);
    binary_ref(op, a.data(), a_shape, b.data(), b_shape, ref.data(), y_shape);
    // Same arithmetic per element: the paths must agree exactly.
    EXPECT_EQ(fast, ref) << shape_str(a_shape) << " op " << static_cast<int>(op) << " "
                         << shape_str(b_shape);
    // Swapped operands exercise the "left operand broadcasts" branch.
    binary(op, b.data(), b_shape, a.data(), a_shape, fast.data(), y_shape);
    binary_ref(op, b.data(), b_shape, a.data(), a_shape, ref.data(), y_shape);
    EXPECT_EQ(fast, ref) << shape_str(b_shape) << " op " << static_cast<int>(op) << " "
                         << shape_str(a_shape);
  }
}

TEST(ElementwiseKernels, BinaryFastMatchesRef) {
  for (const auto& [a, b] : kBroadcastPairs) {
    expect_binary_fast_matches_ref<float>(a, b);
    expect_binary_fast_matches_ref<double>(a, b);
  }
}

TEST(ElementwiseKernels, BinaryRefBroadcastsLikeNumPy) {
  // [2, 1] - [3] -> [2, 3]: y[i][j] = a[i] - b[j]
  const std::vector<double> a = {10, 20}, b = {1, 2, 3};
  std::vector<double> y(6);
  binary_ref(BinaryOp::kSub, a.data(), {2, 1}, b.data(), {3}, y.data(), {2, 3});
  EXPECT_EQ(y, (std::vector<double>{9, 8, 7, 19, 18, 17}));
}

template <class T>
void expect_sum_to_fast_matches_ref(const Shape& x_shape, const Shape& y_shape) {
  const std::vector<T> x = random_values<T>(x_shape, 3);
  std::vector<T> fast(shape_numel(y_shape)), ref(fast.size());
  sum_to(x.data(), x_shape, fast.data(), y_shape);
  sum_to_ref(x.data(), x_shape, ref.data(), y_shape);
  for (size_t i = 0; i < fast.size(); ++i) {
    // Both accumulate in double; only the full sum adds in a different (blocked) order.
    EXPECT_NEAR(fast[i], ref[i], 1e-9 * x.size())
        << shape_str(x_shape) << " -> " << shape_str(y_shape) << " at " << i;
  }
}

template <class T>
void expect_broadcast_to_fast_matches_ref(const Shape& x_shape, const Shape& y_shape) {
  const std::vector<T> x = random_values<T>(x_shape, 4);
  std::vector<T> fast(shape_numel(y_shape)), ref(fast.size());
  broadcast_to(x.data(), x_shape, fast.data(), y_shape);
  broadcast_to_ref(x.data(), x_shape, ref.data(), y_shape);
  EXPECT_EQ(fast, ref) << shape_str(x_shape) << " -> " << shape_str(y_shape);
}

TEST(ElementwiseKernels, SumToAndBroadcastToFastMatchRef) {
  for (const auto& [big, small] : kBroadcastPairs) {
    if (broadcast(big, small) != big) continue;  // {3, 1, 5} vs {1, 4, 1}
    expect_sum_to_fast_matches_ref<float>(big, small);
    expect_sum_to_fast_matches_ref<double>(big, small);
    expect_broadcast_to_fast_matches_ref<float>(small, big);
    expect_broadcast_to_fast_matches_ref<double>(small, big);
  }
}

TEST(ElementwiseKernels, SumToValues) {
  // [2, 3] -> [3] sums columns, -> [2, 1] sums rows, -> [] sums all
  const std::vector<double> x = {1, 2, 3, 4, 5, 6};
  std::vector<double> cols(3), rows(2), all(1);
  sum_to(x.data(), {2, 3}, cols.data(), {3});
  sum_to(x.data(), {2, 3}, rows.data(), {2, 1});
  sum_to(x.data(), {2, 3}, all.data(), {});
  EXPECT_EQ(cols, (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(rows, (std::vector<double>{6, 15}));
  EXPECT_EQ(all, (std::vector<double>{21}));
}

TEST(ElementwiseKernels, SumOfEmptyTensorIsZero) {
  std::vector<float> y(3, 7.0f);
  sum_to(static_cast<const float*>(nullptr), {0, 3}, y.data(), {1, 3});
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0}));
}

TEST(ElementwiseKernels, ClampKeepsNaNAndMasksByInclusivity) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {-1, 0, 3, 6, 7, nan};
  std::vector<float> y(x.size());
  clamp_forward(x.data(), 0.0f, 6.0f, y.data(), 6);
  EXPECT_EQ(std::vector<float>(y.begin(), y.end() - 1), (std::vector<float>{0, 0, 3, 6, 6}));
  EXPECT_TRUE(std::isnan(y[5]));

  const std::vector<float> dy(x.size(), 1.0f);
  std::vector<float> strict(x.size()), inclusive(x.size()), relu(x.size());
  clamp_backward(x.data(), 0.0f, 6.0f, false, dy.data(), strict.data(), 6);
  clamp_backward(x.data(), 0.0f, 6.0f, true, dy.data(), inclusive.data(), 6);
  relu_backward(x.data(), dy.data(), relu.data(), 6);
  EXPECT_EQ(strict, (std::vector<float>{0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(inclusive, (std::vector<float>{0, 1, 1, 1, 0, 0}));
  EXPECT_EQ(relu, (std::vector<float>{0, 0, 1, 1, 1, 0}));
}

// The branch-free masked backward against the plain select it replaces, bit for bit: special
// values in x and dy (NaN, infinities, signed zeros, the bounds themselves) and a long random
// run, so the vectorized body and its remainder loop both see them.
template <class T>
void expect_masked_backward_matches_select() {
  const T inf = std::numeric_limits<T>::infinity();
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> special = {-inf, -1, T(-0.0), 0, T(1e-30), 3, 6, T(6.5), inf, nan};
  std::vector<T> x, dy;
  for (T a : special) {
    for (T b : special) {
      x.push_back(a);
      dy.push_back(b);
    }
  }
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-8, 8);
  for (int i = 0; i < 70001; ++i) {  // above the parallel grain
    x.push_back(static_cast<T>(u(rng)));
    dy.push_back(static_cast<T>(u(rng)));
  }
  const int64_t n = static_cast<int64_t>(x.size());
  auto same_bits = [](const std::vector<T>& a, const std::vector<T>& b) {
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
  };
  std::vector<T> got(x.size()), want(x.size());
  relu_backward(x.data(), dy.data(), got.data(), n);
  for (int64_t i = 0; i < n; ++i) want[i] = x[i] > T(0) ? dy[i] : T(0);
  EXPECT_TRUE(same_bits(got, want)) << "relu_backward";
  std::vector<uint8_t> mask(x.size());
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = x[i] > T(0) ? 1 : 0;
  masked_scale(dy.data(), mask.data(), T(2), got.data(), n);
  for (int64_t i = 0; i < n; ++i) want[i] = mask[i] ? dy[i] * T(2) : T(0);
  EXPECT_TRUE(same_bits(got, want)) << "masked_scale";
  for (bool inclusive : {false, true}) {
    clamp_backward(x.data(), T(0), T(6), inclusive, dy.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const bool keep = inclusive ? T(0) <= x[i] && x[i] <= T(6) : T(0) < x[i] && x[i] < T(6);
      want[i] = keep ? dy[i] : T(0);
    }
    EXPECT_TRUE(same_bits(got, want)) << "clamp_backward inclusive=" << inclusive;
  }
}

TEST(ElementwiseKernels, MaskedBackwardIsBitIdenticalToSelect) {
  expect_masked_backward_matches_select<float>();
  expect_masked_backward_matches_select<double>();
}

// [outer, channels, inner] cases: whole tensor (channels 1) below and above the parallel grain,
// per channel with outer 1 (weights) and outer > 1 (activations), odd sizes for the lane tails.
TEST(ElementwiseKernels, MinMaxMatchesRefAndSkipsNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    int64_t outer, channels, inner;
  };
  for (const Case& c : {Case{1, 1, 0}, Case{1, 1, 5}, Case{1, 1, 37}, Case{3, 1, 70001},
                        Case{1, 17, 9}, Case{1, 64, 1153}, Case{5, 33, 41}, Case{4, 3, 40000}}) {
    const int64_t n = c.outer * c.channels * c.inner;
    std::vector<float> x = random_values<float>({n}, 11, -3.0, 5.0);
    // NaNs everywhere (the first element of a lane block included), infinities and signed zeros.
    for (int64_t i = 0; i < n; i += 7) x[i] = nan;
    if (n > 100) {
      x[3] = -inf;
      x[50] = -0.0f;
      x[n - 1] = inf;
    }
    std::vector<float> mins(c.channels), maxs(c.channels), ref_mins(c.channels),
        ref_maxs(c.channels);
    min_max(x.data(), c.outer, c.channels, c.inner, mins.data(), maxs.data());
    min_max_ref(x.data(), c.outer, c.channels, c.inner, ref_mins.data(), ref_maxs.data());
    const std::string what =
        std::to_string(c.outer) + "x" + std::to_string(c.channels) + "x" + std::to_string(c.inner);
    EXPECT_EQ(mins, ref_mins) << what;
    EXPECT_EQ(maxs, ref_maxs) << what;
    for (int64_t ch = 0; ch < c.channels; ++ch) EXPECT_FALSE(std::isnan(mins[ch])) << what;
  }
  // A channel without a number, and an empty tensor, report +inf / -inf.
  const std::vector<float> x = {nan, nan, 1.0f, -2.0f};
  float lo[2], hi[2];
  min_max(x.data(), 1, 2, 2, lo, hi);
  EXPECT_EQ(lo[0], inf);
  EXPECT_EQ(hi[0], -inf);
  EXPECT_EQ(lo[1], -2.0f);
  EXPECT_EQ(hi[1], 1.0f);
  min_max(x.data(), 1, 1, 0, lo, hi);
  EXPECT_EQ(lo[0], inf);
  EXPECT_EQ(hi[0], -inf);
}

// Reference permute by explicit index arithmetic.
std::vector<double> permute_naive(const std::vector<double>& x, const Shape& shape,
                                  const std::vector<int64_t>& dims) {
  const std::vector<int64_t> x_strides = contiguous_strides(shape);
  Shape y_shape(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) y_shape[i] = shape[dims[i]];
  std::vector<double> y(x.size());
  for (int64_t i = 0; i < static_cast<int64_t>(y.size()); ++i) {
    int64_t rem = i, src = 0;
    for (int64_t d = static_cast<int64_t>(dims.size()) - 1; d >= 0; --d) {
      src += (rem % y_shape[d]) * x_strides[dims[d]];
      rem /= y_shape[d];
    }
    y[i] = x[src];
  }
  return y;
}

TEST(ElementwiseKernels, PermuteMatchesIndexArithmetic) {
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{2, 3, 4, 5}, {0, 2, 1, 3}},  // channel shuffle: trailing dim moves as a block
      {{2, 3, 4, 5}, {3, 2, 1, 0}},  // full reversal: element by element
      {{2, 3, 4, 5}, {0, 1, 2, 3}},  // identity
      {{3, 7, 5}, {1, 0, 2}},
      {{6, 3, 41, 43}, {0, 2, 1, 3}},  // large enough to run in parallel
      {{6, 3, 41, 43}, {0, 1, 3, 2}},
  };
  for (const auto& [shape, dims] : cases) {
    const std::vector<double> x = random_values<double>(shape, 5);
    std::vector<double> y(x.size());
    permute(x.data(), shape, dims, y.data());
    EXPECT_EQ(y, permute_naive(x, shape, dims)) << shape_str(shape) << " by " << shape_str(dims);
  }
}

TEST(ElementwiseKernels, CopyRowsPlacesBlocks) {
  // Two [2, 2] blocks side by side in a [2, 4] buffer: cat along dim 1.
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  std::vector<float> y(8);
  copy_rows(a.data(), 2, y.data(), 4, 2, 2);
  copy_rows(b.data(), 2, y.data() + 2, 4, 2, 2);
  EXPECT_EQ(y, (std::vector<float>{1, 2, 5, 6, 3, 4, 7, 8}));
}

TEST(ElementwiseKernels, LogSoftmaxLanesAlongMiddleDim) {
  // [1, 3, 2] with softmax over the 3: each of the 2 lanes normalizes on its own.
  const std::vector<double> x = {0, 5, 1, 5, 2, 5};
  std::vector<double> y(6);
  log_softmax_forward(x.data(), y.data(), 1, 3, 2);
  EXPECT_NEAR(std::exp(y[0]) + std::exp(y[2]) + std::exp(y[4]), 1.0, 1e-12);
  EXPECT_NEAR(y[1], -std::log(3.0), 1e-12);
  EXPECT_NEAR(y[4] - y[0], 2.0, 1e-12);
}

TEST(ElementwiseKernels, DropoutMaskKeepsAboutOneMinusP) {
  Generator gen(42);
  std::vector<uint8_t> mask(200000);
  dropout_mask(mask.data(), static_cast<int64_t>(mask.size()), 0.3, gen);
  int64_t kept = 0;
  for (uint8_t m : mask) kept += m;
  EXPECT_NEAR(static_cast<double>(kept) / mask.size(), 0.7, 0.005);
}

}  // namespace
}  // namespace qat::kernels
