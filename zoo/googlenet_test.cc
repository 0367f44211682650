#include "zoo/googlenet.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/random.h"
#include "nn/optim.h"
#include "tests/testing/compare.h"
#include "zoo/zoo_test_util.h"

namespace qat::zoo {
namespace {

using test_util::band_batch;
using test_util::count_parameters;
using test_util::expect_normal;
using test_util::expect_torchvision_keys;
using test_util::max_abs;

// torchvision's training loss for GoogLeNet: main loss + 0.3 * each aux loss.
Tensor train_loss(const GoogLeNet& model, const Tensor& logits, const Tensor& labels) {
  const GoogLeNetAuxLogits& aux = model.last_aux_logits();
  return ops::add(
      ops::cross_entropy(logits, labels),
      ops::mul(ops::add(ops::cross_entropy(aux.aux1, labels), ops::cross_entropy(aux.aux2, labels)),
               0.3));
}

TEST(GoogLeNet, StateDictMatchesTorchvision) {
  expect_torchvision_keys(GoogLeNet(), "googlenet");
  expect_torchvision_keys(GoogLeNet(GoogLeNetOptions().aux_logits(false)), "googlenet_no_aux");
}

TEST(GoogLeNet, ParameterCountsMatchTorchvision) {
  EXPECT_EQ(count_parameters(GoogLeNet()), 13004888);
  EXPECT_EQ(count_parameters(GoogLeNet(GoogLeNetOptions().aux_logits(false))), 6624904);
}

TEST(GoogLeNet, TypeNamesAndFunctionalRelu) {
  auto model = googlenet();
  EXPECT_EQ(model->type_name(), "GoogLeNet");
  EXPECT_EQ(model->conv1->type_name(), "BasicConv2d");
  EXPECT_EQ(model->inception3a->type_name(), "Inception");
  EXPECT_EQ(model->aux1->type_name(), "InceptionAux");
  EXPECT_EQ(model->conv1->bn->options.eps(), 0.001);
  EXPECT_FALSE(model->conv1->conv->bias.defined());
  // Every relu is ops::relu, as torchvision's F.relu: no ReLU module anywhere.
  for (const auto& [name, module] : model->named_modules()) {
    EXPECT_NE(module->type_name(), "ReLU") << name;
  }
}

TEST(GoogLeNet, SmallInputReplacesConv1AndDropsTheFirstPools) {
  GoogLeNet model(GoogLeNetOptions().small_input(true).in_channels(1).num_classes(10));
  EXPECT_EQ(model.conv1->conv->weight.shape(), (Shape{64, 1, 3, 3}));
  EXPECT_EQ(model.conv1->conv->options.stride(), nn::IntPair(1));
  EXPECT_FALSE(model.maxpool1);
  EXPECT_FALSE(model.maxpool2);
  for (const auto& [name, child] : model.named_children()) {
    EXPECT_NE(name, "maxpool1");
    EXPECT_NE(name, "maxpool2");
  }
  EXPECT_EQ(model.state_dict().size(), 364u);  // the same keys as the default model
  model.eval();
  EXPECT_EQ(model.forward(Tensor::zeros({2, 1, 32, 32})).shape(), (Shape{2, 10}));
}

TEST(GoogLeNet, EvalForwardShapesAndSmallestInput) {
  manual_seed(1);
  GoogLeNet model;
  model.eval();
  Tensor x = Tensor::empty({2, 3, 64, 64});
  normal_(x, 0.0, 1.0);
  EXPECT_EQ(model.forward(x).shape(), (Shape{2, 1000}));
  EXPECT_FALSE(model.last_aux_logits().aux1.defined());  // aux heads run in training only
  EXPECT_FALSE(model.last_aux_logits().aux2.defined());
  // As torchvision (weights meta "min_size": (15, 15)): with ceil_mode pools 15x15 reaches a
  // 1x1 map at maxpool3, 14x14 leaves it nothing.
  EXPECT_EQ(model.forward(Tensor::zeros({1, 3, 15, 15})).shape(), (Shape{1, 1000}));
  EXPECT_THROW(model.forward(Tensor::zeros({1, 3, 14, 14})), Error);
  EXPECT_THROW(model.forward(Tensor::zeros({1, 1, 64, 64})), Error);
}

TEST(GoogLeNet, TrainingForwardFillsAuxLogits) {
  manual_seed(2);
  GoogLeNet model(GoogLeNetOptions().num_classes(10));
  Tensor x = Tensor::empty({2, 3, 64, 64});
  normal_(x, 0.0, 1.0);
  EXPECT_EQ(model.forward(x).shape(), (Shape{2, 10}));
  EXPECT_EQ(model.last_aux_logits().aux1.shape(), (Shape{2, 10}));
  EXPECT_EQ(model.last_aux_logits().aux2.shape(), (Shape{2, 10}));
  // The adaptive 4x4 pool of the aux heads also takes maps smaller than 4x4 (2x2 here).
  model.forward(Tensor::zeros({2, 3, 32, 32}));
  EXPECT_EQ(model.last_aux_logits().aux1.shape(), (Shape{2, 10}));

  GoogLeNet no_aux(GoogLeNetOptions().num_classes(10).aux_logits(false));
  EXPECT_EQ(no_aux.forward(x).shape(), (Shape{2, 10}));
  EXPECT_FALSE(no_aux.last_aux_logits().aux1.defined());
}

TEST(GoogLeNet, OneSgdStepWithAuxLossReachesEveryParameter) {
  manual_seed(3);
  GoogLeNet model(GoogLeNetOptions().num_classes(10));
  Tensor x = Tensor::empty({2, 3, 64, 64});
  normal_(x, 0.0, 1.0);
  const Tensor labels = Tensor::from_vector<int64_t>({3, 7}, {2});
  const Tensor fc_before = model.fc->weight.clone();
  const Tensor aux_before = model.aux2->fc2->weight.clone();

  Tensor loss = train_loss(model, model.forward(x), labels);
  ASSERT_TRUE(std::isfinite(loss.item()));
  nn::SGD optimizer(model.parameters(), nn::SGDOptions(0.01).momentum(0.9));
  optimizer.zero_grad();
  loss.backward();
  for (const auto& [name, p] : model.named_parameters()) {
    EXPECT_TRUE(p.grad().defined()) << name << " got no gradient";
  }
  optimizer.step();
  EXPECT_FALSE(testing::all_close(model.fc->weight, fc_before, 0, 0));
  EXPECT_FALSE(testing::all_close(model.aux2->fc2->weight, aux_before, 0, 0));
}

TEST(GoogLeNet, TransformInputRescalesEachChannelAsTorchvision) {
  manual_seed(4);
  GoogLeNet plain(GoogLeNetOptions().num_classes(10).aux_logits(false));
  GoogLeNet transformed(GoogLeNetOptions().num_classes(10).aux_logits(false).transform_input(true));
  transformed.load_state_dict(plain.state_dict());
  plain.eval();
  transformed.eval();
  Tensor x = Tensor::empty({2, 3, 16, 16});
  normal_(x, 0.0, 1.0);
  // x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 with ImageNet's mean and std.
  const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
  std::vector<float> v = x.to_vector<float>();
  const size_t plane = 16 * 16;
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = (i / plane) % 3;
    v[i] = v[i] * static_cast<float>(std[c] / 0.5) + static_cast<float>((mean[c] - 0.5) / 0.5);
  }
  EXPECT_TRUE(testing::all_close(transformed.forward(x),
                                 plain.forward(Tensor::from_vector(v, x.shape())), 1e-5, 1e-6));
  EXPECT_THROW(GoogLeNet(GoogLeNetOptions().transform_input(true).in_channels(1)), Error);
}

TEST(GoogLeNet, InitIsTruncatedNormalForConvAndLinearWeights) {
  manual_seed(5);
  auto model = googlenet();
  for (const auto& [name, module] : model->named_modules()) {
    if (const auto* bn = dynamic_cast<const nn::BatchNorm2d*>(module.get())) {
      EXPECT_EQ(bn->weight.to_vector<float>(), std::vector<float>(bn->num_features, 1.0f)) << name;
      EXPECT_EQ(bn->bias.to_vector<float>(), std::vector<float>(bn->num_features, 0.0f)) << name;
    }
    Tensor weight;
    if (const auto* conv = dynamic_cast<const nn::Conv2d*>(module.get())) weight = conv->weight;
    if (const auto* linear = dynamic_cast<const nn::Linear*>(module.get())) weight = linear->weight;
    if (!weight.defined()) continue;
    expect_normal(name, weight, 0.01);
    // Within the bounds a=-2, b=2, which at 200 std never bite: nothing past ~6 std.
    EXPECT_LT(max_abs(weight), 0.07) << name;
  }
  // Linear biases keep nn.Linear's default U(-1/sqrt(in), 1/sqrt(in)), as torchvision.
  EXPECT_LE(max_abs(model->fc->bias), 1.0 / std::sqrt(1024.0));
  EXPECT_GT(max_abs(model->fc->bias), 0.9 / std::sqrt(1024.0));
}

TEST(GoogLeNet, SmallInputLossFallsOnAFixedBatch) {
  manual_seed(6);
  GoogLeNet model(GoogLeNetOptions().small_input(true).in_channels(1).num_classes(4));
  // The first 4 of band_batch()'s images, one per class: with small_input a 32x32 image costs
  // about as much as a 224x224 one in the default network, so the batch stays small.
  const auto [all_images, all_labels] = band_batch();
  const Tensor images = all_images.slice0(0, 4), labels = all_labels.slice0(0, 4);
  nn::SGD optimizer(model.parameters(), nn::SGDOptions(0.01).momentum(0.9));
  std::vector<double> losses;
  for (int step = 0; step < 20; ++step) {
    Tensor loss = train_loss(model, model.forward(images), labels);
    losses.push_back(loss.item());
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  // Dropout makes single steps noisy: compare the mean of the first and last three.
  const double first = (losses[0] + losses[1] + losses[2]) / 3;
  const double last = (losses[17] + losses[18] + losses[19]) / 3;
  EXPECT_LT(last, 0.5 * first) << "loss went from " << first << " to " << last;
}

}  // namespace
}  // namespace qat::zoo
