#include "graph/prepare_qat.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/random.h"
#include "graph/executor.h"
#include "graph/fuse.h"
#include "graph/fused_modules.h"
#include "graph/test_models.h"
#include "graph/trace.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/optim.h"
#include "quant/conv_bn_relu.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"
#include "zoo/registry.h"

namespace qat::graph {
namespace {

// The message of the qat::Error that `fn` throws ("" if none).
template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const quant::QConfig kTensorRT = quant::QConfig::preset("tensorrt");
const quant::QConfig kTNN = quant::QConfig::preset("tnn");
const Shape kSmallImage = {2, 3, 32, 32};

std::shared_ptr<nn::Module> small_zoo_model(const std::string& name, bool small_input = true) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = small_input;
  config.num_classes = 10;
  return zoo::create_model(config);
}

Graph prepared_zoo_model(const std::string& name, const std::vector<std::string>& black_list = {},
                         const quant::QConfig& qconfig = kTensorRT) {
  auto model = small_zoo_model(name);
  model->eval();
  return prepare_qat(fuse(trace(*model, kSmallImage)), qconfig, black_list);
}

const GraphNode& producer(const Graph& g, Value v) { return g.nodes[v.node]; }

bool is_quantizer(const GraphNode& node) {
  return dynamic_cast<const quant::FakeQuantize*>(node.module.get()) != nullptr;
}

bool is_qat_module(const GraphNode& node) {
  return dynamic_cast<const quant::QatModule*>(node.module.get()) != nullptr;
}

// A conv or linear node that still runs in float.
bool is_float_weighted(const GraphNode& node) {
  const nn::Module* m = node.module.get();
  return dynamic_cast<const FusedConv2d*>(m) || dynamic_cast<const FusedLinear*>(m) ||
         dynamic_cast<const nn::Conv2d*>(m) || dynamic_cast<const nn::Linear*>(m);
}

bool reads_quantized(const Graph& g, const GraphNode& node, size_t k) {
  return is_quantizer(producer(g, node.inputs[k]));
}

TEST(PrepareQat, SmallModelGraph) {
  auto model = std::make_shared<test_models::TinyNet>();
  model->eval();
  EXPECT_EQ(prepare_qat(fuse(trace(*model, {2, 1, 8, 8})), kTensorRT).to_string(),
            "input: input -> [2, 1, 8, 8]\n"
            "input.activation_post_process: FakeQuantize(input) -> [2, 1, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_even_div\n"
            "stem: Conv2d(input.activation_post_process) -> [2, 4, 8, 8]  "
            "# weight: qint8 per_channel_symmetric(axis=0) [-127, 127] half_even_div\n"
            "stem.activation_post_process: FakeQuantize(stem) -> [2, 4, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_even_div\n"
            "block.conv: ConvBnReLU2d(stem.activation_post_process) -> [2, 4, 8, 8]  "
            "# fused block.bn, block.relu; "
            "weight: qint8 per_channel_symmetric(axis=0) [-127, 127] half_even_div\n"
            "block.add: add(block.conv, stem.activation_post_process) -> [2, 4, 8, 8]\n"
            "block.relu_1: ReLU(block.add) -> [2, 4, 8, 8]\n"
            "chunk: chunk(block.relu_1) -> [2, 2, 8, 8], [2, 2, 8, 8]  {chunks=2, dim=1}\n"
            "cat: cat(chunk:1, chunk:0) -> [2, 4, 8, 8]  {dim=1}\n"
            "cat.activation_post_process: FakeQuantize(cat) -> [2, 4, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_even_div; "
            "shared by the cat inputs\n"
            "mul: mul(cat.activation_post_process) -> [2, 4, 8, 8]  {other=0.5}\n"
            "cat_1: cat(cat.activation_post_process, mul) -> [2, 8, 8, 8]  {dim=1}\n"
            "cat_1.activation_post_process: FakeQuantize(cat_1) -> [2, 8, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_even_div; "
            "shared by the cat inputs\n"
            "max_pool2d: max_pool2d(cat_1.activation_post_process) -> [2, 8, 4, 4]  "
            "{kernel=[2, 2], stride=[2, 2], padding=[0, 0], dilation=[1, 1], ceil_mode=false}\n"
            "flatten: flatten(max_pool2d) -> [2, 128]  {start_dim=1, end_dim=-1}\n"
            "flatten.activation_post_process: FakeQuantize(flatten) -> [2, 128]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_even_div\n"
            "fc: Linear(flatten.activation_post_process) -> [2, 3]  "
            "# weight: qint8 per_channel_symmetric(axis=0) [-127, 127] half_even_div\n"
            "output: output(fc)\n");
}

TEST(PrepareQat, TensorRTQuantizesOnlyTheIdentityOfEveryResidualAdd) {
  struct Case {
    std::string name;
    std::string last_conv;  // of a block: the conv branch ends there
    int adds;
  };
  const std::vector<Case> cases = {
      {"resnet18", ".conv2", 8}, {"resnet50", ".conv3", 16}, {"mobilenet_v2", ".conv.2", 10}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Graph g = prepared_zoo_model(c.name);
    int adds = 0;
    for (const GraphNode& node : g.nodes) {
      if (node.op != "add") continue;
      ++adds;
      ASSERT_EQ(node.inputs.size(), 2u);
      EXPECT_NE(reads_quantized(g, node, 0), reads_quantized(g, node, 1)) << node.name;
      const GraphNode& conv_branch = producer(g, node.inputs[reads_quantized(g, node, 0) ? 1 : 0]);
      const std::string block = node.name.substr(0, node.name.rfind('.'));  // "layer1.0"
      EXPECT_EQ(conv_branch.name, block + c.last_conv);
      EXPECT_NE(dynamic_cast<const quant::ConvBn2d*>(conv_branch.module.get()), nullptr);
    }
    EXPECT_EQ(adds, c.adds);
  }
}

// y = conv_a(x) + conv_b(x): neither input is an identity.
class TwoBranches : public nn::Module {
 public:
  TwoBranches() {
    conv_a = register_module("conv_a", std::make_shared<nn::Conv2d>(2, 2, 1));
    conv_b = register_module("conv_b", std::make_shared<nn::Conv2d>(2, 2, 1));
  }
  std::string type_name() const override { return "TwoBranches"; }
  std::shared_ptr<nn::Conv2d> conv_a, conv_b;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    return ops::add(conv_a->forward(x), conv_b->forward(x));
  }
};

TEST(PrepareQat, TensorRTAddWithEqualBranchesQuantizesInput1) {
  auto model = std::make_shared<TwoBranches>();
  const Graph g = prepare_qat(fuse(trace(*model, {1, 2, 4, 4})), kTensorRT);
  EXPECT_EQ(g.value_name(g.node("add").inputs[0]), "conv_a");
  EXPECT_EQ(g.value_name(g.node("add").inputs[1]), "conv_b.activation_post_process");
}

TEST(PrepareQat, TensorRTResNetBlockWithDownsample) {
  const Graph g = prepared_zoo_model("resnet18");
  const GraphNode& add = g.node("layer2.0.add");
  EXPECT_EQ(g.value_name(add.inputs[0]), "layer2.0.conv2");
  EXPECT_EQ(g.value_name(add.inputs[1]), "layer2.0.downsample.0.activation_post_process");
  // The block input feeds conv1 and downsample.0 through one quantizer.
  EXPECT_EQ(g.value_name(g.node("layer2.0.conv1").inputs[0]),
            "layer1.1.relu_1.activation_post_process");
  EXPECT_EQ(g.value_name(g.node("layer2.0.downsample.0").inputs[0]),
            "layer1.1.relu_1.activation_post_process");
}

TEST(PrepareQat, TensorRTQuantizesTheInputOfEveryConvAndLinear) {
  struct Case {
    std::string name;
    int weighted;  // conv and linear nodes
  };
  const std::vector<Case> cases = {
      {"resnet18", 21},           {"resnet50", 54},  {"mobilenet_v2", 53},
      {"shufflenet_v2_x1_0", 57}, {"googlenet", 58},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Graph g = prepared_zoo_model(c.name);
    int weighted = 0;
    for (const GraphNode& node : g.nodes) {
      EXPECT_FALSE(is_float_weighted(node)) << node.name;
      if (!is_qat_module(node)) continue;
      ++weighted;
      EXPECT_TRUE(reads_quantized(g, node, 0)) << node.name;
      EXPECT_EQ(dynamic_cast<const quant::QatModule&>(*node.module).activation_post_process(),
                nullptr)
          << node.name << ": TensorRT leaves conv outputs float";
    }
    EXPECT_EQ(weighted, c.weighted);
  }
}

TEST(PrepareQat, TensorRTPoolsAndReLUs) {
  auto resnet18 = small_zoo_model("resnet18", /*small_input=*/false);  // with the max pool
  resnet18->eval();
  const Graph resnet = prepare_qat(fuse(trace(*resnet18, {1, 3, 64, 64})), kTensorRT);
  EXPECT_FALSE(reads_quantized(resnet, resnet.node("maxpool"), 0));  // commutes
  EXPECT_EQ(resnet.value_name(resnet.node("layer1.0.conv1").inputs[0]),
            "maxpool.activation_post_process");
  EXPECT_TRUE(reads_quantized(resnet, resnet.node("avgpool"), 0));
  for (const GraphNode& node : resnet.nodes) {
    if (node.op == "ReLU") {
      EXPECT_FALSE(reads_quantized(resnet, node, 0)) << node.name;  // commutes
    }
  }
  const Graph mobilenet = prepared_zoo_model("mobilenet_v2");
  EXPECT_TRUE(reads_quantized(mobilenet, mobilenet.node("adaptive_avg_pool2d"), 0));
  const Graph shufflenet = prepared_zoo_model("shufflenet_v2_x0_5");
  EXPECT_TRUE(reads_quantized(shufflenet, shufflenet.node("mean"), 0));
  EXPECT_EQ(shufflenet.value_name(shufflenet.node("stage2.1.branch2.0").inputs[0]),
            "stage2.1.chunk.activation_post_process_1");
}

TEST(PrepareQat, TensorRTConcatInputsShareOneScale) {
  for (const std::string name : {"googlenet", "shufflenet_v2_x1_0"}) {
    SCOPED_TRACE(name);
    const Graph g = prepared_zoo_model(name);
    int cats = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (g.nodes[i].op != "cat") continue;
      ++cats;
      // Its only reader is its quantizer; everything downstream reads that.
      const std::vector<int> users = g.users({static_cast<int>(i), 0});
      ASSERT_EQ(users.size(), 1u) << g.nodes[i].name;
      EXPECT_EQ(g.nodes[users[0]].name, g.nodes[i].name + ".activation_post_process");
      EXPECT_TRUE(is_quantizer(g.nodes[users[0]]));
      for (const Value& v : g.nodes[i].inputs)
        EXPECT_FALSE(is_quantizer(producer(g, v))) << g.nodes[i].name;
    }
    EXPECT_EQ(cats, name == "googlenet" ? 9 : 16);
  }
}

TEST(PrepareQat, BlackListedNodesStayFloat) {
  const Graph g = prepared_zoo_model("resnet18", {"layer4.*", "fc"});
  int black_listed = 0;
  for (const GraphNode& node : g.nodes) {
    const bool listed = node.name.rfind("layer4.", 0) == 0 || node.name == "fc";
    if (!listed || is_quantizer(node)) continue;
    ++black_listed;
    EXPECT_FALSE(is_qat_module(node)) << node.name;
    for (size_t k = 0; k < node.inputs.size(); ++k)
      EXPECT_FALSE(reads_quantized(g, node, k)) << node.name << " input " << k;
    EXPECT_EQ(node.annotations.back(), "float: black_list") << node.name;
  }
  EXPECT_EQ(black_listed, 10);  // layer4: 5 (fused) convs, 2 adds, 2 relus; fc
  EXPECT_TRUE(is_qat_module(g.node("layer3.1.conv2")));
  EXPECT_TRUE(reads_quantized(g, g.node("avgpool"), 0));  // not listed
  // The float layer4 output reaches the quantized avgpool through its quantizer.
  EXPECT_EQ(g.value_name(g.node("avgpool").inputs[0]), "layer4.1.relu_1.activation_post_process");
}

TEST(PrepareQat, EverythingBlackListedComputesTheFloatModel) {
  auto model = small_zoo_model("resnet18");
  model->eval();
  const Graph fused = fuse(trace(*model, kSmallImage));
  const Graph g = prepare_qat(fused, kTensorRT, {"*"});
  for (const GraphNode& node : g.nodes) EXPECT_FALSE(is_quantizer(node) || is_qat_module(node));
  Tensor x = Tensor::empty(kSmallImage);
  Generator gen(1);
  normal_(x, 0.0, 1.0, gen);
  EXPECT_EQ(run(g, x).to_vector<float>(), model->forward(x).to_vector<float>());
}

TEST(PrepareQat, TnnSmallModelGraph) {
  auto model = std::make_shared<test_models::TinyNet>();
  model->eval();
  EXPECT_EQ(prepare_qat(fuse(trace(*model, {2, 1, 8, 8})), kTNN).to_string(),
            "input: input -> [2, 1, 8, 8]\n"
            "input.activation_post_process: FakeQuantize(input) -> [2, 1, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "stem: Conv2d(input.activation_post_process) -> [2, 4, 8, 8]  "
            "# weight: qint8 per_channel_symmetric(axis=0) [-127, 127] half_away; "
            "output: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "block.conv: ConvBnReLU2d(stem) -> [2, 4, 8, 8]  # fused block.bn, block.relu; "
            "weight: qint8 per_channel_symmetric(axis=0) [-127, 127] half_away; "
            "output: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "block.add: add(block.conv, stem) -> [2, 4, 8, 8]\n"
            "block.add.activation_post_process: FakeQuantize(block.add) -> [2, 4, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away; requantizes the add\n"
            "block.relu_1: ReLU(block.add.activation_post_process) -> [2, 4, 8, 8]  "
            "# int8, keeps input scale\n"
            "chunk: chunk(block.relu_1) -> [2, 2, 8, 8], [2, 2, 8, 8]  {chunks=2, dim=1}  "
            "# float (tnn has no int8 chunk)\n"
            "chunk.activation_post_process_0: FakeQuantize(chunk:0) -> [2, 2, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "chunk.activation_post_process_1: FakeQuantize(chunk:1) -> [2, 2, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "cat: cat(chunk.activation_post_process_1, chunk.activation_post_process_0) -> "
            "[2, 4, 8, 8]  {dim=1}\n"
            "cat.activation_post_process: FakeQuantize(cat) -> [2, 4, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away; requantizes the cat\n"
            "mul: mul(cat.activation_post_process) -> [2, 4, 8, 8]  {other=0.5}  "
            "# float (tnn has no int8 mul)\n"
            "mul.activation_post_process: FakeQuantize(mul) -> [2, 4, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "cat_1: cat(cat.activation_post_process, mul.activation_post_process) -> "
            "[2, 8, 8, 8]  {dim=1}\n"
            "cat_1.activation_post_process: FakeQuantize(cat_1) -> [2, 8, 8, 8]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away; requantizes the cat\n"
            "max_pool2d: max_pool2d(cat_1.activation_post_process) -> [2, 8, 4, 4]  "
            "{kernel=[2, 2], stride=[2, 2], padding=[0, 0], dilation=[1, 1], ceil_mode=false}  "
            "# int8, keeps input scale\n"
            "flatten: flatten(max_pool2d) -> [2, 128]  {start_dim=1, end_dim=-1}  "
            "# float (tnn has no int8 flatten)\n"
            "flatten.activation_post_process: FakeQuantize(flatten) -> [2, 128]  "
            "# act: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "fc: Linear(flatten.activation_post_process) -> [2, 3]  "
            "# weight: qint8 per_channel_symmetric(axis=0) [-127, 127] half_away; "
            "output: qint8 per_tensor_symmetric [-128, 127] half_away\n"
            "output: output(fc)\n");
}

// Whether `v` is int8 under tnn: a quantizer's output, a QAT module's requantized output, or
// the output of a scale-keeping op (relu, pools) on an int8 value.
bool is_tnn_int8(const Graph& g, Value v) {
  const GraphNode& node = producer(g, v);
  if (is_quantizer(node)) return true;
  if (is_qat_module(node)) {
    return dynamic_cast<const quant::QatModule&>(*node.module).activation_post_process() != nullptr;
  }
  const bool keeps_scale = node.op == "ReLU" || node.op == "MaxPool2d" ||
                           node.op == "AdaptiveAvgPool2d" || node.op == "max_pool2d" ||
                           node.op == "adaptive_avg_pool2d";
  return keeps_scale && is_tnn_int8(g, node.inputs[0]);
}

// The only reader of output 0 of node `name` is its quantizer.
void expect_requantized(const Graph& g, const std::string& name) {
  const std::vector<int> users = g.users({g.find(name), 0});
  ASSERT_EQ(users.size(), 1u) << name;
  EXPECT_EQ(g.nodes[users[0]].name, name + ".activation_post_process");
  EXPECT_TRUE(is_quantizer(g.nodes[users[0]])) << name;
}

// Every add / cat of `g` reads int8 values and requantizes its output; returns their number.
int check_tnn_adds_and_cats(const Graph& g, const std::string& op) {
  int count = 0;
  for (const GraphNode& node : g.nodes) {
    if (node.op != op) continue;
    ++count;
    expect_requantized(g, node.name);
    for (const Value& v : node.inputs) EXPECT_TRUE(is_tnn_int8(g, v)) << node.name;
  }
  return count;
}

TEST(PrepareQat, TnnResNet18) {
  const Graph g = prepared_zoo_model("resnet18", {}, kTNN);
  int weighted = 0;
  for (const GraphNode& node : g.nodes) {
    EXPECT_FALSE(is_float_weighted(node)) << node.name;
    if (is_quantizer(node)) {
      // Quantizer nodes follow only the graph input, the adds and the float flatten before
      // the fc: none follows a relu or a conv.
      const GraphNode& quantized = producer(g, node.inputs[0]);
      EXPECT_TRUE(quantized.name == "input" || quantized.op == "add" || quantized.name == "flatten")
          << node.name;
    }
    if (node.op == "ReLU") {
      EXPECT_TRUE(is_tnn_int8(g, node.inputs[0])) << node.name;
      EXPECT_EQ(node.annotations.back(), "int8, keeps input scale") << node.name;
    }
    if (!is_qat_module(node)) continue;
    ++weighted;
    EXPECT_NE(dynamic_cast<const quant::QatModule&>(*node.module).activation_post_process(),
              nullptr)
        << node.name << ": TNN requantizes conv outputs";
    EXPECT_TRUE(is_tnn_int8(g, node.inputs[0])) << node.name;
  }
  EXPECT_EQ(weighted, 21);
  EXPECT_EQ(check_tnn_adds_and_cats(g, "add"), 8);
  // The conv reads the quantized model input; the fc reads the float flatten quantized.
  EXPECT_EQ(g.value_name(g.node("conv1").inputs[0]), "input.activation_post_process");
  EXPECT_EQ(g.node("avgpool").annotations.back(), "int8, keeps input scale, truncates the average");
  EXPECT_EQ(g.node("flatten").annotations.back(), "float (tnn has no int8 flatten)");
  EXPECT_EQ(g.value_name(g.node("fc").inputs[0]), "flatten.activation_post_process");
}

TEST(PrepareQat, TnnMaxPoolKeepsTheConvScale) {
  auto resnet18 = small_zoo_model("resnet18", /*small_input=*/false);  // with the max pool
  resnet18->eval();
  const Graph g = prepare_qat(fuse(trace(*resnet18, {1, 3, 64, 64})), kTNN);
  EXPECT_EQ(g.value_name(g.node("maxpool").inputs[0]), "conv1");
  EXPECT_TRUE(is_tnn_int8(g, g.node("maxpool").inputs[0]));
  EXPECT_EQ(g.find("maxpool.activation_post_process"), -1);
  EXPECT_EQ(g.node("maxpool").annotations.back(), "int8, keeps input scale");
  EXPECT_EQ(g.value_name(g.node("layer1.0.conv1").inputs[0]), "maxpool");
}

TEST(PrepareQat, TnnShuffleNetRunsShuffleAndChunkInFloat) {
  const Graph g = prepared_zoo_model("shufflenet_v2_x0_5", {}, kTNN);
  int float_islands = 0, convs_after_them = 0;
  for (const GraphNode& node : g.nodes) {
    if (node.op == "channel_shuffle" || node.op == "chunk") {
      ++float_islands;
      EXPECT_EQ(node.annotations.back(), "float (tnn has no int8 " + node.op + ")");
    }
    if (!is_qat_module(node)) continue;
    const GraphNode& in = producer(g, node.inputs[0]);
    const std::string& op = is_quantizer(in) ? producer(g, in.inputs[0]).op : in.op;
    if (op != "channel_shuffle" && op != "chunk") continue;
    ++convs_after_them;
    EXPECT_TRUE(is_quantizer(in)) << node.name;
  }
  EXPECT_EQ(float_islands, 16 + 13);  // a shuffle per block, a chunk per stride-1 block
  // branch2.0 of the stride-1 blocks, both branches of stage3.0 and stage4.0, conv5
  EXPECT_EQ(convs_after_them, 13 + 2 * 2 + 1);
  EXPECT_EQ(g.value_name(g.node("stage2.1.branch2.0").inputs[0]),
            "stage2.1.chunk.activation_post_process_1");
  EXPECT_EQ(g.value_name(g.node("stage2.1.cat").inputs[0]),
            "stage2.1.chunk.activation_post_process_0");
  EXPECT_EQ(check_tnn_adds_and_cats(g, "cat"), 16);
  EXPECT_EQ(g.node("mean").annotations.back(), "float (tnn has no int8 mean)");
  EXPECT_EQ(g.value_name(g.node("fc").inputs[0]), "mean.activation_post_process");
}

TEST(PrepareQat, TnnMobileNetV2FusesReLU6AndRequantizesAdds) {
  const Graph g = prepared_zoo_model("mobilenet_v2", {}, kTNN);
  int relu6_convs = 0;
  for (const GraphNode& node : g.nodes) {
    EXPECT_NE(node.op, "ReLU6") << node.name;  // all fused
    const auto* conv = dynamic_cast<const quant::QatModule*>(node.module.get());
    if (conv == nullptr) continue;
    EXPECT_NE(conv->activation_post_process(), nullptr) << node.name;
    if (conv->options().activation() == quant::FusedActivation::kReLU6) ++relu6_convs;
  }
  EXPECT_EQ(relu6_convs, 35);  // the stem, 2 per inverted residual (1 in the first), the last
  EXPECT_EQ(check_tnn_adds_and_cats(g, "add"), 10);
}

TEST(PrepareQat, TnnGoogLeNetRequantizesEveryCat) {
  const Graph g = prepared_zoo_model("googlenet", {}, kTNN);
  EXPECT_EQ(check_tnn_adds_and_cats(g, "cat"), 9);
  // Branch 4 of an inception block: the max pool keeps the previous cat's scale.
  EXPECT_EQ(g.value_name(g.node("inception3b.branch4.0").inputs[0]),
            "inception3a.cat.activation_post_process");
  EXPECT_EQ(g.value_name(g.node("inception3b.branch4.1.conv").inputs[0]), "inception3b.branch4.0");
}

// conv(relu6(x) + 1): a standalone relu6 and an add of a constant, both float in TNN.
class FloatOps : public nn::Module {
 public:
  FloatOps() { conv = register_module("conv", std::make_shared<nn::Conv2d>(2, 2, 1)); }
  std::string type_name() const override { return "FloatOps"; }
  std::shared_ptr<nn::Conv2d> conv;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    return conv->forward(ops::add(ops::relu6(x), 1.0));
  }
};

TEST(PrepareQat, TnnRunsStandaloneReLU6AndConstantAddInFloat) {
  auto model = std::make_shared<FloatOps>();
  const Graph g = prepare_qat(fuse(trace(*model, {1, 2, 4, 4})), kTNN);
  // The model input feeds only a float op, so it stays float.
  EXPECT_EQ(g.find("input.activation_post_process"), -1);
  EXPECT_EQ(g.node("relu6").annotations.back(), "float (tnn has no int8 relu6)");
  EXPECT_EQ(g.node("add").annotations.back(), "float (tnn has no int8 add with a constant)");
  EXPECT_EQ(g.value_name(g.node("conv").inputs[0]), "add.activation_post_process");
}

TEST(PrepareQat, TnnBlackListedNodesStayFloat) {
  const Graph middle = prepared_zoo_model("resnet18", {"layer2.0.conv1"}, kTNN);
  const GraphNode& conv1 = middle.node("layer2.0.conv1");
  EXPECT_FALSE(is_qat_module(conv1));
  EXPECT_EQ(conv1.annotations.back(), "float: black_list");
  EXPECT_EQ(middle.value_name(conv1.inputs[0]), "layer1.1.relu_1");  // int8, read dequantized
  // The int8 conv after it quantizes the float value at the border.
  EXPECT_EQ(middle.value_name(middle.node("layer2.0.conv2").inputs[0]),
            "layer2.0.conv1.activation_post_process");

  const Graph tail = prepared_zoo_model("resnet18", {"layer4.*", "fc"}, kTNN);
  bool in_tail = false;
  for (const GraphNode& node : tail.nodes) {
    in_tail = in_tail || node.name.rfind("layer4.", 0) == 0;
    if (!in_tail) continue;
    EXPECT_FALSE(is_quantizer(node) || is_qat_module(node)) << node.name;
  }
  EXPECT_EQ(tail.node("avgpool").annotations.back(), "float: its input is float");
}

TEST(PrepareQat, Errors) {
  auto model = std::make_shared<test_models::TinyNet>();
  const Graph fused = fuse(trace(*model, {2, 1, 8, 8}));
  EXPECT_EQ(error_of([&] {
              prepare_qat(fused, kTensorRT, {"block.bn"});
            }).find("prepare_qat: black_list entry 'block.bn' matches no node (HINT: "),
            0u);
}

TEST(PrepareQat, IsPureAndKeepsTheOriginalModules) {
  auto model = small_zoo_model("resnet18");
  model->eval();
  const Graph fused = fuse(trace(*model, kSmallImage));
  const std::string before = fused.to_string();
  const Graph g = prepare_qat(fused, kTensorRT);
  EXPECT_EQ(fused.to_string(), before);
  const auto& fused_conv = dynamic_cast<const FusedConv2d&>(*fused.node("conv1").module);
  const auto& qat_conv = dynamic_cast<const quant::ConvBn2d&>(*g.node("conv1").module);
  EXPECT_EQ(qat_conv.conv(), fused_conv.conv());
  EXPECT_EQ(qat_conv.bn(), fused_conv.bn());
  // The model's keys come first, unchanged; the quant state of the graph's modules follows,
  // under node names.
  const GraphModule graph_module(model, g);
  const nn::StateDict want = model->state_dict(), got = graph_module.state_dict();
  ASSERT_GT(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i].first, want[i].first);
  EXPECT_EQ(got[want.size()].first, "input.activation_post_process.fake_quant_enabled");
}

// The losses of 5 SGD steps of a prepared resnet18 (small input) on a fixed batch, recorded as
// the test's "losses" property.
std::vector<double> prepared_resnet18_losses(const quant::QConfig& qconfig, double lr) {
  auto model = small_zoo_model("resnet18");
  model->train();
  auto qat = std::make_shared<GraphModule>(
      model, prepare_qat(fuse(trace(*model, {8, 3, 32, 32})), qconfig));
  Tensor x = Tensor::empty({8, 3, 32, 32});
  Generator gen(7);
  normal_(x, 0.0, 1.0, gen);
  const Tensor targets = Tensor::from_vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7}, {8});
  nn::SGD sgd(qat->parameters(), nn::SGDOptions(lr).momentum(0.9));
  std::vector<double> losses;
  for (int step = 0; step < 5; ++step) {
    sgd.zero_grad();
    const Tensor loss = ops::cross_entropy(qat->forward(x), targets);
    loss.backward();
    sgd.step();
    losses.push_back(loss.item());
  }
  std::string trace;
  for (const double loss : losses) trace += std::to_string(loss) + " ";
  ::testing::Test::RecordProperty("losses", trace);
  return losses;
}

TEST(PrepareQat, PreparedResNet18Trains) {
  const std::vector<double> losses = prepared_resnet18_losses(kTensorRT, /*lr=*/0.05);
  for (size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses[i - 1]) << "step " << i;
}

// A smaller step than tensorrt's: tnn also requantizes the logits (the fc output), whose
// moving-average range grows slowly, so large steps run into its clamp.
TEST(PrepareQat, TnnPreparedResNet18Trains) {
  const std::vector<double> losses = prepared_resnet18_losses(kTNN, /*lr=*/0.01);
  for (size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses[i - 1]) << "step " << i;
}

// The PyTorch presets (placement tested in prepare_qat_pytorch_test.cc) train too.
TEST(PrepareQat, FbgemmPreparedResNet18Trains) {
  const std::vector<double> losses =
      prepared_resnet18_losses(quant::QConfig::preset("fbgemm"), /*lr=*/0.01);
  for (size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses[i - 1]) << "step " << i;
}

}  // namespace
}  // namespace qat::graph
