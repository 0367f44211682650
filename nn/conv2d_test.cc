#include "nn/conv2d.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "tests/testing/compare.h"

namespace qat::nn {
namespace {

Tensor ramp(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::sin(0.37f * i);
  return t;
}

TEST(Conv2d, ParameterNamesAndShapes) {
  auto conv = std::make_shared<Conv2d>(4, 8, 3, Conv2dOptions().groups(2));
  const StateDict sd = conv->state_dict();
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "weight");
  EXPECT_EQ(sd[0].second.shape(), (Shape{8, 2, 3, 3}));
  EXPECT_EQ(sd[1].first, "bias");
  EXPECT_EQ(sd[1].second.shape(), (Shape{8}));
  EXPECT_TRUE(conv->weight.requires_grad());

  auto no_bias = std::make_shared<Conv2d>(3, 64, 7, Conv2dOptions().bias(false));
  EXPECT_EQ(no_bias->state_dict().size(), 1u);
  EXPECT_FALSE(no_bias->bias.defined());
}

TEST(Conv2d, DefaultInitIsUniformOverOneOverSqrtFanIn) {
  auto conv = std::make_shared<Conv2d>(16, 32, 3);
  const double bound = 1.0 / std::sqrt(16.0 * 9);
  for (const Tensor& t : {conv->weight, conv->bias}) {
    double max_abs = 0;
    for (float v : t.to_vector<float>()) max_abs = std::max(max_abs, std::fabs(double(v)));
    EXPECT_LE(max_abs, bound);
    EXPECT_GT(max_abs, 0.5 * bound);  // not all zeros
  }
}

TEST(Conv2d, ForwardShapeMatchesTorch) {
  auto conv =
      std::make_shared<Conv2d>(3, 8, IntPair(3, 5), Conv2dOptions().stride({2, 1}).padding({1, 2}));
  EXPECT_EQ(conv->forward(Tensor::zeros({2, 3, 15, 17})).shape(), (Shape{2, 8, 8, 17}));
}

TEST(Conv2d, ForwardPassesItsOptionsToTheOp) {
  auto conv =
      std::make_shared<Conv2d>(4, 6, 3, Conv2dOptions().stride(2).padding(2).dilation(2).groups(2));
  const Tensor x = ramp({1, 4, 9, 7});
  ops::Conv2dParams p;
  p.stride = {2, 2};
  p.padding = {2, 2};
  p.dilation = {2, 2};
  p.groups = 2;
  EXPECT_TRUE(testing::all_close(conv->forward(x), ops::conv2d(x, conv->weight, conv->bias, p)));
}

TEST(Conv2d, GradientsReachWeightAndBias) {
  auto conv = std::make_shared<Conv2d>(2, 3, 3, Conv2dOptions().padding(1));
  ops::sum(conv->forward(ramp({2, 2, 5, 5}))).backward();
  ASSERT_TRUE(conv->weight.grad().defined());
  ASSERT_TRUE(conv->bias.grad().defined());
  // d(sum y)/d(bias) = number of output positions per channel.
  EXPECT_EQ(conv->bias.grad().to_vector<float>(), std::vector<float>(3, 2 * 5 * 5));
}

TEST(Conv2d, ReprMatchesTorch) {
  EXPECT_EQ(Conv2d(3, 64, 7, Conv2dOptions().stride(2).padding(3).bias(false)).to_string(),
            "Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)");
  EXPECT_EQ(Conv2d(32, 32, 3, Conv2dOptions().padding(1).groups(32).bias(false)).to_string(),
            "Conv2d(32, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=32, "
            "bias=False)");
  EXPECT_EQ(Conv2d(4, 8, IntPair(3, 5), Conv2dOptions().stride({2, 1}).padding({1, 2}).dilation(2))
                .to_string(),
            "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 2))");
  EXPECT_EQ(Conv2d(4, 8, 1).to_string(), "Conv2d(4, 8, kernel_size=(1, 1), stride=(1, 1))");
}

TEST(Conv2d, RejectsChannelsNotDivisibleByGroups) {
  EXPECT_THROW(Conv2d(6, 8, 3, Conv2dOptions().groups(4)), Error);
  EXPECT_THROW(Conv2d(0, 8, 3), Error);
}

}  // namespace
}  // namespace qat::nn
