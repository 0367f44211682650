#include "zoo/resnet.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/loss.h"
#include "core/random.h"
#include "nn/optim.h"
#include "zoo/zoo_test_util.h"

namespace qat::zoo {
namespace {

using test_util::count_parameters;
using test_util::expect_torchvision_keys;

std::vector<std::string> key_lines(const nn::Module& model) {
  std::vector<std::string> lines;
  for (const auto& [key, tensor] : model.state_dict()) {
    lines.push_back(test_util::key_line(key, tensor));
  }
  return lines;
}

std::vector<std::string> read_key_file(const std::string& name) {
  const std::string path = "tests/data/" + name;
  std::ifstream file(path);
  QAT_CHECK(file.good(), "cannot open '", path, "' (relative to the runfiles root)");
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  return lines;
}

// Reports the first differing line instead of printing two 300-line lists.
::testing::AssertionResult same_lines(const std::vector<std::string>& actual,
                                      const std::vector<std::string>& expected) {
  for (size_t i = 0; i < std::min(actual.size(), expected.size()); ++i) {
    if (actual[i] != expected[i]) {
      return ::testing::AssertionFailure() << "line " << i << ": got '" << actual[i]
                                           << "', torchvision has '" << expected[i] << "'";
    }
  }
  if (actual.size() == expected.size()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << actual.size() << " entries, torchvision has " << expected.size();
}

std::vector<std::string> child_names(const nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& [name, child] : module.named_children()) names.push_back(name);
  return names;
}

ResNetOptions small_input_options(int64_t num_classes) {
  return ResNetOptions().small_input(true).in_channels(1).num_classes(num_classes);
}

double sgd_step(nn::Module& model, nn::SGD& optimizer, const Tensor& images, const Tensor& labels) {
  Tensor loss = ops::cross_entropy(model.forward(images), labels);
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  return loss.item();
}

// One model per depth, built once: construction initializes 11-26M weights.
TEST(ResNet18, KeysParameterCountForwardShapeAndReprMatchTorchvision) {
  std::shared_ptr<ResNet> model = resnet18();
  expect_torchvision_keys(*model, "resnet18");
  EXPECT_EQ(model->state_dict().size(), 122u);  // 62 parameters + 60 BN buffers
  EXPECT_EQ(count_parameters(*model), 11689512);
  EXPECT_EQ(model->forward(Tensor::zeros({2, 3, 64, 64})).shape(), (Shape{2, 1000}));

  const std::string repr = model->to_string();
  EXPECT_EQ(repr.rfind("ResNet(\n  (conv1): Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), "
                       "padding=(3, 3), bias=False)\n",
                       0),
            0u);
  EXPECT_NE(repr.find("  (maxpool): MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, "
                      "ceil_mode=False)\n"),
            std::string::npos);
  EXPECT_NE(repr.find("  (avgpool): AdaptiveAvgPool2d(output_size=(1, 1))\n"
                      "  (fc): Linear(in_features=512, out_features=1000, bias=True)\n)"),
            std::string::npos);
}

TEST(ResNet34, KeysParameterCountAndForwardShapeMatchTorchvision) {
  std::shared_ptr<ResNet> model = resnet34();
  expect_torchvision_keys(*model, "resnet34");
  EXPECT_EQ(count_parameters(*model), 21797672);
  EXPECT_EQ(model->forward(Tensor::zeros({2, 3, 64, 64})).shape(), (Shape{2, 1000}));
}

TEST(ResNet50, KeysParameterCountAndForwardShapeMatchTorchvision) {
  std::shared_ptr<ResNet> model = resnet50();
  expect_torchvision_keys(*model, "resnet50");
  EXPECT_EQ(count_parameters(*model), 25557032);
  EXPECT_EQ(model->forward(Tensor::zeros({2, 3, 64, 64})).shape(), (Shape{2, 1000}));
}

TEST(ResNet, SmallInputKeepsTheKeysAndChangesOnlyTheStem) {
  std::shared_ptr<ResNet> r18 = resnet18(ResNetOptions().small_input(true));
  std::vector<std::string> expected = read_key_file("resnet18_keys.txt");
  ASSERT_EQ(expected.front(), "conv1.weight F32 64,3,7,7");
  expected.front() = "conv1.weight F32 64,3,3,3";
  EXPECT_TRUE(same_lines(key_lines(*r18), expected));
  EXPECT_EQ(r18->maxpool, nullptr);
  EXPECT_EQ(r18->to_string().find("maxpool"), std::string::npos);
  // No downsampling in the stem: 32x32 reaches layer4 as 4x4, like CIFAR ResNets.
  EXPECT_EQ(r18->conv1->forward(Tensor::zeros({2, 3, 32, 32})).shape(), (Shape{2, 64, 32, 32}));

  std::shared_ptr<ResNet> r50 = resnet50(small_input_options(10));
  expected = read_key_file("resnet50_keys.txt");
  expected.front() = "conv1.weight F32 64,1,3,3";
  expected.end()[-2] = "fc.weight F32 10,2048";
  expected.end()[-1] = "fc.bias F32 10";
  EXPECT_TRUE(same_lines(key_lines(*r50), expected));
  EXPECT_EQ(r50->forward(Tensor::zeros({2, 1, 32, 32})).shape(), (Shape{2, 10}));
  EXPECT_EQ(resnet18(small_input_options(10))->forward(Tensor::zeros({2, 1, 28, 28})).shape(),
            (Shape{2, 10}));
}

TEST(ResNet, RejectsBadConfigurationsAndInputs) {
  EXPECT_THROW(ResNet(ResNetBlock::kBasicBlock, {2, 2, 2}), Error);
  EXPECT_THROW(ResNet(ResNetBlock::kBasicBlock, {2, 0, 2, 2}), Error);
  ResNet tiny(ResNetBlock::kBasicBlock, {1, 1, 1, 1}, small_input_options(10));
  EXPECT_THROW(tiny.forward(Tensor::zeros({2, 3, 32, 32})), Error);
  EXPECT_THROW(tiny.forward(Tensor::zeros({1, 32, 32})), Error);
  // A shape-changing block without a downsample cannot add its identity.
  EXPECT_THROW(BasicBlock(64, 128, 2), Error);
  EXPECT_THROW(Bottleneck(64, 64), Error);
}

// torchvision's child order; one ReLU child per block, called at every ReLU site.
TEST(ResNet, BlocksHaveTorchvisionChildren) {
  EXPECT_EQ(child_names(BasicBlock(64, 64)),
            (std::vector<std::string>{"conv1", "bn1", "relu", "conv2", "bn2"}));
  EXPECT_EQ(child_names(Bottleneck(256, 64)),
            (std::vector<std::string>{"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"}));

  auto downsample = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(256, 512, 1, nn::Conv2dOptions().stride(2).bias(false)),
      std::make_shared<nn::BatchNorm2d>(512));
  Bottleneck block(256, 128, 2, downsample);
  // torchvision's repr, except that our ReLU has no inplace flag.
  EXPECT_EQ(
      block.to_string(),
      "Bottleneck(\n"
      "  (conv1): Conv2d(256, 128, kernel_size=(1, 1), stride=(1, 1), bias=False)\n"
      "  (bn1): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
      "  (conv2): Conv2d(128, 128, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)\n"
      "  (bn2): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
      "  (conv3): Conv2d(128, 512, kernel_size=(1, 1), stride=(1, 1), bias=False)\n"
      "  (bn3): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
      "  (relu): ReLU()\n"
      "  (downsample): Sequential(\n"
      "    (0): Conv2d(256, 512, kernel_size=(1, 1), stride=(2, 2), bias=False)\n"
      "    (1): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
      "  )\n"
      ")");
  EXPECT_EQ(block.forward(Tensor::zeros({2, 256, 8, 8})).shape(), (Shape{2, 512, 4, 4}));
}

TEST(ResNet, DefaultInitIsTorchvisions) {
  manual_seed(0);
  std::shared_ptr<ResNet> model = resnet18();
  for (const auto& [name, module] : model->named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(module.get())) {
      // kaiming_normal_(mode=fan_out, nonlinearity=relu): N(0, 2 / (out * KH * KW)).
      const Tensor& w = conv->weight;
      test_util::expect_normal(name, w, std::sqrt(2.0 / (w.size(0) * w.size(2) * w.size(3))));
    } else if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(module.get())) {
      for (double x : bn->weight.to_vector<double>()) ASSERT_EQ(x, 1.0) << name;
      for (double x : bn->bias.to_vector<double>()) ASSERT_EQ(x, 0.0) << name;
      for (double x : bn->running_mean.to_vector<double>()) ASSERT_EQ(x, 0.0) << name;
      for (double x : bn->running_var.to_vector<double>()) ASSERT_EQ(x, 1.0) << name;
      EXPECT_EQ(bn->num_batches_tracked.item(), 0.0) << name;
    }
  }
  // fc keeps nn.Linear's default: U(-1/sqrt(512), 1/sqrt(512)) for weight and bias.
  const double bound = 1.0 / std::sqrt(512.0);
  EXPECT_LE(test_util::max_abs(model->fc->weight), bound);
  EXPECT_LE(test_util::max_abs(model->fc->bias), bound);
  EXPECT_NEAR(test_util::mean_std(model->fc->weight).second, bound / std::sqrt(3.0), 0.02 * bound);
}

TEST(ResNet, ZeroInitResidualZeroesTheLastBnOfEveryBlock) {
  auto all_equal = [](const Tensor& t, double value) {
    for (double x : t.to_vector<double>()) {
      if (x != value) return false;
    }
    return true;
  };
  std::shared_ptr<ResNet> r18 = resnet18(ResNetOptions().zero_init_residual(true));
  int blocks = 0;
  for (const auto& [name, module] : r18->named_modules()) {
    if (auto* block = dynamic_cast<BasicBlock*>(module.get())) {
      ++blocks;
      EXPECT_TRUE(all_equal(block->bn2->weight, 0.0)) << name;
      EXPECT_TRUE(all_equal(block->bn1->weight, 1.0)) << name;
    }
  }
  EXPECT_EQ(blocks, 8);
  EXPECT_TRUE(all_equal(r18->bn1->weight, 1.0));

  std::shared_ptr<ResNet> r50 = resnet50(small_input_options(10).zero_init_residual(true));
  blocks = 0;
  for (const auto& [name, module] : r50->named_modules()) {
    if (auto* block = dynamic_cast<Bottleneck*>(module.get())) {
      ++blocks;
      EXPECT_TRUE(all_equal(block->bn3->weight, 0.0)) << name;
      EXPECT_TRUE(all_equal(block->bn2->weight, 1.0)) << name;
      if (block->downsample) {
        auto* bn = dynamic_cast<nn::BatchNorm2d*>((*block->downsample)[1].get());
        EXPECT_TRUE(all_equal(bn->weight, 1.0)) << name;
      }
    }
  }
  EXPECT_EQ(blocks, 16);
}

// One SGD step on every depth: every parameter gets a gradient of its shape and moves.
TEST(ResNet, OneSgdStepUpdatesEveryParameter) {
  manual_seed(1);
  const auto [images, labels] = test_util::band_batch();
  for (auto factory : {resnet18, resnet34, resnet50}) {
    std::shared_ptr<ResNet> model = factory(small_input_options(4));
    std::vector<Tensor> before;
    for (const Tensor& p : model->parameters()) before.push_back(p.clone());
    nn::SGD optimizer(model->parameters(), nn::SGDOptions(0.1));
    // Two images keep resnet50 cheap; BN still sees 2x4x4 values per channel in layer4.
    Tensor loss = ops::cross_entropy(model->forward(images.slice0(0, 2)), labels.slice0(0, 2));
    ASSERT_TRUE(std::isfinite(loss.item()));
    loss.backward();
    for (const auto& [name, p] : model->named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_EQ(p.grad().shape(), p.shape()) << name;
    }
    optimizer.step();
    const std::vector<Tensor> after = model->parameters();
    for (size_t i = 0; i < after.size(); ++i) {
      EXPECT_NE(after[i].to_vector<float>(), before[i].to_vector<float>()) << i;
    }
    EXPECT_EQ(model->bn1->num_batches_tracked.item(), 1.0);
  }
}

TEST(ResNet, LossFallsOnAFixedBatch) {
  manual_seed(2);
  std::shared_ptr<ResNet> model = resnet18(small_input_options(4));
  const auto [images, labels] = test_util::band_batch();  // 8 images, 4 classes
  nn::SGD optimizer(model->parameters(), nn::SGDOptions(0.05).momentum(0.9));
  const double first = sgd_step(*model, optimizer, images, labels);
  double last = first;
  for (int step = 1; step < 20; ++step) last = sgd_step(*model, optimizer, images, labels);
  EXPECT_LT(last, 0.1 * first) << "loss went from " << first << " to " << last;
}

}  // namespace
}  // namespace qat::zoo
