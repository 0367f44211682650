// Linear, activations, pooling and the small layers (dropout, flatten, identity).
#include "nn/layers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops/linear.h"
#include "nn/activation.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "tests/testing/compare.h"

namespace qat::nn {
namespace {

Tensor ramp(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::sin(0.37f * i);
  return t;
}

TEST(Linear, ParametersInitAndForward) {
  auto fc = std::make_shared<Linear>(16, 10);
  const StateDict sd = fc->state_dict();
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "weight");
  EXPECT_EQ(sd[0].second.shape(), (Shape{10, 16}));
  EXPECT_EQ(sd[1].first, "bias");
  const double bound = 1.0 / std::sqrt(16.0);
  for (const Tensor& t : {fc->weight, fc->bias})
    for (float v : t.to_vector<float>()) EXPECT_LE(std::fabs(v), bound);
  const Tensor x = ramp({3, 16});
  EXPECT_TRUE(testing::all_close(fc->forward(x), ops::linear(x, fc->weight, fc->bias)));
  EXPECT_EQ(std::make_shared<Linear>(3, 2, LinearOptions().bias(false))->state_dict().size(), 1u);
}

TEST(Linear, ReprMatchesTorch) {
  EXPECT_EQ(Linear(512, 1000).to_string(), "Linear(in_features=512, out_features=1000, bias=True)");
  EXPECT_EQ(Linear(3, 2, LinearOptions().bias(false)).to_string(),
            "Linear(in_features=3, out_features=2, bias=False)");
}

TEST(Activation, ReluAndRelu6) {
  const Tensor x = Tensor::from_vector<float>({-1.0f, 0.5f, 3.0f, 7.0f}, {4});
  EXPECT_EQ(std::make_shared<ReLU>()->forward(x).to_vector<float>(),
            (std::vector<float>{0.0f, 0.5f, 3.0f, 7.0f}));
  EXPECT_EQ(std::make_shared<ReLU6>()->forward(x).to_vector<float>(),
            (std::vector<float>{0.0f, 0.5f, 3.0f, 6.0f}));
  EXPECT_EQ(ReLU().to_string(), "ReLU()");
  EXPECT_EQ(ReLU6().to_string(), "ReLU6()");
}

TEST(Pooling, OutputShapesMatchTorch) {
  // ResNet's stem pool, GoogLeNet's ceil_mode pool, an avg pool with padding, global pool.
  EXPECT_EQ(std::make_shared<MaxPool2d>(3, MaxPool2dOptions().stride(2).padding(1))
                ->forward(Tensor::zeros({1, 2, 112, 112}))
                .shape(),
            (Shape{1, 2, 56, 56}));
  EXPECT_EQ(std::make_shared<MaxPool2d>(3, MaxPool2dOptions().stride(2).ceil_mode(true))
                ->forward(Tensor::zeros({1, 2, 10, 10}))
                .shape(),
            (Shape{1, 2, 5, 5}));
  EXPECT_EQ(std::make_shared<AvgPool2d>(3, AvgPool2dOptions().stride(2).padding(1))
                ->forward(Tensor::zeros({1, 2, 9, 8}))
                .shape(),
            (Shape{1, 2, 5, 4}));
  EXPECT_EQ(std::make_shared<AdaptiveAvgPool2d>(1)->forward(Tensor::zeros({2, 5, 7, 7})).shape(),
            (Shape{2, 5, 1, 1}));
}

TEST(Pooling, DefaultStrideIsTheKernelSize) {
  auto pool = std::make_shared<MaxPool2d>(2);
  EXPECT_EQ(pool->stride, IntPair(2));
  const Tensor x = Tensor::from_vector<float>(
      {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4});
  EXPECT_EQ(pool->forward(x).to_vector<float>(), (std::vector<float>{6, 8, 14, 16}));
  EXPECT_EQ(std::make_shared<AvgPool2d>(2)->forward(x).to_vector<float>(),
            (std::vector<float>{3.5f, 5.5f, 11.5f, 13.5f}));
  EXPECT_EQ(std::make_shared<AdaptiveAvgPool2d>(1)->forward(x).to_vector<float>(),
            (std::vector<float>{8.5f}));
}

TEST(Pooling, ReprMatchesTorch) {
  EXPECT_EQ(MaxPool2d(3, MaxPool2dOptions().stride(2).padding(1)).to_string(),
            "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)");
  EXPECT_EQ(MaxPool2d(2).to_string(),
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(MaxPool2d({3, 2}, MaxPool2dOptions().stride({2, 1}).ceil_mode(true)).to_string(),
            "MaxPool2d(kernel_size=(3, 2), stride=(2, 1), padding=0, dilation=1, ceil_mode=True)");
  EXPECT_EQ(AvgPool2d(2).to_string(), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  EXPECT_EQ(AvgPool2d(3, AvgPool2dOptions().stride(1).padding(1)).to_string(),
            "AvgPool2d(kernel_size=3, stride=1, padding=1)");
  EXPECT_EQ(AdaptiveAvgPool2d({1, 1}).to_string(), "AdaptiveAvgPool2d(output_size=(1, 1))");
  EXPECT_EQ(AdaptiveAvgPool2d(1).to_string(), "AdaptiveAvgPool2d(output_size=1)");
}

TEST(Dropout, ScalesInTrainingAndIsIdentityInEval) {
  auto dropout = std::make_shared<Dropout>(0.25);
  const Tensor x = Tensor::ones({10000});
  int64_t zeros = 0;
  for (float v : dropout->forward(x).to_vector<float>()) {
    if (v == 0.0f) {
      ++zeros;
    } else {
      EXPECT_FLOAT_EQ(v, 1.0f / 0.75f);
    }
  }
  EXPECT_NEAR(zeros / 10000.0, 0.25, 0.02);
  dropout->eval();
  EXPECT_EQ(dropout->forward(x).to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(Dropout(0.2).to_string(), "Dropout(p=0.2, inplace=False)");
  EXPECT_EQ(Dropout().to_string(), "Dropout(p=0.5, inplace=False)");
  EXPECT_THROW(Dropout(1.5), Error);
}

TEST(Flatten, MergesTrailingDims) {
  EXPECT_EQ(std::make_shared<Flatten>()->forward(Tensor::zeros({2, 3, 4, 5})).shape(),
            (Shape{2, 60}));
  EXPECT_EQ(std::make_shared<Flatten>(0, 1)->forward(Tensor::zeros({2, 3, 4})).shape(),
            (Shape{6, 4}));
  EXPECT_EQ(Flatten().to_string(), "Flatten(start_dim=1, end_dim=-1)");
}

TEST(Identity, ReturnsItsInput) {
  const Tensor x = ramp({2, 3});
  EXPECT_TRUE(std::make_shared<Identity>()->forward(x).shares_storage(x));
  EXPECT_EQ(Identity().to_string(), "Identity()");
}

}  // namespace
}  // namespace qat::nn
