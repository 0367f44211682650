#include "nn/sequential.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/pooling.h"

namespace qat::nn {
namespace {

std::vector<std::string> keys(const NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

std::shared_ptr<Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<Conv2d>(in, out, 3,
                                  Conv2dOptions().stride(stride).padding(1).bias(false));
}

// torchvision's BasicBlock, registered in its __init__ order.
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride) {
    conv1 = register_module("conv1", conv3x3(in, out, stride));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out));
    relu = register_module("relu", std::make_shared<ReLU>());
    conv2 = register_module("conv2", conv3x3(out, out, 1));
    bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out));
    if (stride != 1 || in != out) {
      downsample = register_module(
          "downsample",
          std::make_shared<Sequential>(
              std::make_shared<Conv2d>(in, out, 1, Conv2dOptions().stride(stride).bias(false)),
              std::make_shared<BatchNorm2d>(out)));
    }
  }
  std::string type_name() const override { return "BasicBlock"; }

  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<Sequential> downsample;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    const Tensor identity = downsample ? downsample->forward(x) : x;
    const Tensor out = bn2->forward(conv2->forward(relu->forward(bn1->forward(conv1->forward(x)))));
    return relu->forward(ops::add(out, identity));
  }
};

// A two-stage ResNet in miniature.
class TinyResNet : public Module {
 public:
  TinyResNet() {
    conv1 = register_module("conv1", conv3x3(3, 4, 1));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(4));
    relu = register_module("relu", std::make_shared<ReLU>());
    layer1 = register_module("layer1",
                             std::make_shared<Sequential>(std::make_shared<BasicBlock>(4, 4, 1),
                                                          std::make_shared<BasicBlock>(4, 8, 2)));
    avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(IntPair(1, 1)));
    fc = register_module("fc", std::make_shared<Linear>(8, 10));
  }
  std::string type_name() const override { return "TinyResNet"; }

  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<Sequential> layer1;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    const Tensor y = layer1->forward(relu->forward(bn1->forward(conv1->forward(x))));
    return fc->forward(ops::flatten(avgpool->forward(y), 1));
  }
};

std::vector<std::string> bn_keys(const std::string& prefix) {
  std::vector<std::string> out;
  for (const char* name : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
    out.push_back(prefix + name);
  return out;
}

TEST(Sequential, NestedModelHasTorchvisionKeys) {
  auto net = std::make_shared<TinyResNet>();
  std::vector<std::string> expected = {"conv1.weight"};
  auto append = [&expected](const std::vector<std::string>& more) {
    expected.insert(expected.end(), more.begin(), more.end());
  };
  append(bn_keys("bn1."));
  for (const std::string block : {"layer1.0.", "layer1.1."}) {
    append({block + "conv1.weight"});
    append(bn_keys(block + "bn1."));
    append({block + "conv2.weight"});
    append(bn_keys(block + "bn2."));
  }
  append({"layer1.1.downsample.0.weight"});
  append(bn_keys("layer1.1.downsample.1."));
  append({"fc.weight", "fc.bias"});
  EXPECT_EQ(keys(net->state_dict()), expected);
  EXPECT_EQ(net->state_dict().size(), 38u);  // 20 parameters + 18 BatchNorm buffers
  EXPECT_EQ(net->parameters().size(), 20u);
}

TEST(Sequential, ChildrenAreNamedByPosition) {
  auto seq = std::make_shared<Sequential>(std::make_shared<Linear>(4, 3), std::make_shared<ReLU>());
  seq->append(std::make_shared<Linear>(3, 2));
  ASSERT_EQ(seq->size(), 3u);
  EXPECT_EQ(keys(seq->state_dict()),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ((*seq)[1]->type_name(), "ReLU");
  EXPECT_THROW((*seq)[3], Error);
}

TEST(Sequential, EmptyRegistersNothingAndPassesInputThrough) {
  auto empty = std::make_shared<Sequential>();
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_TRUE(empty->state_dict().empty());
  EXPECT_TRUE(empty->named_children().empty());
  const Tensor x = Tensor::ones({2, 3});
  EXPECT_TRUE(empty->forward(x).shares_storage(x));
  EXPECT_EQ(empty->to_string(), "Sequential()");
}

TEST(Sequential, ForwardRunsChildrenInOrder) {
  auto first = std::make_shared<Linear>(4, 3);
  auto second = std::make_shared<Linear>(3, 2);
  auto seq = std::make_shared<Sequential>(first, std::make_shared<ReLU>(), second);
  const Tensor x = Tensor::from_vector<float>({1, -2, 3, -4, 5, -6, 7, -8}, {2, 4});
  const Tensor expected = second->forward(ops::relu(first->forward(x)));
  EXPECT_EQ(seq->forward(x).to_vector<float>(), expected.to_vector<float>());

  auto net = std::make_shared<TinyResNet>();
  EXPECT_EQ(net->forward(Tensor::ones({2, 3, 8, 8})).shape(), (Shape{2, 10}));
}

TEST(Sequential, TrainAndEvalReachBatchNormInsideBlocks) {
  auto net = std::make_shared<TinyResNet>();
  auto block = std::dynamic_pointer_cast<BasicBlock>((*net->layer1)[1]);
  ASSERT_NE(block, nullptr);
  const Tensor nbt = block->downsample->state_dict()[5].second;  // 1.num_batches_tracked
  net->forward(Tensor::ones({2, 3, 8, 8}));
  EXPECT_EQ(nbt.item(), 1);
  net->eval();
  EXPECT_FALSE(block->bn2->is_training());
  net->forward(Tensor::ones({2, 3, 8, 8}));
  EXPECT_EQ(nbt.item(), 1);
}

TEST(Sequential, LoadedModelComputesTheSameOutputs) {
  auto trained = std::make_shared<TinyResNet>();
  trained->forward(Tensor::ones({2, 3, 8, 8}));  // moves the running statistics
  auto fresh = std::make_shared<TinyResNet>();
  fresh->load_state_dict(trained->state_dict());
  trained->eval();
  fresh->eval();
  const Tensor x = Tensor::full({1, 3, 8, 8}, 0.5);
  EXPECT_EQ(fresh->forward(x).to_vector<float>(), trained->forward(x).to_vector<float>());
}

TEST(Sequential, ReprMatchesTorch) {
  auto seq =
      std::make_shared<Sequential>(std::make_shared<Conv2d>(3, 8, 3, Conv2dOptions().bias(false)),
                                   std::make_shared<BatchNorm2d>(8), std::make_shared<ReLU>(),
                                   std::make_shared<Sequential>(std::make_shared<Flatten>()));
  EXPECT_EQ(seq->to_string(),
            "Sequential(\n"
            "  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), bias=False)\n"
            "  (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True)\n"
            "  (2): ReLU()\n"
            "  (3): Sequential(\n"
            "    (0): Flatten(start_dim=1, end_dim=-1)\n"
            "  )\n"
            ")");
}

}  // namespace
}  // namespace qat::nn
