#include "graph/trace.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/batch_norm.h"
#include "core/ops/elementwise.h"
#include "core/random.h"
#include "graph/test_models.h"
#include "nn/activation.h"
#include "nn/module.h"
#include "nn/sequential.h"
#include "zoo/registry.h"
#include "tests/testing/golden_text.h"

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

std::shared_ptr<nn::Module> zoo_model(const std::string& name, bool small_input) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = small_input;
  return zoo::create_model(config);
}

// Node count per op ("Conv2d", "add", ...).
std::map<std::string, int> op_counts(const Graph& g) {
  std::map<std::string, int> counts;
  for (const GraphNode& node : g.nodes) ++counts[node.op];
  return counts;
}

// graph/testdata/<file> against `text` (tests/testing/golden_text.h).
void expect_golden(const std::string& text, const std::string& file) {
  testing::expect_golden_text(text, "graph/testdata/" + file, "//graph:trace_test");
}

TEST(Trace, SmallUserModel) {
  auto model = std::make_shared<test_models::TinyNet>();
  const Graph g = trace(*model, {2, 1, 8, 8});
  EXPECT_EQ(g.to_string(),
            "input: input -> [2, 1, 8, 8]\n"
            "stem: Conv2d(input) -> [2, 4, 8, 8]\n"
            "block.conv: Conv2d(stem) -> [2, 4, 8, 8]\n"
            "block.bn: BatchNorm2d(block.conv) -> [2, 4, 8, 8]\n"
            "block.relu: ReLU(block.bn) -> [2, 4, 8, 8]\n"
            "block.add: add(block.relu, stem) -> [2, 4, 8, 8]\n"
            "block.relu_1: ReLU(block.add) -> [2, 4, 8, 8]\n"
            "chunk: chunk(block.relu_1) -> [2, 2, 8, 8], [2, 2, 8, 8]  {chunks=2, dim=1}\n"
            "cat: cat(chunk:1, chunk:0) -> [2, 4, 8, 8]  {dim=1}\n"
            "mul: mul(cat) -> [2, 4, 8, 8]  {other=0.5}\n"
            "cat_1: cat(cat, mul) -> [2, 8, 8, 8]  {dim=1}\n"
            "max_pool2d: max_pool2d(cat_1) -> [2, 8, 4, 4]  {kernel=[2, 2], stride=[2, 2], "
            "padding=[0, 0], dilation=[1, 1], ceil_mode=false}\n"
            "flatten: flatten(max_pool2d) -> [2, 128]  {start_dim=1, end_dim=-1}\n"
            "fc: Linear(flatten) -> [2, 3]\n"
            "output: output(fc)\n");
  // Module nodes hold the model's own modules.
  EXPECT_EQ(g.node("block.relu_1").module, model->block->relu);
  EXPECT_EQ(g.node("fc").module, model->fc);
  EXPECT_EQ(g.node("chunk").kind, NodeKind::kFunction);
}

TEST(Trace, RepeatedModuleCallsGetOneNodeEach) {
  const Graph g = trace(*zoo_model("resnet18", true), {1, 3, 32, 32});
  const GraphNode& first = g.node("layer1.0.relu");
  const GraphNode& second = g.node("layer1.0.relu_1");
  EXPECT_EQ(g.value_name(first.inputs[0]), "layer1.0.bn1");
  EXPECT_EQ(g.value_name(second.inputs[0]), "layer1.0.add");
  EXPECT_EQ(first.module, second.module);  // one nn::ReLU, two call sites
  EXPECT_EQ(g.value_name(g.node("layer2.0.add").inputs[1]), "layer2.0.downsample.1");
  EXPECT_EQ(g.find("layer1.0.relu_2"), -1);
}

TEST(Trace, FunctionalOpsAreNamedByTheirEnclosingModule) {
  const Graph shufflenet = trace(*zoo_model("shufflenet_v2_x0_5", true), {1, 3, 32, 32});
  EXPECT_EQ(shufflenet.node("stage2.0.channel_shuffle").attrs.to_string(), "groups=2");
  EXPECT_EQ(shufflenet.node("stage2.1.chunk").num_outputs(), 2);
  EXPECT_EQ(shufflenet.value_name(shufflenet.node("stage2.1.cat").inputs[0]), "stage2.1.chunk:0");
  EXPECT_EQ(shufflenet.node("mean").attrs.to_string(), "dims=[2, 3], keepdim=false");

  const Graph googlenet = trace(*zoo_model("googlenet", true), {1, 3, 32, 32});
  EXPECT_EQ(googlenet.node("inception3a.cat").inputs.size(), 4u);
  EXPECT_EQ(googlenet.node("inception3a.branch2.1.relu").op, "relu");  // functional F.relu
  EXPECT_EQ(googlenet.node("conv1.relu").kind, NodeKind::kFunction);
}

struct ZooCase {
  std::string name;
  bool small_input;
  int nodes;
  std::map<std::string, int> ops;  // a few op counts to check
};

// Node counts worked out from the architectures: e.g. resnet18 = input, conv1, bn1, relu,
// maxpool, 8 blocks x (conv1, bn1, relu, conv2, bn2, add, relu_1), 3 downsamples x (conv, bn),
// avgpool, flatten, fc, output = 71.
TEST(Trace, EveryZooModelTraces) {
  const std::vector<ZooCase> cases = {
      {"resnet18", false, 71, {{"Conv2d", 20}, {"add", 8}, {"ReLU", 17}, {"MaxPool2d", 1}}},
      {"resnet18", true, 70, {{"Conv2d", 20}, {"add", 8}, {"MaxPool2d", 0}}},
      {"resnet34", true, 126, {{"Conv2d", 36}, {"add", 16}, {"ReLU", 33}}},
      {"resnet50", true, 176, {{"Conv2d", 53}, {"add", 16}, {"ReLU", 49}}},
      {"mobilenet_v2",
       true,
       155,
       {{"Conv2d", 52}, {"ReLU6", 35}, {"add", 10}, {"adaptive_avg_pool2d", 1}, {"Dropout", 1}}},
      {"shufflenet_v2_x0_5",
       true,
       198,
       {{"chunk", 13}, {"cat", 16}, {"channel_shuffle", 16}, {"mean", 1}, {"MaxPool2d", 0}}},
      {"shufflenet_v2_x1_0", false, 199, {{"Conv2d", 56}, {"MaxPool2d", 1}}},
      {"shufflenet_v2_x1_5", true, 198, {{"Conv2d", 56}}},
      {"shufflenet_v2_x2_0", true, 198, {{"Conv2d", 56}}},
      {"googlenet", true, 197, {{"Conv2d", 57}, {"relu", 57}, {"cat", 9}, {"MaxPool2d", 11}}},
  };
  for (const ZooCase& c : cases) {
    SCOPED_TRACE(c.name + (c.small_input ? " small_input" : ""));
    auto model = zoo_model(c.name, c.small_input);
    model->eval();
    const Graph g = trace(*model, c.small_input ? Shape{1, 3, 32, 32} : Shape{1, 3, 64, 64});
    EXPECT_EQ(static_cast<int>(g.nodes.size()), c.nodes);
    const std::map<std::string, int> counts = op_counts(g);
    for (const auto& [op, count] : c.ops) {
      EXPECT_EQ(counts.count(op) ? counts.at(op) : 0, count) << op;
    }
    EXPECT_EQ(g.nodes.back().op, "output");
    EXPECT_EQ(g.nodes[g.nodes.back().inputs[0].node].op, "Linear");
    EXPECT_NO_THROW(g.validate());
  }
}

TEST(Trace, GoogLeNetAuxHeadsAreTracedInTrainingMode) {
  zoo::ModelConfig config;
  config.name = "googlenet";
  config.small_input = true;
  config.aux_logits = true;
  auto model = zoo::create_model(config);
  model->eval();
  EXPECT_EQ(trace(*model, {2, 3, 32, 32}).find("aux1.fc2"), -1);  // eval: no aux heads run

  model->train();
  const Graph g = trace(*model, {2, 3, 32, 32});
  EXPECT_EQ(g.nodes.size(), 197u + 2 * 9);  // per head: pool, conv, bn, relu, flatten, fc1,
                                            // relu, dropout, fc2
  // The heads' logits reach no output; their nodes stay (they run, as in the model).
  EXPECT_EQ(g.use_count({g.find("aux1.fc2"), 0}), 0);
  EXPECT_EQ(g.node("aux2.adaptive_avg_pool2d").attrs.to_string(), "output_size=[4, 4]");
  EXPECT_EQ(g.value_name(g.node("output").inputs[0]), "fc");
}

TEST(Trace, GoldenResNet18) {
  auto model = zoo_model("resnet18", false);
  model->eval();
  expect_golden(trace(*model, {1, 3, 64, 64}).to_string(), "resnet18.txt");
}

TEST(Trace, GoldenMobileNetV2) {
  auto model = zoo_model("mobilenet_v2", false);
  model->eval();
  expect_golden(trace(*model, {1, 3, 64, 64}).to_string(), "mobilenet_v2.txt");
}

TEST(Trace, LeavesTheModelUnchanged) {
  auto model = zoo_model("mobilenet_v2", true);  // BatchNorm and Dropout, in training mode
  const nn::StateDict before = model->state_dict();
  std::vector<Tensor> saved;
  for (const auto& entry : before) saved.push_back(entry.second.clone());
  manual_seed(7);
  trace(*model, {2, 3, 32, 32});
  const double after_trace = default_generator().uniform(0, 1);
  manual_seed(7);
  EXPECT_EQ(after_trace, default_generator().uniform(0, 1));
  EXPECT_TRUE(model->is_training());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].second.to_vector<double>(), saved[i].to_vector<double>())
        << before[i].first;
  }
}

// A model that uses its own parameter in a functional op.
class ScaledRelu : public nn::Module {
 public:
  ScaledRelu() {
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    gain = register_parameter("gain", Tensor::ones({1}));
  }
  std::string type_name() const override { return "ScaledRelu"; }
  std::shared_ptr<nn::ReLU> relu;
  Tensor gain;

 protected:
  Tensor forward_impl(const Tensor& x) override { return ops::mul(relu->forward(x), gain); }
};

// Wraps `inner` and calls it through a second module that holds it unregistered.
class Wrapper : public nn::Module {
 public:
  explicit Wrapper(std::shared_ptr<nn::Module> inner) : inner(std::move(inner)) {
    relu = register_module("relu", std::make_shared<nn::ReLU>());
  }
  std::string type_name() const override { return "Wrapper"; }
  std::shared_ptr<nn::Module> inner;  // not registered
  std::shared_ptr<nn::ReLU> relu;

 protected:
  Tensor forward_impl(const Tensor& x) override { return inner->forward(relu->forward(x)); }
};

// Runs an arbitrary function of the registered relu's output as its forward.
class Lambda : public nn::Module {
 public:
  explicit Lambda(std::function<Tensor(const Tensor&)> fn) : fn(std::move(fn)) {
    relu = register_module("relu", std::make_shared<nn::ReLU>());
  }
  std::string type_name() const override { return "Lambda"; }
  std::function<Tensor(const Tensor&)> fn;
  std::shared_ptr<nn::ReLU> relu;

 protected:
  Tensor forward_impl(const Tensor& x) override { return fn(relu->forward(x)); }
};

TEST(TraceErrors, ParameterUsedByAFunctionalOpNamesTheNode) {
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::ReLU>(),
                                                std::make_shared<ScaledRelu>());
  const std::string message = error_of([&] { trace(*model, {1, 4}); });
  EXPECT_NE(message.find("input 1 of node '1.mul' (mul) is a tensor [1] that neither the traced "
                         "input nor a recorded call produced"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("HINT"), std::string::npos);
}

TEST(TraceErrors, TensorMethodsProduceUntracedTensors) {
  auto model = std::make_shared<Lambda>([](const Tensor& x) { return ops::relu(x.view({-1})); });
  const std::string message = error_of([&] { trace(*model, {2, 3}); });
  EXPECT_NE(message.find("input 0 of node 'relu_1' (relu)"), std::string::npos) << message;
  EXPECT_NE(message.find("ops::reshape"), std::string::npos) << message;
}

TEST(TraceErrors, UnsupportedOpNamesTheNode) {
  auto model = std::make_shared<Lambda>([](const Tensor& x) {
    return ops::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), /*training=*/true);
  });
  const std::string message = error_of([&] { trace(*model, {4, 3}); });
  EXPECT_NE(message.find("node 'batch_norm' calls op 'batch_norm', which the graph executor "
                         "cannot run"),
            std::string::npos)
      << message;
}

TEST(TraceErrors, OutputFromNowhere) {
  auto model = std::make_shared<Lambda>([](const Tensor& x) { return Tensor::zeros(x.shape()); });
  EXPECT_NE(error_of([&] {
              trace(*model, {2, 3});
            }).find("the model returned a tensor [2, 3] that no recorded call produced"),
            std::string::npos);
}

TEST(TraceErrors, UnregisteredModule) {
  auto model = std::make_shared<Wrapper>(std::make_shared<ScaledRelu>());
  EXPECT_NE(error_of([&] {
              trace(*model, {2, 3});
            }).find("a ScaledRelu module was called that is not registered in the traced model"),
            std::string::npos);
}

}  // namespace
}  // namespace qat::graph
