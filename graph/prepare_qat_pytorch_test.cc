// prepare_qat for the PyTorch presets (fbgemm, qnnpack, qnnpack_perchannel): the placement of
// PyTorch 1.13 eager QAT on torchvision's quantizable models.
//
// The reference counts come from torch 1.13 + torchvision 0.14 (Debian) on this machine:
//   m = torchvision.models.quantization.resnet18(weights=None, quantize=False)  # or mobilenet_v2
//   m.train(); m.fuse_model(is_qat=True)
//   m.qconfig = torch.ao.quantization.get_default_qat_qconfig("fbgemm")
//   torch.ao.quantization.prepare_qat(m, inplace=True); m(torch.randn(1, 3, 64, 64))
// counting the FakeQuantizeBase modules, and among the activation ones those a forward reaches:
//   resnet18: 51 = 21 weight_fake_quant + 30 activation: quant (QuantStub), conv1, per
//     BasicBlock conv1, conv2 and add_relu (8 x 3), layer{2,3,4}.0.downsample.0, fc.
//   mobilenet_v2: 124 = 53 weight + 71 activation, of which 64 run: quant, features.0.0,
//     features.1.conv.{0.0, 1}, 3 per other InvertedResidual (16 x 3), 10 skip_add (the 7
//     skip_add of the blocks without a residual never run), features.18.0, classifier.1.
// Ours: a FakeQuantize node per QuantStub / FloatFunctional observer, and the
// activation_post_process of each QAT module per fused conv / linear observer.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "graph/executor.h"
#include "graph/fuse.h"
#include "graph/prepare_qat.h"
#include "graph/test_models.h"
#include "graph/trace.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"
#include "zoo/registry.h"

namespace qat::graph {
namespace {

const quant::QConfig kFbgemm = quant::QConfig::preset("fbgemm");

std::shared_ptr<nn::Module> zoo_model(const std::string& name, bool small_input) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = small_input;
  config.num_classes = 10;
  return zoo::create_model(config);
}

// A zoo model prepared for `qconfig`: with the full stem on 1x3x64x64 (torchvision's resnet18
// with its max pool), or small_input on 2x3x32x32.
Graph prepared_zoo_model(const std::string& name, const quant::QConfig& qconfig,
                         const std::vector<std::string>& black_list = {}, bool small_input = true) {
  auto model = zoo_model(name, small_input);
  model->eval();
  const Shape shape = small_input ? Shape{2, 3, 32, 32} : Shape{1, 3, 64, 64};
  return prepare_qat(fuse(trace(*model, shape)), qconfig, black_list);
}

bool is_quantizer(const GraphNode& node) {
  return dynamic_cast<const quant::FakeQuantize*>(node.module.get()) != nullptr;
}

const quant::QatModule* qat_module(const GraphNode& node) {
  return dynamic_cast<const quant::QatModule*>(node.module.get());
}

// Activation fake quants: FakeQuantize nodes and the output quantizers of the QAT modules.
int activation_fake_quants(const Graph& g) {
  int count = 0;
  for (const GraphNode& node : g.nodes) {
    const quant::QatModule* module = qat_module(node);
    if (is_quantizer(node) || (module && module->activation_post_process())) ++count;
  }
  return count;
}

int weight_fake_quants(const Graph& g) {
  int count = 0;
  for (const GraphNode& node : g.nodes) count += qat_module(node) ? 1 : 0;
  return count;
}

// The only reader of output 0 of node `name` is its quantizer.
void expect_observed(const Graph& g, const std::string& name) {
  const std::vector<int> users = g.users({g.find(name), 0});
  ASSERT_EQ(users.size(), 1u) << name;
  EXPECT_EQ(g.nodes[users[0]].name, name + ".activation_post_process");
  EXPECT_TRUE(is_quantizer(g.nodes[users[0]])) << name;
}

TEST(PrepareQatPyTorch, SmallModelGraph) {
  auto model = std::make_shared<test_models::TinyNet>();
  model->eval();
  EXPECT_EQ(prepare_qat(fuse(trace(*model, {2, 1, 8, 8})), kFbgemm).to_string(),
            "input: input -> [2, 1, 8, 8]\n"
            "input.activation_post_process: FakeQuantize(input) -> [2, 1, 8, 8]  "
            "# act: quint8 per_tensor_affine [0, 127] half_even_mul\n"
            "stem: Conv2d(input.activation_post_process) -> [2, 4, 8, 8]  "
            "# weight: qint8 per_channel_symmetric(axis=0) [-128, 127] half_even_mul; "
            "output: quint8 per_tensor_affine [0, 127] half_even_mul\n"
            "block.conv: ConvBnReLU2d(stem) -> [2, 4, 8, 8]  # fused block.bn, block.relu; "
            "weight: qint8 per_channel_symmetric(axis=0) [-128, 127] half_even_mul; "
            "output: quint8 per_tensor_affine [0, 127] half_even_mul\n"
            "block.add: add(block.conv, stem) -> [2, 4, 8, 8]  "
            "# observed after block.relu_1 (add_relu)\n"
            "block.relu_1: ReLU(block.add) -> [2, 4, 8, 8]\n"
            "block.relu_1.activation_post_process: FakeQuantize(block.relu_1) -> [2, 4, 8, 8]  "
            "# act: quint8 per_tensor_affine [0, 127] half_even_mul; add_relu\n"
            "chunk: chunk(block.relu_1.activation_post_process) -> [2, 2, 8, 8], [2, 2, 8, 8]  "
            "{chunks=2, dim=1}  # qparams from its input\n"
            "cat: cat(chunk:1, chunk:0) -> [2, 4, 8, 8]  {dim=1}\n"
            "cat.activation_post_process: FakeQuantize(cat) -> [2, 4, 8, 8]  "
            "# act: quint8 per_tensor_affine [0, 127] half_even_mul; observes the cat\n"
            "mul: mul(cat.activation_post_process) -> [2, 4, 8, 8]  {other=0.5}  "
            "# qparams from its input\n"
            "cat_1: cat(cat.activation_post_process, mul) -> [2, 8, 8, 8]  {dim=1}\n"
            "cat_1.activation_post_process: FakeQuantize(cat_1) -> [2, 8, 8, 8]  "
            "# act: quint8 per_tensor_affine [0, 127] half_even_mul; observes the cat\n"
            "max_pool2d: max_pool2d(cat_1.activation_post_process) -> [2, 8, 4, 4]  "
            "{kernel=[2, 2], stride=[2, 2], padding=[0, 0], dilation=[1, 1], ceil_mode=false}  "
            "# qparams from its input\n"
            "flatten: flatten(max_pool2d) -> [2, 128]  {start_dim=1, end_dim=-1}  "
            "# qparams from its input\n"
            "fc: Linear(flatten) -> [2, 3]  "
            "# weight: qint8 per_channel_symmetric(axis=0) [-128, 127] half_even_mul; "
            "output: quint8 per_tensor_affine [0, 127] half_even_mul\n"
            "output: output(fc)\n");
}

// torchvision's quantizable resnet18 after fuse_model() and prepare_qat (see the top).
TEST(PrepareQatPyTorch, ResNet18HasPyTorchsFakeQuants) {
  const Graph g = prepared_zoo_model("resnet18", kFbgemm, {}, /*small_input=*/false);
  EXPECT_EQ(weight_fake_quants(g), 21);
  EXPECT_EQ(activation_fake_quants(g), 30);
  // PyTorch's quant.activation_post_process; every conv and the fc observe their output.
  EXPECT_EQ(g.value_name(g.node("conv1").inputs[0]), "input.activation_post_process");
  for (const GraphNode& node : g.nodes) {
    if (qat_module(node) != nullptr) {
      EXPECT_NE(qat_module(node)->activation_post_process(), nullptr) << node.name;
    }
  }
  // The max pool, the ReLUs, avgpool and flatten take their qparams from their input.
  EXPECT_EQ(g.value_name(g.node("maxpool").inputs[0]), "conv1");
  EXPECT_EQ(g.value_name(g.node("layer1.0.conv1").inputs[0]), "maxpool");
  for (const std::string name : {"maxpool", "avgpool", "flatten"}) {
    EXPECT_EQ(g.find(name + ".activation_post_process"), -1) << name;
    EXPECT_EQ(g.node(name).annotations.back(), "qparams from its input") << name;
  }
  EXPECT_EQ(g.value_name(g.node("fc").inputs[0]), "flatten");
  EXPECT_EQ(g.value_name(g.node("output").inputs[0]), "fc");  // the DeQuantStub
}

// BasicBlock's skip_add.add_relu: one observer, after the relu.
TEST(PrepareQatPyTorch, ResNet18ObservesEveryAddReLUOnceAfterTheReLU) {
  const Graph g = prepared_zoo_model("resnet18", kFbgemm, {}, /*small_input=*/false);
  int adds = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const GraphNode& add = g.nodes[i];
    if (add.op != "add") continue;
    ++adds;
    const std::string block = add.name.substr(0, add.name.rfind('.'));  // "layer1.0"
    const std::vector<int> users = g.users({static_cast<int>(i), 0});
    ASSERT_EQ(users.size(), 1u) << add.name;
    EXPECT_EQ(g.nodes[users[0]].name, block + ".relu_1");
    EXPECT_EQ(add.annotations.back(), "observed after " + block + ".relu_1 (add_relu)");
    expect_observed(g, block + ".relu_1");
    EXPECT_EQ(g.node(block + ".relu_1.activation_post_process").annotations.back(), "add_relu");
  }
  EXPECT_EQ(adds, 8);
}

// The InvertedResidual's skip_add.add observes the add; ReLU6 is fused into the convs
// (torchvision's quantizable MobileNetV2 swaps ReLU6 for ReLU; the observers are the same).
TEST(PrepareQatPyTorch, MobileNetV2ObservesAddsAndFusesReLU6) {
  const Graph g = prepared_zoo_model("mobilenet_v2", kFbgemm);
  int adds = 0, relu6_convs = 0;
  for (const GraphNode& node : g.nodes) {
    EXPECT_NE(node.op, "ReLU6") << node.name;
    if (node.op == "add") {
      ++adds;
      expect_observed(g, node.name);
    }
    const quant::QatModule* module = qat_module(node);
    if (module == nullptr) continue;
    EXPECT_NE(module->activation_post_process(), nullptr) << node.name;
    if (module->options().activation() == quant::FusedActivation::kReLU6) ++relu6_convs;
  }
  EXPECT_EQ(adds, 10);
  EXPECT_EQ(relu6_convs, 35);  // the stem, 2 per inverted residual (1 in the first), the last
  EXPECT_EQ(weight_fake_quants(g), 53);
  EXPECT_EQ(activation_fake_quants(g), 64);  // PyTorch: the 64 that run (see the top)
  EXPECT_EQ(g.find("adaptive_avg_pool2d.activation_post_process"), -1);
}

TEST(PrepareQatPyTorch, PresetsPickTheWeightAndActivationGrids) {
  struct Case {
    std::string preset;
    bool per_channel_weights;
    int64_t act_max;
  };
  const std::vector<Case> cases = {
      {"fbgemm", true, 127}, {"qnnpack", false, 255}, {"qnnpack_perchannel", true, 255}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.preset);
    const Graph g = prepared_zoo_model("resnet18", quant::QConfig::preset(c.preset));
    EXPECT_EQ(weight_fake_quants(g), 21);
    EXPECT_EQ(activation_fake_quants(g), 30);
    for (const GraphNode& node : g.nodes) {
      const quant::QatModule* module = qat_module(node);
      if (module == nullptr) continue;
      EXPECT_EQ(module->weight_fake_quant()->is_per_channel(), c.per_channel_weights) << node.name;
      EXPECT_EQ(module->weight_fake_quant()->quant_min(), -128) << node.name;
      EXPECT_EQ(module->activation_post_process()->quant_min(), 0) << node.name;
      EXPECT_EQ(module->activation_post_process()->quant_max(), c.act_max) << node.name;
    }
  }
}

TEST(PrepareQatPyTorch, BlackListedNodesStayFloat) {
  const Graph tail = prepared_zoo_model("resnet18", kFbgemm, {"layer4.*", "fc"});
  int black_listed = 0;
  for (const GraphNode& node : tail.nodes) {
    const bool listed = node.name.rfind("layer4.", 0) == 0 || node.name == "fc";
    if (!listed || is_quantizer(node)) continue;  // the quantizer at the border is not listed
    ++black_listed;
    EXPECT_EQ(qat_module(node), nullptr) << node.name;
    EXPECT_EQ(node.annotations.back(), "float: black_list") << node.name;
  }
  EXPECT_EQ(black_listed, 10);  // layer4: 5 (fused) convs, 2 adds, 2 relus; fc
  // layer4 reads the quantized layer3 output dequantized; the float layer4 output is quantized
  // again for avgpool, which is not listed.
  EXPECT_EQ(tail.value_name(tail.node("layer4.0.conv1").inputs[0]),
            "layer3.1.relu_1.activation_post_process");
  EXPECT_EQ(tail.value_name(tail.node("avgpool").inputs[0]),
            "layer4.1.relu_1.activation_post_process");

  // An add whose relu is listed is observed itself: PyTorch cannot fuse them into add_relu.
  const Graph relu = prepared_zoo_model("resnet18", kFbgemm, {"layer1.0.relu_1"});
  expect_observed(relu, "layer1.0.add");
  EXPECT_EQ(relu.value_name(relu.node("layer1.0.relu_1").inputs[0]),
            "layer1.0.add.activation_post_process");
  EXPECT_EQ(relu.value_name(relu.node("layer1.1.conv1").inputs[0]),
            "layer1.0.relu_1.activation_post_process");
}

TEST(PrepareQatPyTorch, EverythingBlackListedComputesTheFloatModel) {
  auto model = zoo_model("resnet18", /*small_input=*/true);
  model->eval();
  const Graph g = prepare_qat(fuse(trace(*model, {2, 3, 32, 32})), kFbgemm, {"*"});
  EXPECT_EQ(activation_fake_quants(g) + weight_fake_quants(g), 0);
  Tensor x = Tensor::empty({2, 3, 32, 32});
  Generator gen(1);
  normal_(x, 0.0, 1.0, gen);
  EXPECT_EQ(run(g, x).to_vector<float>(), model->forward(x).to_vector<float>());
}

}  // namespace
}  // namespace qat::graph
