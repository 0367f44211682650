#include "core/autograd.h"

#include <gtest/gtest.h>

namespace qat {
namespace {

// A tiny differentiable op for testing the engine: y = a * x (elementwise, same shape).
Tensor scale_by(const Tensor& x, double a) {
  Tensor y = x.clone();
  y.mul_(a);
  record(y, "scale_by", {x}, [a](const Tensor& dy) -> Grads {
    Tensor dx = dy.clone();
    dx.mul_(a);
    return {dx};
  });
  return y;
}

// y = x1 + x2; backward hands the same dy to both inputs.
Tensor plus(const Tensor& x1, const Tensor& x2) {
  Tensor y = x1.clone();
  y.add_(x2);
  record(y, "plus", {x1, x2}, [](const Tensor& dy) -> Grads { return {dy, dy}; });
  return y;
}

TEST(Autograd, ChainAndFanOutAccumulateOnLeaves) {
  Tensor x = Tensor::ones({3});
  x.requires_grad_();
  // y = 2x + 3x (x used twice) -> dy/dx = 5
  Tensor y = plus(scale_by(x, 2), scale_by(x, 3));
  y.backward(Tensor::ones({3}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{5, 5, 5}));
  // A second graph accumulates into the existing grad.
  scale_by(x, 1).backward(Tensor::ones({3}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{6, 6, 6}));
}

TEST(Autograd, SameGradientToTwoLeavesIsNotAliased) {
  Tensor a = Tensor::ones({2}), b = Tensor::ones({2});
  a.requires_grad_();
  b.requires_grad_();
  plus(a, b).backward(Tensor::ones({2}));
  EXPECT_FALSE(a.grad().shares_storage(b.grad()));
  plus(a, b).backward(Tensor::ones({2}));
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{2, 2}));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{2, 2}));
}

TEST(Autograd, NoGradGuardStopsRecording) {
  Tensor x = Tensor::ones({1});
  x.requires_grad_();
  {
    NoGradGuard guard;
    EXPECT_FALSE(scale_by(x, 2).requires_grad());
  }
  EXPECT_TRUE(scale_by(x, 2).requires_grad());
}

TEST(Autograd, BackwardTwiceThroughFreedGraphThrows) {
  Tensor x = Tensor::ones({1});
  x.requires_grad_();
  Tensor y = scale_by(x, 2);
  y.backward();
  EXPECT_THROW(y.backward(), Error);
}

TEST(Autograd, ImplicitGradOnlyForScalars) {
  Tensor x = Tensor::ones({2});
  x.requires_grad_();
  EXPECT_THROW(scale_by(x, 2).backward(), Error);
  EXPECT_THROW(Tensor::ones({1}).backward(), Error);  // does not require grad
}

TEST(Autograd, DeepChainDoesNotOverflowTheStack) {
  Tensor x = Tensor::ones({1});
  x.requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = scale_by(y, 1.0);
  y.backward();
  EXPECT_EQ(x.grad().item(), 1.0);
}

TEST(Autograd, MultiOutputNodeGetsUndefinedForUnusedOutputs) {
  Tensor x = Tensor::ones({2});
  x.requires_grad_();
  std::vector<Tensor> outs{x.clone(), x.clone()};
  bool second_was_undefined = false;
  record_multi(outs, "two", {x}, [&](const Grads& g) -> Grads {
    second_was_undefined = !g[1].defined();
    return {g[0]};
  });
  outs[0].backward(Tensor::ones({2}));
  EXPECT_TRUE(second_was_undefined);
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1, 1}));
}

}  // namespace
}  // namespace qat
