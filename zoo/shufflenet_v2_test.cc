#include "zoo/shufflenet_v2.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/ops/loss.h"
#include "core/random.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/optim.h"
#include "zoo/zoo_test_util.h"

namespace qat::zoo {
namespace {

using test_util::band_batch;
using test_util::count_parameters;
using test_util::expect_sgd_step_updates_every_parameter;
using test_util::expect_torchvision_keys;
using test_util::max_abs;
using test_util::mean_std;

struct Variant {
  std::string name;
  std::function<std::shared_ptr<ShuffleNetV2>(ShuffleNetV2Options)> make;
  int64_t num_parameters;  // sum(p.numel() for p in model.parameters()) in torchvision
};

const std::vector<Variant>& variants() {
  static const std::vector<Variant> kVariants = {
      {"shufflenet_v2_x0_5", shufflenet_v2_x0_5, 1366792},
      {"shufflenet_v2_x1_0", shufflenet_v2_x1_0, 2278604},
      {"shufflenet_v2_x1_5", shufflenet_v2_x1_5, 3503624},
      {"shufflenet_v2_x2_0", shufflenet_v2_x2_0, 7393996},
  };
  return kVariants;
}

// Checks U(-bound, bound): nothing outside, and the uniform's std bound / sqrt(3).
void expect_uniform(const std::string& name, const Tensor& t, double bound) {
  EXPECT_LE(max_abs(t), bound) << name;
  const double n = static_cast<double>(t.numel());
  const double std = bound / std::sqrt(3.0);
  const auto [sample_mean, sample_std] = mean_std(t);
  EXPECT_NEAR(sample_mean, 0.0, 5 * std / std::sqrt(n)) << name;
  EXPECT_NEAR(sample_std / std, 1.0, 3 / std::sqrt(n)) << name;
}

TEST(ShuffleNetV2, StateDictMatchesTorchvision) {
  for (const Variant& v : variants()) expect_torchvision_keys(*v.make({}), v.name);
}

TEST(ShuffleNetV2, ParameterCountsMatchTorchvision) {
  for (const Variant& v : variants()) {
    EXPECT_EQ(count_parameters(*v.make({})), v.num_parameters) << v.name;
  }
}

TEST(ShuffleNetV2, SmallInputDropsTheMaxPoolAndKeepsKeys) {
  auto base = shufflenet_v2_x1_0();
  auto small = shufflenet_v2_x1_0(ShuffleNetV2Options().in_channels(1).small_input(true));
  EXPECT_NE(base->maxpool, nullptr);
  EXPECT_EQ(small->maxpool, nullptr);
  const nn::StateDict base_sd = base->state_dict(), small_sd = small->state_dict();
  ASSERT_EQ(small_sd.size(), base_sd.size());
  EXPECT_EQ(small_sd[0].second.shape(), (Shape{24, 1, 3, 3}));
  for (size_t i = 1; i < base_sd.size(); ++i) {
    EXPECT_EQ(small_sd[i].first, base_sd[i].first);
    EXPECT_EQ(small_sd[i].second.shape(), base_sd[i].second.shape()) << base_sd[i].first;
  }
}

TEST(ShuffleNetV2, BlocksAreTorchvisions) {
  auto model = shufflenet_v2_x1_0();
  EXPECT_EQ(model->type_name(), "ShuffleNetV2");
  auto block = [&](size_t i) {
    return std::dynamic_pointer_cast<ShuffleNetV2::InvertedResidual>((*model->stage2)[i]);
  };
  ASSERT_NE(block(0), nullptr);
  EXPECT_EQ(block(0)->type_name(), "InvertedResidual");
  EXPECT_EQ(block(0)->branch1->size(), 5u);
  EXPECT_EQ(block(1)->branch1->size(), 0u);  // stride 1: an empty Sequential, as torchvision
  EXPECT_EQ(block(1)->branch2->size(), 8u);
  EXPECT_EQ(model->stage3->size(), 8u);
  EXPECT_THROW(ShuffleNetV2::InvertedResidual(58, 116, 1), Error);  // stride 1 needs in == out
  EXPECT_THROW(ShuffleNetV2::InvertedResidual(58, 116, 4), Error);
  EXPECT_THROW(ShuffleNetV2({4, 8}, {24, 116, 232, 464, 1024}), Error);
}

TEST(ShuffleNetV2, ForwardShapes) {
  for (const Variant& v : variants()) {
    EXPECT_EQ(v.make({})->forward(Tensor::zeros({2, 3, 64, 64})).shape(), (Shape{2, 1000}))
        << v.name;
  }
  auto small =
      shufflenet_v2_x1_0(ShuffleNetV2Options().num_classes(10).in_channels(1).small_input(true));
  EXPECT_EQ(small->forward(Tensor::zeros({2, 1, 32, 32})).shape(), (Shape{2, 10}));
  small->eval();
  EXPECT_EQ(small->forward(Tensor::zeros({1, 1, 28, 28})).shape(), (Shape{1, 10}));
}

// torchvision's ShuffleNetV2 keeps the layers' own initialization (PyTorch defaults).
TEST(ShuffleNetV2, InitStatisticsAreTheLayerDefaults) {
  manual_seed(1);
  auto model = shufflenet_v2_x1_0();
  for (const auto& [name, module] : model->named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(module.get())) {
      // kaiming_uniform_(a = sqrt(5)): bound = 1 / sqrt(fan_in).
      const double fan_in = conv->weight.size(1) * conv->weight.size(2) * conv->weight.size(3);
      expect_uniform(name + ".weight", conv->weight, 1 / std::sqrt(fan_in));
    } else if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(module.get())) {
      EXPECT_EQ(mean_std(bn->weight), std::make_pair(1.0, 0.0)) << name;
      EXPECT_EQ(max_abs(bn->bias), 0.0) << name;
    }
  }
  expect_uniform("fc.weight", model->fc->weight, 1 / std::sqrt(1024.0));
  expect_uniform("fc.bias", model->fc->bias, 1 / std::sqrt(1024.0));
}

TEST(ShuffleNetV2, OneSgdStepUpdatesEveryParameter) {
  manual_seed(2);
  auto model = shufflenet_v2_x0_5(ShuffleNetV2Options().num_classes(10));
  expect_sgd_step_updates_every_parameter(*model);
}

TEST(ShuffleNetV2, SgdStepsReduceLossOnAFixedBatch) {
  manual_seed(3);
  auto model =
      shufflenet_v2_x0_5(ShuffleNetV2Options().num_classes(4).in_channels(1).small_input(true));
  const auto [images, labels] = band_batch();
  nn::SGD optimizer(model->parameters(), nn::SGDOptions(0.02).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    Tensor loss = ops::cross_entropy(model->forward(images), labels);
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
