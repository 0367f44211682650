#include "core/ops/linear.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using qat::testing::all_close;
using qat::testing::gradcheck;
using qat::testing::random_leaf;

// Expects fn to throw a qat::Error whose message contains `needle`.
void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    return;
  }
  ADD_FAILURE() << "no error; expected one containing \"" << needle << "\"";
}

TEST(Linear, ComputesXWTransposePlusB) {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = Tensor::from_vector<float>({1, 0, -1, 0.5, 0.5, 0.5}, {2, 3});
  Tensor b = Tensor::from_vector<float>({10, -10}, {2});
  EXPECT_EQ(linear(x, w, b).to_vector<float>(), (std::vector<float>{8, -7, 8, -2.5}));
  EXPECT_EQ(linear(x, w, Tensor()).to_vector<float>(), (std::vector<float>{-2, 3, -2, 7.5}));
}

TEST(Linear, Gradcheck) {
  Tensor x = random_leaf({4, 5}, 1), w = random_leaf({3, 5}, 2), b = random_leaf({3}, 3);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                        {x, w, b}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); }, {x, w}));
}

TEST(Linear, OnlyInputsThatRequireGradGetGradients) {
  Tensor x = random_leaf({4, 5}, 4).detach(), w = random_leaf({3, 5}, 5);
  Tensor b = random_leaf({3}, 6).detach();
  Tensor y = linear(x, w, b);
  y.backward(Tensor::ones(y.shape(), DType::kFloat64));
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

// The float32 path (Eigen) against the float64 path (reference loops), through the op.
TEST(Linear, Float32PathMatchesFloat64Path) {
  std::vector<Tensor> leaves[2];
  Tensor outputs[2];
  for (int i = 0; i < 2; ++i) {
    const DType dtype = i == 0 ? DType::kFloat32 : DType::kFloat64;
    Tensor x = random_leaf({9, 31}, 7).detach().to(dtype);
    Tensor w = random_leaf({13, 31}, 8).detach().to(dtype);
    Tensor b = random_leaf({13}, 9).detach().to(dtype);
    leaves[i] = {x.requires_grad_(), w.requires_grad_(), b.requires_grad_()};
    outputs[i] = linear(x, w, b);
    outputs[i].backward(random_leaf({9, 13}, 10).detach().to(dtype));
  }
  EXPECT_TRUE(all_close(outputs[0], outputs[1], 1e-5, 1e-5));
  for (int k = 0; k < 3; ++k) {
    EXPECT_TRUE(all_close(leaves[0][k].grad(), leaves[1][k].grad(), 1e-5, 1e-5)) << "input " << k;
  }
}

TEST(Linear, BackwardClosureDoesNotKeepTheOutputAlive) {
  Tensor x = random_leaf({2, 3}, 11), w = random_leaf({4, 3}, 12);
  Tensor y = linear(x, w, Tensor());
  std::weak_ptr<TensorImpl> y_impl = y.impl_ptr();
  y = Tensor();
  EXPECT_TRUE(y_impl.expired());
}

TEST(Linear, RejectsBadShapesAndDtypes) {
  Tensor x = Tensor::zeros({2, 5}), w = Tensor::zeros({3, 5}), b = Tensor::zeros({3});
  expect_error(
      [&] {
        linear(Tensor::zeros({2, 5, 1}), w, b);
      },
      "linear: expected input [N, K], got [2, 5, 1]");
  expect_error([&] { linear(x, Tensor::zeros({15}), b); },
               "linear: expected weight [M, K], got [15]");
  expect_error(
      [&] {
        linear(Tensor::zeros({2, 4}), w, b);
      },
      "linear: input [2, 4] has 4 features, weight [3, 5] expects 5");
  expect_error([&] { linear(x, w, Tensor::zeros({4})); },
               "linear: bias has 4 elements, weight [3, 5] has 3 outputs");
  expect_error(
      [&] {
        linear(x, w, Tensor::zeros({1, 3}));
      },
      "linear: expected bias [M], got [1, 3]");
  expect_error([&] { linear(x, w.to(DType::kFloat64), b); },
               "linear: weight is float64, input is float32");
  expect_error([&] { linear(x, w, b.to(DType::kFloat64)); },
               "linear: bias is float64, input is float32");
  expect_error([&] { linear(x.to(DType::kInt32), w, b); },
               "linear: expected a float32 or float64 input, got int32");
  expect_error([&] { linear(x, Tensor(), b); }, "linear: input and weight must be defined");
}

}  // namespace
}  // namespace qat::ops
