#include "core/ops/conv.h"

#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/kernels/conv.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using testing::gradcheck;
using testing::random_leaf;

Conv2dParams make_params(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                         std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  Conv2dParams p;
  p.stride = stride;
  p.padding = padding;
  p.dilation = dilation;
  p.groups = groups;
  return p;
}

struct Case {
  std::string name;
  Shape x, w;
  Conv2dParams params;
};

// Small (gradcheck runs two forwards per input element) but awkward.
std::vector<Case> cases() {
  return {
      {"Padding1", {2, 3, 5, 6}, {4, 3, 3, 3}, make_params({1, 1}, {1, 1})},
      {"Stride2", {1, 2, 7, 6}, {3, 2, 3, 3}, make_params({2, 2}, {1, 1})},
      {"Stride2LastRowUnused", {1, 2, 6, 6}, {2, 2, 3, 3}, make_params({2, 2}, {0, 0})},
      {"Dilation2", {1, 2, 7, 7}, {2, 2, 3, 3}, make_params({1, 1}, {2, 2}, {2, 2})},
      {"Groups2", {2, 4, 5, 5}, {6, 2, 3, 3}, make_params({1, 1}, {1, 1}, {1, 1}, 2)},
      {"Depthwise", {2, 3, 6, 5}, {3, 1, 3, 3}, make_params({2, 2}, {1, 1}, {1, 1}, 3)},
      {"Pointwise1x1", {3, 4, 3, 3}, {5, 4, 1, 1}, make_params({1, 1}, {0, 0})},
      {"NonSquare", {1, 2, 5, 7}, {3, 2, 2, 3}, make_params({1, 2}, {0, 1})},
      {"Mixed", {2, 4, 7, 6}, {4, 2, 3, 2}, make_params({2, 1}, {1, 0}, {1, 2}, 2)},
  };
}

class Conv2dGrad : public ::testing::TestWithParam<Case> {};

TEST_P(Conv2dGrad, InputWeightBias) {
  const Case& c = GetParam();
  const Tensor x = random_leaf(c.x, 1), w = random_leaf(c.w, 2), b = random_leaf({c.w[0]}, 3);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], c.params); },
      {x, w, b}));
}

TEST_P(Conv2dGrad, NoBias) {
  const Case& c = GetParam();
  const Tensor x = random_leaf(c.x, 4), w = random_leaf(c.w, 5);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), c.params); },
      {x, w}));
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv2dGrad, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

TEST(Conv2d, GradientsOnlyForInputsThatRequireGrad) {
  const Tensor x = random_leaf({1, 2, 5, 5}, 6).detach();  // a plain input, e.g. an image
  const Tensor w = random_leaf({3, 2, 3, 3}, 7), b = random_leaf({3}, 8);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2]); },
                        {x, w, b}));
  EXPECT_FALSE(x.grad().defined());

  const Tensor frozen_w = w.detach();  // trainable bias only
  Tensor y = conv2d(x, frozen_w, b);
  y.backward(Tensor::ones(y.shape(), DType::kFloat64));
  EXPECT_FALSE(frozen_w.grad().defined());
}

TEST(Conv2d, NoGradGuardSkipsRecording) {
  const Tensor x = random_leaf({1, 2, 5, 5}, 9), w = random_leaf({3, 2, 3, 3}, 10);
  NoGradGuard no_grad;
  EXPECT_FALSE(conv2d(x, w, Tensor()).requires_grad());
}

TEST(Conv2d, OutputShape) {
  const Tensor x = Tensor::zeros({2, 3, 17, 15});
  EXPECT_EQ(conv2d(x, Tensor::zeros({8, 3, 3, 3}), Tensor(), make_params({2, 2}, {1, 1})).shape(),
            (Shape{2, 8, 9, 8}));
  EXPECT_EQ(
      conv2d(x, Tensor::zeros({8, 3, 3, 3}), Tensor(), make_params({1, 1}, {0, 0}, {2, 2})).shape(),
      (Shape{2, 8, 13, 11}));
  EXPECT_EQ(conv2d(x, Tensor::zeros({6, 1, 5, 1}), Tensor::zeros({6}),
                   make_params({1, 3}, {2, 0}, {1, 1}, 3))
                .shape(),
            (Shape{2, 6, 17, 5}));
}

Tensor random_float(const Shape& shape, uint64_t seed) {
  return random_leaf(shape, seed).to(DType::kFloat32);
}

TEST(Conv2d, Float32ForwardMatchesReference) {
  const Conv2dParams p = make_params({2, 1}, {1, 2}, {1, 2}, 2);
  const Tensor x = random_float({3, 4, 9, 10}, 11), w = random_float({6, 2, 3, 3}, 12);
  const Tensor b = random_float({6}, 13);
  const Tensor y = conv2d(x, w, b, p);

  kernels::Conv2dShape s{3, 4, 9, 10, 6, 3, 3, 2, 1, 1, 2, 1, 2, 2};
  s.OH = kernels::conv2d_output_size(s.H, s.KH, s.SH, s.PH, s.DH);
  s.OW = kernels::conv2d_output_size(s.W, s.KW, s.SW, s.PW, s.DW);
  Tensor y_ref = Tensor::empty({s.N, s.OC, s.OH, s.OW});
  kernels::conv2d_forward_ref(s, x.data<float>(), w.data<float>(), b.data<float>(),
                              y_ref.data<float>());
  EXPECT_TRUE(testing::all_close(y, y_ref, 1e-4, 1e-4));
}

// The float32 op (oneDNN) backpropagates what the float64 op (reference) does.
TEST(Conv2d, Float32BackwardMatchesFloat64) {
  const Conv2dParams p = make_params({2, 2}, {1, 1}, {1, 1}, 2);
  const Tensor x64 = random_leaf({2, 4, 7, 8}, 14), w64 = random_leaf({6, 2, 3, 3}, 15);
  const Tensor b64 = random_leaf({6}, 16);
  Tensor x32 = x64.to(DType::kFloat32), w32 = w64.to(DType::kFloat32),
         b32 = b64.to(DType::kFloat32);
  x32.requires_grad_();
  w32.requires_grad_();
  b32.requires_grad_();

  const Tensor y64 = conv2d(x64, w64, b64, p), y32 = conv2d(x32, w32, b32, p);
  const Tensor dy64 = random_leaf(y64.shape(), 17).detach();
  y64.backward(dy64);
  y32.backward(dy64.to(DType::kFloat32));
  EXPECT_TRUE(testing::all_close(y32, y64, 1e-4, 1e-5));
  EXPECT_TRUE(testing::all_close(x32.grad(), x64.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(testing::all_close(w32.grad(), w64.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(testing::all_close(b32.grad(), b64.grad(), 1e-4, 1e-5));
}

// The message of the qat::Error `fn` throws ("" if it throws nothing).
std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Conv2d, ChannelMismatchNamesBothCounts) {
  const std::string message = error_message([] {
    conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 3, 3, 3}), Tensor(),
           make_params({1, 1}, {0, 0}, {1, 1}, 2));
  });
  EXPECT_NE(message.find("conv2d: input has 3 channels but weight expects 6 (groups=2)"),
            std::string::npos)
      << message;
}

TEST(Conv2d, RejectsBadArguments) {
  const Tensor x = Tensor::zeros({1, 4, 5, 5}), w = Tensor::zeros({6, 4, 3, 3});
  const Tensor b = Tensor::zeros({6});
  const Conv2dParams ok;
  EXPECT_NO_THROW(conv2d(x, w, b, ok));
  // rank
  EXPECT_THROW(conv2d(Tensor::zeros({4, 5, 5}), w, b, ok), Error);
  EXPECT_THROW(conv2d(x, Tensor::zeros({6, 4, 9}), b, ok), Error);
  // channels and groups
  EXPECT_THROW(conv2d(x, Tensor::zeros({6, 3, 3, 3}), b, ok), Error);
  EXPECT_THROW(
      conv2d(x, Tensor::zeros({5, 2, 3, 3}), Tensor(), make_params({1, 1}, {0, 0}, {1, 1}, 2)),
      Error);  // OC=5 not divisible by groups=2
  EXPECT_THROW(conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({6, 1, 3, 3}), b,
                      make_params({1, 1}, {0, 0}, {1, 1}, 2)),
               Error);  // C=3 not divisible by groups=2
  EXPECT_THROW(conv2d(x, w, b, make_params({1, 1}, {0, 0}, {1, 1}, 0)), Error);
  // bias
  EXPECT_THROW(conv2d(x, w, Tensor::zeros({5}), ok), Error);
  EXPECT_THROW(conv2d(x, w, Tensor::zeros({1, 6}), ok), Error);
  // dtypes
  EXPECT_THROW(conv2d(x, w.to(DType::kFloat64), b, ok), Error);
  EXPECT_THROW(conv2d(x, w, b.to(DType::kFloat64), ok), Error);
  EXPECT_THROW(conv2d(x.to(DType::kInt64), w.to(DType::kInt64), Tensor(), ok), Error);
  // stride, padding, dilation
  EXPECT_THROW(conv2d(x, w, b, make_params({0, 1}, {0, 0})), Error);
  EXPECT_THROW(conv2d(x, w, b, make_params({1, 1}, {0, -1})), Error);
  EXPECT_THROW(conv2d(x, w, b, make_params({1, 1}, {0, 0}, {1, 0})), Error);
  // sizes
  EXPECT_THROW(conv2d(Tensor::zeros({0, 4, 5, 5}), w, b, ok), Error);
  EXPECT_THROW(conv2d(Tensor::zeros({1, 4, 2, 5}), w, b, ok), Error);         // OH = 0
  EXPECT_THROW(conv2d(x, w, b, make_params({1, 1}, {0, 0}, {3, 1})), Error);  // extent 7 > 5
}

}  // namespace
}  // namespace qat::ops
