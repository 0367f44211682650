#include "zoo/mobilenet_v2.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops/loss.h"
#include "core/random.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/optim.h"
#include "zoo/zoo_test_util.h"

namespace qat::zoo {
namespace {

using test_util::band_batch;
using test_util::count_parameters;
using test_util::expect_normal;
using test_util::expect_sgd_step_updates_every_parameter;
using test_util::expect_torchvision_keys;
using test_util::max_abs;
using test_util::mean_std;

TEST(MobileNetV2, MakeDivisibleMatchesTorchvision) {
  EXPECT_EQ(make_divisible(32, 8), 32);
  EXPECT_EQ(make_divisible(4, 8), 8);      // at least the divisor
  EXPECT_EQ(make_divisible(18.0, 8), 24);  // 16 would lose more than 10%
  EXPECT_EQ(make_divisible(11.2, 8), 16);
  EXPECT_EQ(make_divisible(10.4, 3), 12);
  EXPECT_EQ(make_divisible(448.0, 8), 448);
  EXPECT_THROW(make_divisible(32, 0), Error);
}

TEST(MobileNetV2, StateDictMatchesTorchvision) {
  expect_torchvision_keys(MobileNetV2(), "mobilenet_v2");
  expect_torchvision_keys(MobileNetV2(MobileNetV2Options().width_mult(0.5)), "mobilenet_v2_w0_5");
}

TEST(MobileNetV2, ParameterCountsMatchTorchvision) {
  EXPECT_EQ(count_parameters(MobileNetV2()), 3504872);
  EXPECT_EQ(count_parameters(MobileNetV2(MobileNetV2Options().width_mult(0.5))), 1968680);
}

TEST(MobileNetV2, SmallInputKeepsKeysAndShapesButTheInputChannels) {
  const nn::StateDict base = MobileNetV2().state_dict();
  const nn::StateDict small =
      MobileNetV2(MobileNetV2Options().in_channels(1).small_input(true)).state_dict();
  ASSERT_EQ(small.size(), base.size());
  EXPECT_EQ(small[0].second.shape(), (Shape{32, 1, 3, 3}));
  for (size_t i = 1; i < base.size(); ++i) {
    EXPECT_EQ(small[i].first, base[i].first);
    EXPECT_EQ(small[i].second.shape(), base[i].second.shape()) << base[i].first;
  }
}

TEST(MobileNetV2, BlocksAreTorchvisions) {
  MobileNetV2 model;
  EXPECT_EQ(model.type_name(), "MobileNetV2");
  EXPECT_EQ((*model.features)[0]->type_name(), "Conv2dNormActivation");
  auto block = [&](size_t i) {
    return std::dynamic_pointer_cast<MobileNetV2::InvertedResidual>((*model.features)[i]);
  };
  ASSERT_NE(block(1), nullptr);
  EXPECT_EQ(block(1)->type_name(), "InvertedResidual");
  EXPECT_EQ(block(1)->conv->size(), 3u);  // t = 1: no expansion conv
  EXPECT_EQ(block(2)->conv->size(), 4u);
  EXPECT_FALSE(block(2)->use_res_connect);  // stride 2
  EXPECT_TRUE(block(3)->use_res_connect);
  EXPECT_FALSE(block(14)->use_res_connect);  // 96 -> 160 channels
  EXPECT_THROW(MobileNetV2::InvertedResidual(16, 16, 3, 6), Error);
}

TEST(MobileNetV2, ForwardShapes) {
  MobileNetV2 model;
  EXPECT_EQ(model.forward(Tensor::zeros({2, 3, 64, 64})).shape(), (Shape{2, 1000}));
  MobileNetV2 small(MobileNetV2Options().num_classes(10).in_channels(1).small_input(true));
  EXPECT_EQ(small.forward(Tensor::zeros({2, 1, 32, 32})).shape(), (Shape{2, 10}));
  small.eval();
  EXPECT_EQ(small.forward(Tensor::zeros({1, 1, 28, 28})).shape(), (Shape{1, 10}));
}

TEST(MobileNetV2, InitStatisticsMatchTorchvision) {
  manual_seed(1);
  auto model = mobilenet_v2();
  int convs = 0;
  for (const auto& [name, module] : model->named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(module.get())) {
      ++convs;
      // kaiming_normal_(mode="fan_out"): std = sqrt(2 / (out_channels * KH * KW)).
      const double fan_out = conv->weight.size(0) * conv->weight.size(2) * conv->weight.size(3);
      expect_normal(name + ".weight", conv->weight, std::sqrt(2.0 / fan_out));
      EXPECT_FALSE(conv->bias.defined()) << name;
      // Normal, not uniform: a uniform draw never exceeds sqrt(3) standard deviations.
      if (name == "features.18.0") EXPECT_GT(max_abs(conv->weight), 3 * std::sqrt(2.0 / fan_out));
    } else if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(module.get())) {
      EXPECT_EQ(mean_std(bn->weight), std::make_pair(1.0, 0.0)) << name;
      EXPECT_EQ(max_abs(bn->bias), 0.0) << name;
    } else if (auto* linear = dynamic_cast<nn::Linear*>(module.get())) {
      expect_normal(name + ".weight", linear->weight, 0.01);
      EXPECT_EQ(max_abs(linear->bias), 0.0) << name;
    }
  }
  EXPECT_EQ(convs, 52);
}

TEST(MobileNetV2, OneSgdStepUpdatesEveryParameter) {
  manual_seed(2);
  MobileNetV2 model(MobileNetV2Options().num_classes(10));
  expect_sgd_step_updates_every_parameter(model);
}

TEST(MobileNetV2, SgdStepsReduceLossOnAFixedBatch) {
  manual_seed(3);
  MobileNetV2 model(MobileNetV2Options().num_classes(4).in_channels(1).small_input(true));
  const auto [images, labels] = band_batch();
  nn::SGD optimizer(model.parameters(), nn::SGDOptions(0.02).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    Tensor loss = ops::cross_entropy(model.forward(images), labels);
    if (step == 0) first = loss.item();
    last = loss.item();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  EXPECT_LT(last, 0.5 * first) << "loss went from " << first << " to " << last;
}

}  // namespace
}  // namespace qat::zoo
