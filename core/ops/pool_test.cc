#include "core/ops/pool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/autograd.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using ::qat::testing::all_close;
using ::qat::testing::gradcheck;
using ::qat::testing::random_leaf;

// The non-monotonic 4x5 plane (i * 7) % 20 - 10 used for the torch 1.13 literals below.
Tensor plane_4x5(DType dtype) {
  std::vector<double> v;
  for (int i = 0; i < 20; ++i) v.push_back((i * 7) % 20 - 10);
  Tensor x = Tensor::from_vector(v, {1, 1, 4, 5}).to(dtype);
  x.requires_grad_();
  return x;
}

Tensor arange_4x5(DType dtype) {
  std::vector<double> v;
  for (int i = 1; i <= 20; ++i) v.push_back(i);
  Tensor x = Tensor::from_vector(v, {1, 1, 4, 5}).to(dtype);
  x.requires_grad_();
  return x;
}

Tensor as_tensor(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

// ---- golden values from torch 1.13, both dtypes (float32: oneDNN / OpenMP; float64: reference)

TEST(MaxPool2d, MatchesPyTorchWithPaddingAndCeilMode) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor x = plane_4x5(dtype);
    Tensor y = max_pool2d(x, {3, 3}, {2, 2}, {1, 1}, {1, 1}, /*ceil_mode=*/true);
    EXPECT_TRUE(all_close(y, as_tensor({5, 6, 6, 7, 9, 8, 2, 9, 3}, {1, 1, 3, 3})));
    y.backward(as_tensor({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}).to(dtype));
    EXPECT_TRUE(all_close(x.grad(), as_tensor({0, 0, 0, 0, 0, 1, 0, 0,  5, 0,  //
                                               0, 4, 0, 0, 6, 0, 7, 13, 0, 9},
                                              {1, 1, 4, 5})));
  }
}

TEST(AvgPool2d, MatchesPyTorchCountIncludePadWithCeilMode) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor x = arange_4x5(dtype);
    Tensor y = avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, /*ceil_mode=*/true,
                          /*count_include_pad=*/true);
    EXPECT_TRUE(
        all_close(y, as_tensor({16.0 / 9, 33.0 / 9, 28.0 / 9, 69.0 / 9, 13, 87.0 / 9, 5.5, 9, 6.5},
                               {1, 1, 3, 3})));
    y.backward(Tensor::ones({1, 1, 3, 3}, dtype));
    // Bottom row: the last window row spans input row 3 and padding row 4 (divisor 2 * 3 = 6).
    EXPECT_TRUE(all_close(
        x.grad(), as_tensor({1.0 / 9, 2.0 / 9,  1.0 / 9,   2.0 / 9,  1.0 / 9,   2.0 / 9, 4.0 / 9,
                             2.0 / 9, 4.0 / 9,  2.0 / 9,   1.0 / 9,  2.0 / 9,   1.0 / 9, 2.0 / 9,
                             1.0 / 9, 5.0 / 18, 10.0 / 18, 5.0 / 18, 10.0 / 18, 5.0 / 18},
                            {1, 1, 4, 5})));
  }
}

TEST(AvgPool2d, MatchesPyTorchExcludePadWithCeilMode) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor x = arange_4x5(dtype);
    Tensor y = avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, /*ceil_mode=*/true,
                          /*count_include_pad=*/false);
    EXPECT_TRUE(all_close(y, as_tensor({4, 5.5, 7, 11.5, 13, 14.5, 16.5, 18, 19.5}, {1, 1, 3, 3})));
  }
}

TEST(AvgPool2d, CeilWindowPastPaddedInputMatchesPyTorch) {
  std::vector<double> v;
  for (int i = 1; i <= 25; ++i) v.push_back(i);
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor y = avg_pool2d(as_tensor(v, {1, 1, 5, 5}).to(dtype), {2, 2}, {2, 2}, {0, 0}, true, true);
    EXPECT_TRUE(all_close(y, as_tensor({4, 6, 7.5, 14, 16, 17.5, 21.5, 23.5, 25}, {1, 1, 3, 3})));
  }
}

TEST(AdaptiveAvgPool2d, MatchesPyTorchNonDivisibleBins) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor y = adaptive_avg_pool2d(arange_4x5(dtype), {3, 2});
    EXPECT_TRUE(all_close(y, as_tensor({4.5, 6.5, 9.5, 11.5, 14.5, 16.5}, {1, 1, 3, 2})));
  }
}

TEST(MaxPool2d, NanPropagatesAndTakesTheGradient) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor x = as_tensor({1, nan, nan, 0}, {1, 1, 2, 2}).to(dtype);
    x.requires_grad_();
    Tensor y = max_pool2d(x, {2, 2});
    EXPECT_TRUE(std::isnan(y.item()));
    y.backward(Tensor::ones({1, 1, 1, 1}, dtype));
    EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 1, 0}));  // last NaN
  }
}

// ---- float32 (fast kernels) against float64 (reference), through the op and autograd

TEST(Pool2d, Float32BackwardMatchesFloat64) {
  const Tensor x64 = random_leaf({2, 3, 9, 8}, 11);
  Tensor x32 = x64.detach().to(DType::kFloat32);
  x32.requires_grad_();
  auto check = [&](const Tensor& y64, const Tensor& y32) {
    EXPECT_TRUE(all_close(y32, y64));
    const Tensor dy = random_leaf(y64.shape(), 12).detach();
    y64.backward(dy);
    y32.backward(dy.to(DType::kFloat32));
    EXPECT_TRUE(all_close(x32.grad(), x64.grad()));
    Tensor(x64).set_grad(Tensor());
    x32.set_grad(Tensor());
  };
  check(max_pool2d(x64, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true),
        max_pool2d(x32, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true));
  check(avg_pool2d(x64, {3, 3}, {2, 2}, {1, 1}, true, true),
        avg_pool2d(x32, {3, 3}, {2, 2}, {1, 1}, true, true));
  check(adaptive_avg_pool2d(x64, {5, 4}), adaptive_avg_pool2d(x32, {5, 4}));
}

TEST(MaxPool2d, NoGradModeRecordsNothing) {
  Tensor x = random_leaf({1, 2, 6, 6}, 13).detach().to(DType::kFloat32);
  x.requires_grad_();
  NoGradGuard no_grad;
  EXPECT_FALSE(max_pool2d(x, {2, 2}).requires_grad());
}

// ---- gradcheck (float64, reference kernels). Random distinct values keep max pooling tie-free.

TEST(MaxPool2d, Gradcheck) {
  const Tensor x = random_leaf({2, 2, 7, 6}, 21);
  auto pool = [](std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                 std::array<int64_t, 2> d, bool ceil) {
    return [=](const std::vector<Tensor>& in) { return max_pool2d(in[0], k, s, p, d, ceil); };
  };
  EXPECT_TRUE(gradcheck(pool({3, 3}, {2, 2}, {1, 1}, {1, 1}, false), {x}));  // ResNet stem
  EXPECT_TRUE(gradcheck(pool({3, 3}, {2, 2}, {0, 0}, {1, 1}, true), {x}));   // GoogLeNet
  EXPECT_TRUE(gradcheck(pool({2, 2}, {1, 1}, {1, 0}, {1, 1}, true), {x}));   // overlapping
  EXPECT_TRUE(gradcheck(pool({3, 2}, {1, 2}, {1, 1}, {2, 2}, false), {x}));  // dilation 2
  EXPECT_TRUE(gradcheck(pool({2, 2}, {2, 2}, {1, 1}, {2, 1}, true), {x}));
}

TEST(AvgPool2d, Gradcheck) {
  const Tensor x = random_leaf({2, 2, 7, 6}, 22);
  for (bool count_include_pad : {true, false}) {
    auto pool = [=](std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                    bool ceil) {
      return [=](const std::vector<Tensor>& in) {
        return avg_pool2d(in[0], k, s, p, ceil, count_include_pad);
      };
    };
    EXPECT_TRUE(gradcheck(pool({3, 3}, {2, 2}, {1, 1}, false), {x}));
    EXPECT_TRUE(gradcheck(pool({3, 3}, {2, 2}, {1, 1}, true), {x}));
    EXPECT_TRUE(gradcheck(pool({2, 3}, {2, 2}, {0, 1}, true), {x}));
    EXPECT_TRUE(gradcheck(pool({7, 6}, {7, 6}, {0, 0}, false), {x}));  // global
  }
}

TEST(AdaptiveAvgPool2d, Gradcheck) {
  for (std::array<int64_t, 2> out : {std::array<int64_t, 2>{1, 1}, {3, 3}, {2, 4}, {9, 5}}) {
    const Tensor x = random_leaf({2, 2, 7, 5}, 23);
    EXPECT_TRUE(gradcheck(
        [out](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], out); }, {x}));
  }
}

// ---- output shapes, as torch 1.13 prints them

TEST(Pool2d, OutputShapesMatchPyTorch) {
  const Tensor x = Tensor::zeros({2, 3, 112, 112});
  EXPECT_EQ(max_pool2d(x, {3, 3}, {2, 2}, {0, 0}, {1, 1}, true).shape(), (Shape{2, 3, 56, 56}));
  EXPECT_EQ(max_pool2d(x, {3, 3}, {2, 2}, {1, 1}).shape(), (Shape{2, 3, 56, 56}));
  EXPECT_EQ(max_pool2d(x, {2, 2}).shape(), (Shape{2, 3, 56, 56}));  // stride = kernel
  const Tensor x5 = Tensor::zeros({1, 1, 5, 9});
  EXPECT_EQ(max_pool2d(x5, {2, 2}, {2, 2}, {1, 0}, {1, 1}, true).shape(), (Shape{1, 1, 3, 5}));
  EXPECT_EQ(max_pool2d(x5, {2, 2}, {2, 2}, {1, 0}, {1, 1}, false).shape(), (Shape{1, 1, 3, 4}));
  EXPECT_EQ(avg_pool2d(x5, {2, 2}, {2, 2}, {0, 0}, true).shape(), (Shape{1, 1, 3, 5}));
  EXPECT_EQ(avg_pool2d(x5, {3, 3}, {3, 3}, {1, 1}, true).shape(), (Shape{1, 1, 2, 4}));
  const Tensor x7 = Tensor::zeros({1, 1, 7, 7});
  EXPECT_EQ(max_pool2d(x7, {3, 3}, {2, 2}, {1, 1}, {2, 2}, true).shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(adaptive_avg_pool2d(x7, {3, 2}).shape(), (Shape{1, 1, 3, 2}));
  EXPECT_EQ(max_pool2d(Tensor::zeros({0, 3, 7, 7}), {2, 2}).shape(), (Shape{0, 3, 3, 3}));
}

// ---- one error per precondition

TEST(Pool2d, RejectsBadArguments) {
  const Tensor x = Tensor::zeros({1, 2, 5, 5});
  EXPECT_THROW(max_pool2d(Tensor::zeros({2, 5, 5}), {2, 2}), Error);  // rank
  EXPECT_THROW(max_pool2d(Tensor::zeros({1, 2, 5, 5}, DType::kInt64), {2, 2}), Error);
  EXPECT_THROW(max_pool2d(Tensor::zeros({1, 0, 5, 5}), {2, 2}), Error);           // empty C
  EXPECT_THROW(max_pool2d(x, {0, 2}), Error);                                     // kernel
  EXPECT_THROW(max_pool2d(x, {2, 2}, {-1, 1}), Error);                            // stride
  EXPECT_THROW(max_pool2d(x, {2, 2}, {0, 1}), Error);                             // stride
  EXPECT_THROW(max_pool2d(x, {2, 2}, {1, 1}, {-1, 0}), Error);                    // padding < 0
  EXPECT_THROW(max_pool2d(x, {3, 3}, {1, 1}, {2, 1}), Error);                     // padding > k / 2
  EXPECT_THROW(max_pool2d(x, {2, 2}, {1, 1}, {0, 0}, {1, 0}), Error);             // dilation
  EXPECT_THROW(max_pool2d(x, {3, 3}, {1, 1}, {0, 0}, {3, 3}), Error);             // output < 1
  EXPECT_THROW(avg_pool2d(x, {6, 6}), Error);                                     // output < 1
  EXPECT_THROW(avg_pool2d(x, {3, 3}, {1, 1}, {2, 2}), Error);                     // padding > k / 2
  EXPECT_THROW(avg_pool2d(Tensor::zeros({5, 5}), {2, 2}), Error);                 // rank
  EXPECT_THROW(adaptive_avg_pool2d(x, {0, 1}), Error);                            // output size
  EXPECT_THROW(adaptive_avg_pool2d(Tensor::zeros({1, 2, 0, 5}), {1, 1}), Error);  // empty H
  EXPECT_THROW(adaptive_avg_pool2d(Tensor::zeros({2, 5, 5}), {1, 1}), Error);     // rank
}

TEST(Pool2d, ErrorMessagesNameTheProblem) {
  try {
    max_pool2d(Tensor::zeros({1, 2, 5, 5}), {3, 3}, {1, 1}, {2, 1});
    FAIL() << "expected qat::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_pool2d: expected padding at most half the kernel, "
                                         "got padding [2, 1] for kernel [3, 3]"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qat::ops
