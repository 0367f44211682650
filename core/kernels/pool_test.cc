#include "core/kernels/pool.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "tests/testing/compare.h"

namespace qat::kernels {
namespace {

using ::qat::testing::all_close;

// One pooling call: input shape, window arguments as PyTorch takes them.
struct PoolCase {
  std::string name;
  Shape x;  // [N, C, H, W]
  std::array<int64_t, 2> kernel, stride, padding, dilation;
  bool ceil_mode;
};

Pool2dDims make_dims(const PoolCase& c) {
  Pool2dDims d;
  d.N = c.x[0], d.C = c.x[1], d.H = c.x[2], d.W = c.x[3];
  d.KH = c.kernel[0], d.KW = c.kernel[1];
  d.SH = c.stride[0], d.SW = c.stride[1];
  d.PH = c.padding[0], d.PW = c.padding[1];
  d.DH = c.dilation[0], d.DW = c.dilation[1];
  d.OH = pool2d_output_size(d.H, d.KH, d.SH, d.PH, d.DH, c.ceil_mode);
  d.OW = pool2d_output_size(d.W, d.KW, d.SW, d.PW, d.DW, c.ceil_mode);
  return d;
}

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// Values from {0, 1, 2}: most windows hold tied maxima.
Tensor tied_tensor(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng() % 3);
  return t;
}

// Shapes shared by max and avg pooling (no dilation).
std::vector<PoolCase> common_cases() {
  return {
      {"odd_sizes", {2, 3, 7, 9}, {3, 3}, {1, 1}, {0, 0}, {1, 1}, false},
      {"stride2", {2, 3, 9, 7}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false},
      {"stride2_ceil", {2, 3, 9, 7}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, true},
      {"pad1", {1, 4, 6, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false},
      {"resnet_stem", {2, 5, 16, 16}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},
      {"resnet_stem_odd", {2, 3, 15, 17}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},
      {"googlenet_ceil", {2, 4, 14, 14}, {3, 3}, {2, 2}, {0, 0}, {1, 1}, true},
      {"ceil_without_effect", {2, 4, 15, 15}, {3, 3}, {2, 2}, {0, 0}, {1, 1}, true},
      {"ceil_pad", {1, 3, 4, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true},
      {"ceil_drops_last_window", {1, 2, 5, 5}, {2, 2}, {2, 2}, {1, 1}, {1, 1}, true},
      {"ceil_stride3", {1, 2, 10, 11}, {3, 3}, {3, 3}, {1, 1}, {1, 1}, true},
      {"rect_kernel", {2, 3, 8, 9}, {2, 3}, {1, 2}, {1, 1}, {1, 1}, true},
      {"global_7x7", {2, 6, 7, 7}, {7, 7}, {7, 7}, {0, 0}, {1, 1}, false},
      {"kernel1_stride2", {1, 3, 7, 6}, {1, 1}, {2, 2}, {0, 0}, {1, 1}, false},
      {"many_channels", {2, 32, 28, 28}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true},
      {"empty_batch", {0, 3, 7, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},
  };
}

std::vector<PoolCase> dilated_cases() {
  return {
      {"dilation2", {2, 3, 9, 8}, {3, 3}, {1, 1}, {0, 0}, {2, 2}, false},
      {"dilation2_pad_stride2", {2, 3, 11, 10}, {3, 3}, {2, 2}, {1, 1}, {2, 2}, false},
      {"dilation2_ceil", {2, 3, 10, 11}, {3, 3}, {2, 2}, {1, 1}, {2, 2}, true},
      {"dilation_rect", {1, 4, 9, 12}, {2, 3}, {2, 1}, {1, 1}, {3, 2}, true},
  };
}

// Runs the fast max pool forward + backward and compares both with the reference.
void expect_max_pool_matches_ref(const PoolCase& c, const Tensor& x, bool expect_onednn) {
  SCOPED_TRACE(c.name);
  const Pool2dDims d = make_dims(c);
  const Shape y_shape{d.N, d.C, d.OH, d.OW};
  Tensor y = Tensor::empty(y_shape), y_ref = Tensor::empty(y_shape);
  MaxPool2dWorkspace ws;
  max_pool2d_forward(x.data<float>(), y.data<float>(), d, &ws);
  max_pool2d_forward_ref(x.data<float>(), y_ref.data<float>(), d);
  EXPECT_EQ(ws.from_onednn, expect_onednn);
  EXPECT_TRUE(all_close(y, y_ref, 0, 0));

  Tensor y_inference = Tensor::empty(y_shape);
  max_pool2d_forward(x.data<float>(), y_inference.data<float>(), d, nullptr);
  EXPECT_TRUE(all_close(y_inference, y_ref, 0, 0));

  const Tensor dy = random_tensor(y_shape, 7);
  Tensor dx = Tensor::empty(x.shape()), dx_ref = Tensor::empty(x.shape());
  max_pool2d_backward(dy.data<float>(), dx.data<float>(), d, ws);
  max_pool2d_backward_ref(x.data<float>(), dy.data<float>(), dx_ref.data<float>(), d);
  EXPECT_TRUE(all_close(dx, dx_ref));
}

TEST(MaxPool2dKernel, FastMatchesReference) {
  std::vector<PoolCase> cases = common_cases();
  for (const PoolCase& c : dilated_cases()) cases.push_back(c);
  for (const PoolCase& c : cases) expect_max_pool_matches_ref(c, random_tensor(c.x, 1), true);
}

TEST(MaxPool2dKernel, TiesGoToFirstMaxInScanOrder) {
  std::vector<PoolCase> cases = common_cases();
  for (const PoolCase& c : dilated_cases()) cases.push_back(c);
  for (const PoolCase& c : cases) expect_max_pool_matches_ref(c, tied_tensor(c.x, 2), true);
}

// oneDNN would drop the NaN and give the lowest float for an all -inf window: the OpenMP kernel
// takes over and must agree with the reference.
TEST(MaxPool2dKernel, NanAndInfinityFollowPyTorch) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<PoolCase> cases{
      {"resnet_stem", {2, 3, 16, 16}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},
      {"googlenet_ceil", {2, 3, 14, 14}, {3, 3}, {2, 2}, {0, 0}, {1, 1}, true},
      {"dilation2_ceil", {2, 3, 10, 11}, {3, 3}, {2, 2}, {1, 1}, {2, 2}, true},
  };
  for (const PoolCase& c : cases) {
    Tensor x = random_tensor(c.x, 3);
    float* p = x.data<float>();
    p[5] = nan;
    p[6] = nan;
    p[c.x[3] * 2 + 3] = inf;
    for (int64_t i = c.x[2] * c.x[3]; i < 2 * c.x[2] * c.x[3]; ++i) p[i] = -inf;  // plane 1
    expect_max_pool_matches_ref(c, x, false);
  }
}

TEST(MaxPool2dKernel, NanPropagatesAndTakesTheGradient) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const PoolCase c{"2x2", {1, 1, 2, 2}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false};
  const Pool2dDims d = make_dims(c);
  const Tensor x = Tensor::from_vector<float>({1, nan, nan, 0}, c.x);
  Tensor y = Tensor::empty({1, 1, 1, 1}), dx = Tensor::empty(c.x);
  MaxPool2dWorkspace ws;
  max_pool2d_forward(x.data<float>(), y.data<float>(), d, &ws);
  EXPECT_TRUE(std::isnan(y.item()));
  max_pool2d_backward(Tensor::ones({1, 1, 1, 1}).data<float>(), dx.data<float>(), d, ws);
  // PyTorch's index is the last NaN in scan order (torch.nn.functional.max_pool2d, 1.13).
  EXPECT_EQ(dx.to_vector<float>(), (std::vector<float>{0, 0, 1, 0}));
}

// Taps at -1 and 1 of a 1x1 input: no window holds input. PyTorch gives -inf.
TEST(MaxPool2dKernel, WindowWithoutInputGivesMinusInfinityAndNoGradient) {
  const PoolCase c{"all_padding", {1, 2, 1, 1}, {2, 2}, {1, 1}, {1, 1}, {2, 2}, false};
  const Pool2dDims d = make_dims(c);
  ASSERT_EQ(d.OH, 1);
  ASSERT_EQ(d.OW, 1);
  const Tensor x = random_tensor(c.x, 4);
  expect_max_pool_matches_ref(c, x, false);
  Tensor y = Tensor::empty({1, 2, 1, 1});
  max_pool2d_forward(x.data<float>(), y.data<float>(), d, nullptr);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{-INFINITY, -INFINITY}));
}

void expect_avg_pool_matches_ref(const PoolCase& c, bool count_include_pad) {
  SCOPED_TRACE(c.name + (count_include_pad ? " count_include_pad" : ""));
  const Pool2dDims d = make_dims(c);
  const Shape y_shape{d.N, d.C, d.OH, d.OW};
  const Tensor x = random_tensor(c.x, 5);
  Tensor y = Tensor::empty(y_shape), y_ref = Tensor::empty(y_shape);
  avg_pool2d_forward(x.data<float>(), y.data<float>(), d, count_include_pad);
  avg_pool2d_forward_ref(x.data<float>(), y_ref.data<float>(), d, count_include_pad);
  EXPECT_TRUE(all_close(y, y_ref));

  const Tensor dy = random_tensor(y_shape, 6);
  Tensor dx = Tensor::empty(x.shape()), dx_ref = Tensor::empty(x.shape());
  avg_pool2d_backward(dy.data<float>(), dx.data<float>(), d, count_include_pad);
  avg_pool2d_backward_ref(dy.data<float>(), dx_ref.data<float>(), d, count_include_pad);
  EXPECT_TRUE(all_close(dx, dx_ref));
}

TEST(AvgPool2dKernel, FastMatchesReference) {
  for (const PoolCase& c : common_cases()) {
    expect_avg_pool_matches_ref(c, true);
    expect_avg_pool_matches_ref(c, false);
  }
}

// The reference's divisors, checked by hand on the case oneDNN gets wrong: 5x5, kernel 2,
// stride 2, ceil_mode. The last row/column window covers one input position and no padding.
TEST(AvgPool2dKernel, CeilModeWindowPastPaddedInputCountsOnlyThePaddedInput) {
  const PoolCase c{"ceil", {1, 1, 5, 5}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, true};
  const Pool2dDims d = make_dims(c);
  Tensor x = Tensor::ones(c.x), y = Tensor::empty({1, 1, 3, 3});
  avg_pool2d_forward(x.data<float>(), y.data<float>(), d, true);
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>(9, 1.0f));
}

void expect_adaptive_matches_ref(const Shape& x_shape, int64_t OH, int64_t OW) {
  SCOPED_TRACE(shape_str(x_shape) + " -> " + std::to_string(OH) + "x" + std::to_string(OW));
  const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
  const Tensor x = random_tensor(x_shape, 8);
  Tensor y = Tensor::empty({N, C, OH, OW}), y_ref = Tensor::empty({N, C, OH, OW});
  adaptive_avg_pool2d_forward(x.data<float>(), y.data<float>(), N, C, H, W, OH, OW);
  adaptive_avg_pool2d_forward_ref(x.data<float>(), y_ref.data<float>(), N, C, H, W, OH, OW);
  EXPECT_TRUE(all_close(y, y_ref));

  const Tensor dy = random_tensor({N, C, OH, OW}, 9);
  Tensor dx = Tensor::empty(x_shape), dx_ref = Tensor::empty(x_shape);
  adaptive_avg_pool2d_backward(dy.data<float>(), dx.data<float>(), N, C, H, W, OH, OW);
  adaptive_avg_pool2d_backward_ref(dy.data<float>(), dx_ref.data<float>(), N, C, H, W, OH, OW);
  EXPECT_TRUE(all_close(dx, dx_ref));
}

TEST(AdaptiveAvgPool2dKernel, FastMatchesReference) {
  expect_adaptive_matches_ref({2, 3, 7, 7}, 1, 1);
  expect_adaptive_matches_ref({64, 16, 7, 7}, 1, 1);  // parallel path
  expect_adaptive_matches_ref({2, 3, 7, 7}, 3, 3);
  expect_adaptive_matches_ref({2, 3, 5, 5}, 2, 2);
  expect_adaptive_matches_ref({2, 3, 5, 7}, 2, 3);
  expect_adaptive_matches_ref({1, 2, 3, 4}, 5, 6);  // more bins than inputs: bins overlap
  expect_adaptive_matches_ref({1, 2, 6, 6}, 6, 6);  // identity
}

// Bins of 5 -> 2 are [0, 3) and [2, 5), as PyTorch's start/end indices.
TEST(AdaptiveAvgPool2dKernel, NonDivisibleBinsOverlap) {
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5}, {1, 1, 1, 5});
  Tensor y = Tensor::empty({1, 1, 1, 2});
  adaptive_avg_pool2d_forward(x.data<float>(), y.data<float>(), 1, 1, 1, 5, 1, 2);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{2, 4}));
}

// Output sizes printed by torch 1.13 (F.max_pool2d(...).shape[-1]).
TEST(Pool2dOutputSize, MatchesPyTorch) {
  EXPECT_EQ(pool2d_output_size(112, 3, 2, 0, 1, true), 56);  // GoogLeNet maxpool1
  EXPECT_EQ(pool2d_output_size(56, 3, 2, 0, 1, true), 28);
  EXPECT_EQ(pool2d_output_size(28, 3, 2, 0, 1, true), 14);
  EXPECT_EQ(pool2d_output_size(14, 2, 2, 0, 1, true), 7);
  EXPECT_EQ(pool2d_output_size(112, 3, 2, 1, 1, false), 56);  // ResNet maxpool
  EXPECT_EQ(pool2d_output_size(224, 7, 2, 3, 1, false), 112);
  EXPECT_EQ(pool2d_output_size(5, 2, 2, 1, 1, true), 3);  // the 4th window would start in padding
  EXPECT_EQ(pool2d_output_size(5, 2, 2, 1, 1, false), 3);
  EXPECT_EQ(pool2d_output_size(6, 3, 3, 1, 1, true), 3);
  EXPECT_EQ(pool2d_output_size(7, 3, 2, 1, 2, true), 3);
  EXPECT_EQ(pool2d_output_size(7, 3, 2, 1, 2, false), 3);
  EXPECT_EQ(pool2d_output_size(10, 3, 3, 0, 1, true), 4);
  EXPECT_EQ(pool2d_output_size(9, 2, 2, 0, 1, true), 5);
  EXPECT_EQ(pool2d_output_size(9, 2, 2, 0, 1, false), 4);
  EXPECT_EQ(pool2d_output_size(2, 3, 1, 0, 1, false), 0);  // too small; callers check
}

}  // namespace
}  // namespace qat::kernels
