#include "core/ops/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "core/autograd.h"
#include "tests/testing/errors.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using qat::testing::error_of;

using testing::all_close;
using testing::gradcheck;
using testing::random_leaf;

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);

Tensor vec(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

// Values from torch 1.13: a = [[1, 2, 3], [4, 5, 6]], b = [10, 20, 30], c = [[2], [4]].
TEST(Elementwise, BroadcastingForwardMatchesPyTorch) {
  const Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3}), b = vec({10, 20, 30}, {3});
  const Tensor c = vec({2, 4}, {2, 1});
  EXPECT_TRUE(all_close(add(a, b), vec({11, 22, 33, 14, 25, 36}, {2, 3})));
  EXPECT_TRUE(all_close(sub(a, b), vec({-9, -18, -27, -6, -15, -24}, {2, 3})));
  EXPECT_TRUE(all_close(mul(a, b), vec({10, 40, 90, 40, 100, 180}, {2, 3})));
  EXPECT_TRUE(all_close(div(a, b), vec({0.1, 0.1, 0.1, 0.4, 0.25, 0.2}, {2, 3})));
  EXPECT_TRUE(all_close(sub(a, c), vec({-1, 0, 1, 0, 1, 2}, {2, 3})));
  EXPECT_TRUE(all_close(div(c, a), vec({2, 1, 2.0 / 3, 1, 0.8, 2.0 / 3}, {2, 3})));
  EXPECT_TRUE(all_close(add(a, 0.5), vec({1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, {2, 3})));
  EXPECT_TRUE(all_close(mul(a, -2.0), vec({-2, -4, -6, -8, -10, -12}, {2, 3})));
  EXPECT_TRUE(all_close(neg(a), vec({-1, -2, -3, -4, -5, -6}, {2, 3})));
}

TEST(Elementwise, Float32MatchesFloat64) {
  const Tensor a = random_leaf({2, 3, 4, 5}, 1).detach(), b = random_leaf({3, 1, 1}, 2, 0.5, 2);
  const Tensor y64 = div(a, b.detach());
  const Tensor y32 = div(a.to(DType::kFloat32), b.detach().to(DType::kFloat32));
  EXPECT_EQ(y32.dtype(), DType::kFloat32);
  EXPECT_TRUE(all_close(y32, y64, 1e-6, 1e-6));
}

// Every broadcast layout the brief names, plus odd same-shape and outer-product cases.
const std::vector<std::pair<Shape, Shape>> kGradcheckPairs = {
    {{2, 3, 4, 5}, {3, 1, 1}}, {{2, 3, 4, 5}, {1, 3, 1, 1}}, {{2, 3, 4, 5}, {5}},
    {{2, 3, 4, 5}, {}},        {{3, 5, 7}, {3, 5, 7}},       {{3, 1}, {1, 4}},
    {{3, 1, 1}, {2, 3, 4, 5}},
};

TEST(Elementwise, BinaryOpsGradcheckWithBroadcasting) {
  const std::vector<std::pair<const char*, BinaryFn>> ops = {
      {"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}};
  for (const auto& [name, op] : ops) {
    for (const auto& [a_shape, b_shape] : kGradcheckPairs) {
      // b stays in [0.5, 1.5] so div is smooth.
      const Tensor a = random_leaf(a_shape, 11), b = random_leaf(b_shape, 12, 0.5, 1.5);
      EXPECT_TRUE(
          gradcheck([op = op](const std::vector<Tensor>& in) { return op(in[0], in[1]); }, {a, b}))
          << name << " " << shape_str(a_shape) << " with " << shape_str(b_shape);
      EXPECT_EQ(a.grad().shape(), a_shape);
      EXPECT_EQ(b.grad().shape(), b_shape);
    }
  }
}

TEST(Elementwise, InputWithoutRequiresGradGetsNoGradient) {
  const Tensor a = random_leaf({2, 3}, 1);
  const Tensor b = random_leaf({3}, 2).detach();
  mul(a, b).backward(Tensor::ones({2, 3}, DType::kFloat64));
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_FALSE(add(b, b).requires_grad());
}

TEST(Elementwise, ScalarFormsAndNegGradcheck) {
  const Tensor x = random_leaf({3, 4}, 3);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return add(in[0], 2.5); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], -1.5); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return neg(in[0]); }, {x}));
}

// torch 1.13 on x = [-1, 0, 3, 6, 7, 2] with sum().backward(): values and gradients, including
// the boundary conventions (relu: x > 0, relu6: 0 < x < 6, clamp: min <= x <= max).
TEST(Elementwise, ActivationsMatchPyTorchIncludingBoundaries) {
  const std::vector<double> x_values = {-1, 0, 3, 6, 7, 2};
  const struct {
    const char* name;
    std::function<Tensor(const Tensor&)> fn;
    std::vector<double> y, dx;
  } cases[] = {
      {"relu", [](const Tensor& t) { return relu(t); }, {0, 0, 3, 6, 7, 2}, {0, 0, 1, 1, 1, 1}},
      {"relu6", [](const Tensor& t) { return relu6(t); }, {0, 0, 3, 6, 6, 2}, {0, 0, 1, 0, 0, 1}},
      {"clamp",
       [](const Tensor& t) { return clamp(t, 0.0, 6.0); },
       {0, 0, 3, 6, 6, 2},
       {0, 1, 1, 1, 0, 1}},
  };
  for (const auto& c : cases) {
    Tensor x = vec(x_values, {6});
    x.requires_grad_();
    const Tensor y = c.fn(x);
    EXPECT_EQ(y.to_vector<double>(), c.y) << c.name;
    sum(y).backward();
    EXPECT_EQ(x.grad().to_vector<double>(), c.dx) << c.name;
  }
}

TEST(Elementwise, ActivationsGradcheck) {
  // Values spread over [-2, 8] so relu6 sees all three pieces; no sample sits on a kink.
  const Tensor x = random_leaf({3, 5, 7}, 4, -2.0, 8.0);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return relu6(in[0]); }, {x}));
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return clamp(in[0], -0.5, 3.0); }, {x}));
}

TEST(Elementwise, NaNPassesThroughReluAndClamp) {
  const Tensor x = Tensor::full({2}, std::numeric_limits<double>::quiet_NaN(), DType::kFloat64);
  EXPECT_TRUE(std::isnan(relu(x).to_vector<double>()[0]));
  EXPECT_TRUE(std::isnan(clamp(x, 0.0, 1.0).to_vector<double>()[1]));
}

TEST(Elementwise, ClampWithMinAboveMaxGivesMax) {  // documented torch.clamp behaviour
  EXPECT_EQ(clamp(vec({1, 5}, {2}), 4.0, 2.0).to_vector<double>(), (std::vector<double>{2, 2}));
}

// x = arange(24).reshape(2, 3, 4), values from torch 1.13.
TEST(Elementwise, ReductionsMatchPyTorch) {
  const Tensor x = Tensor::arange(24, DType::kFloat64).view({2, 3, 4});
  EXPECT_EQ(sum(x).shape(), Shape{});
  EXPECT_DOUBLE_EQ(sum(x).item(), 276.0);
  EXPECT_DOUBLE_EQ(mean(x).item(), 11.5);
  EXPECT_TRUE(all_close(sum(x, {1, 2}), vec({66, 210}, {2})));
  EXPECT_TRUE(all_close(mean(x, {0, 2}, /*keepdim=*/true), vec({7.5, 11.5, 15.5}, {1, 3, 1})));
  EXPECT_TRUE(all_close(sum(x, {-1}), vec({6, 22, 38, 54, 70, 86}, {2, 3})));
  // An empty dim list reduces everything, as torch.sum(x, dim=[]).
  EXPECT_EQ(sum(x, {}).shape(), Shape{});
  EXPECT_DOUBLE_EQ(sum(x, {}, true).item(), 276.0);
  EXPECT_EQ(sum(x, {}, true).shape(), (Shape{1, 1, 1}));
}

TEST(Elementwise, ReductionsGradcheck) {
  const Tensor x = random_leaf({2, 3, 4, 5}, 5);
  const std::vector<std::pair<std::vector<int64_t>, bool>> cases = {
      {{}, false}, {{1}, false}, {{2, 3}, true}, {{0, 2}, false}, {{-1, 0}, true}};
  for (const auto& [dims, keepdim] : cases) {
    EXPECT_TRUE(gradcheck(
        [d = dims, k = keepdim](const std::vector<Tensor>& in) { return sum(in[0], d, k); }, {x}))
        << "sum over " << shape_str(dims);
    EXPECT_TRUE(gradcheck(
        [d = dims, k = keepdim](const std::vector<Tensor>& in) { return mean(in[0], d, k); }, {x}))
        << "mean over " << shape_str(dims);
  }
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {x}));
}

TEST(Elementwise, ChainedOpsGradcheck) {  // (relu(x * w + b) - x) / s, summed per channel
  const Tensor x = random_leaf({2, 3, 4, 5}, 6), w = random_leaf({3, 1, 1}, 7);
  const Tensor b = random_leaf({1, 3, 1, 1}, 8), s = random_leaf({}, 9, 1.0, 2.0);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        const Tensor h = relu(add(mul(in[0], in[1]), in[2]));
        return mean(div(sub(h, in[0]), in[3]), {0, 2, 3});
      },
      {x, w, b, s}));
}

TEST(Elementwise, ErrorsNameTheOpAndShapes) {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  EXPECT_NE(error_of([&] { add(a, b); }).find("add: shapes [2, 3] and [4] cannot broadcast"),
            std::string::npos);
  EXPECT_NE(error_of([&] { div(b, a); }).find("div: shapes [4] and [2, 3] cannot broadcast"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              mul(a, Tensor::zeros({3}, DType::kFloat64));
            }).find("mul: dtype mismatch, float32 and float64"),
            std::string::npos);
  const Tensor labels = Tensor::zeros({3}, DType::kInt64);
  EXPECT_NE(
      error_of([&] { relu(labels); }).find("relu: expected a float32 or float64 tensor, got int64"),
      std::string::npos);
  EXPECT_NE(error_of([&] { sum(a, {2}); }).find("sum: dim 2 out of range for a tensor of rank 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              mean(a, {1, -1});
            }).find("mean: dim -1 appears more than once"),
            std::string::npos);
  EXPECT_THROW(sub(labels, labels), Error);
}

TEST(Elementwise, NothingIsRecordedUnderNoGradGuard) {
  const Tensor x = random_leaf({3}, 10);
  NoGradGuard guard;
  EXPECT_FALSE(relu(mul(add(x, x), 2.0)).requires_grad());
  EXPECT_FALSE(sum(x).requires_grad());
}

// Closures must not capture their own output: output -> grad_fn -> closure -> output would be a
// reference cycle that never frees.
TEST(Elementwise, OutputsAreFreedWhenDropped) {
  const Tensor x = random_leaf({2, 3}, 11), y = random_leaf({3}, 12);
  const std::vector<std::function<Tensor()>> ops = {
      [&] { return add(x, y); },      [&] { return mul(x, y); }, [&] { return div(x, y); },
      [&] { return sub(x, y); },      [&] { return relu(x); },   [&] { return relu6(x); },
      [&] { return clamp(x, 0, 1); }, [&] { return neg(x); },    [&] { return mean(x, {1}); },
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    std::weak_ptr<TensorImpl> watch;
    {
      const Tensor out = ops[i]();
      ASSERT_TRUE(out.requires_grad());
      watch = out.impl_ptr();
    }
    EXPECT_TRUE(watch.expired()) << "op " << i;
  }
}

}  // namespace
}  // namespace qat::ops
