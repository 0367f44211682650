#include "graph/fuse.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"
#include "core/random.h"
#include "graph/executor.h"
#include "graph/fused_modules.h"
#include "graph/trace.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "zoo/registry.h"

namespace qat::graph {
namespace {

// Builds a graph node by node; each call appends one node and returns its output.
class Builder {
 public:
  explicit Builder(const Shape& input_shape) {
    GraphNode node;
    node.name = "input";
    node.kind = NodeKind::kInput;
    node.op = "input";
    node.output_shapes = {input_shape};
    graph_.add_node(node);
  }

  Value module(const std::string& name, std::shared_ptr<nn::Module> module, Value input,
               const Shape& shape) {
    GraphNode node;
    node.name = name;
    node.kind = NodeKind::kModule;
    node.op = module->type_name();
    node.module = std::move(module);
    node.inputs = {input};
    node.output_shapes = {shape};
    return {graph_.add_node(node), 0};
  }

  Value function(const std::string& op, std::vector<Value> inputs, const Shape& shape,
                 OpAttrs attrs = {}) {
    GraphNode node;
    node.name = op + (graph_.find(op) >= 0 ? "_1" : "");
    node.kind = NodeKind::kFunction;
    node.op = op;
    node.inputs = std::move(inputs);
    node.attrs = std::move(attrs);
    node.output_shapes = {shape};
    return {graph_.add_node(node), 0};
  }

  Graph finish(Value output) {
    GraphNode node;
    node.name = "output";
    node.kind = NodeKind::kOutput;
    node.op = "output";
    node.inputs = {output};
    graph_.add_node(node);
    return graph_;
  }

 private:
  Graph graph_;
};

const Shape kImage = {1, 4, 8, 8};

std::shared_ptr<nn::Conv2d> conv4() { return std::make_shared<nn::Conv2d>(4, 4, 3); }
std::shared_ptr<nn::BatchNorm2d> bn4() { return std::make_shared<nn::BatchNorm2d>(4); }

// input -> conv -> bn -> <activation node made by `activation`> -> output
Graph conv_bn_then(const std::function<Value(Builder&, Value)>& activation) {
  Builder b(kImage);
  const Value conv = b.module("conv", conv4(), {0, 0}, kImage);
  const Value bn = b.module("bn", bn4(), conv, kImage);
  return b.finish(activation(b, bn));
}

TEST(Fuse, ConvBnReLUModule) {
  Builder b(kImage);
  auto conv = conv4();
  auto bn = bn4();
  const Value c = b.module("conv", conv, {0, 0}, kImage);
  const Value n = b.module("bn", bn, c, kImage);
  const Graph g = b.finish(b.module("relu", std::make_shared<nn::ReLU>(), n, kImage));
  const Graph fused = fuse(g);
  EXPECT_EQ(fused.to_string(),
            "input: input -> [1, 4, 8, 8]\n"
            "conv: ConvBnReLU2d(input) -> [1, 4, 8, 8]  # fused bn, relu\n"
            "output: output(conv)\n");
  const auto* module = dynamic_cast<const FusedConv2d*>(fused.node("conv").module.get());
  ASSERT_NE(module, nullptr);
  EXPECT_EQ(module->conv(), conv);  // the original modules, shared
  EXPECT_EQ(module->bn(), bn);
  EXPECT_EQ(module->activation(), Activation::kReLU);
  EXPECT_EQ(fused.node("conv").kind, NodeKind::kModule);
}

TEST(Fuse, EveryActivationForm) {
  struct Case {
    std::string name;
    std::function<Value(Builder&, Value)> activation;
    std::string op;
    Activation activation_kind;
  };
  const std::vector<Case> cases = {
      {"ReLU6 module",
       [](Builder& b, Value v) {
         return b.module("relu6", std::make_shared<nn::ReLU6>(), v, kImage);
       },
       "ConvBnReLU6", Activation::kReLU6},
      {"functional relu", [](Builder& b, Value v) { return b.function("relu", {v}, kImage); },
       "ConvBnReLU2d", Activation::kReLU},
      {"functional relu6", [](Builder& b, Value v) { return b.function("relu6", {v}, kImage); },
       "ConvBnReLU6", Activation::kReLU6},
      {"clamp(0, 6)",
       [](Builder& b, Value v) {
         return b.function("clamp", {v}, kImage, {{"min", 0.0}, {"max", 6.0}});
       },
       "ConvBnReLU6", Activation::kClamp0To6},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Graph fused = fuse(conv_bn_then(c.activation));
    ASSERT_EQ(fused.nodes.size(), 3u) << fused.to_string();
    EXPECT_EQ(fused.node("conv").op, c.op);
    const auto* module = dynamic_cast<const FusedConv2d*>(fused.node("conv").module.get());
    ASSERT_NE(module, nullptr);
    EXPECT_EQ(module->activation(), c.activation_kind);
  }
}

TEST(Fuse, ConvBnBeforeAResidualAdd) {
  Builder b(kImage);
  const Value c = b.module("conv", conv4(), {0, 0}, kImage);
  const Value n = b.module("bn", bn4(), c, kImage);
  const Value add = b.function("add", {n, {0, 0}}, kImage);
  const Graph g = b.finish(b.module("relu", std::make_shared<nn::ReLU>(), add, kImage));
  EXPECT_EQ(fuse(g).to_string(),
            "input: input -> [1, 4, 8, 8]\n"
            "conv: ConvBn2d(input) -> [1, 4, 8, 8]  # fused bn\n"
            "add: add(conv, input) -> [1, 4, 8, 8]\n"
            "relu: ReLU(add) -> [1, 4, 8, 8]\n"
            "output: output(relu)\n");
}

TEST(Fuse, ConvReLUAndLinearReLU) {
  Builder b(kImage);
  const Value c = b.module("conv", std::make_shared<nn::Conv2d>(4, 2, 3), {0, 0}, {1, 2, 8, 8});
  const Value r = b.function("relu", {c}, {1, 2, 8, 8});
  const Value flat = b.function("flatten", {r}, {1, 128}, {{"start_dim", 1}, {"end_dim", -1}});
  const Value fc = b.module("fc", std::make_shared<nn::Linear>(128, 3), flat, {1, 3});
  const Graph g = b.finish(b.module("fc_relu", std::make_shared<nn::ReLU>(), fc, {1, 3}));
  const Graph fused = fuse(g);
  EXPECT_EQ(fused.to_string(),
            "input: input -> [1, 4, 8, 8]\n"
            "conv: ConvReLU2d(input) -> [1, 2, 8, 8]  # fused relu\n"
            "flatten: flatten(conv) -> [1, 128]  {start_dim=1, end_dim=-1}\n"
            "fc: LinearReLU(flatten) -> [1, 3]  # fused fc_relu\n"
            "output: output(fc)\n");
  EXPECT_NE(dynamic_cast<const FusedLinear*>(fused.node("fc").module.get()), nullptr);
}

TEST(Fuse, ConvOutputWithTwoConsumersStaysUnfused) {
  Builder b(kImage);
  const Value c = b.module("conv", conv4(), {0, 0}, kImage);
  const Value n = b.module("bn", bn4(), c, kImage);
  const Graph g = b.finish(b.function("add", {n, c}, kImage));
  EXPECT_EQ(fuse(g).to_string(), g.to_string());
}

TEST(Fuse, BnOutputWithTwoConsumersKeepsItsReLU) {
  Builder b(kImage);
  const Value c = b.module("conv", conv4(), {0, 0}, kImage);
  const Value n = b.module("bn", bn4(), c, kImage);
  const Value r = b.module("relu", std::make_shared<nn::ReLU>(), n, kImage);
  const Graph g = b.finish(b.function("add", {r, n}, kImage));
  EXPECT_EQ(fuse(g).to_string(),
            "input: input -> [1, 4, 8, 8]\n"
            "conv: ConvBn2d(input) -> [1, 4, 8, 8]  # fused bn\n"
            "relu: ReLU(conv) -> [1, 4, 8, 8]\n"
            "add: add(relu, conv) -> [1, 4, 8, 8]\n"
            "output: output(add)\n");
}

TEST(Fuse, ValueReadTwiceByOneNodeStaysUnfused) {
  Builder b(kImage);
  const Value c = b.module("conv", conv4(), {0, 0}, kImage);
  const Graph g = b.finish(b.function("add", {c, c}, kImage));
  EXPECT_EQ(fuse(g).to_string(), g.to_string());
}

TEST(Fuse, ReLUNotFollowingTheConvStaysUnfused) {
  Builder b(kImage);
  const Value c = b.module("conv", conv4(), {0, 0}, kImage);
  const Value add = b.function("add", {c, {0, 0}}, kImage);
  const Graph g = b.finish(b.module("relu", std::make_shared<nn::ReLU>(), add, kImage));
  EXPECT_EQ(fuse(g).to_string(), g.to_string());
}

TEST(Fuse, BnOnAnotherValueStaysUnfused) {
  Builder b(kImage);
  const Value c = b.module("conv", conv4(), {0, 0}, kImage);
  const Value pool = b.function("max_pool2d", {c}, kImage);
  const Value n = b.module("bn", bn4(), pool, kImage);
  const Graph g = b.finish(b.module("relu", std::make_shared<nn::ReLU>(), n, kImage));
  EXPECT_EQ(fuse(g).to_string(), g.to_string());
}

TEST(Fuse, BnThatCannotFoldStaysUnfused) {
  const std::vector<std::shared_ptr<nn::BatchNorm2d>> bns = {
      std::make_shared<nn::BatchNorm2d>(8),  // the conv has 4 output channels
      std::make_shared<nn::BatchNorm2d>(4, nn::BatchNorm2dOptions().affine(false)),
      std::make_shared<nn::BatchNorm2d>(4, nn::BatchNorm2dOptions().track_running_stats(false)),
  };
  for (const auto& bn : bns) {
    SCOPED_TRACE(bn->to_string());
    Builder b(kImage);
    const Value c = b.module("conv", conv4(), {0, 0}, kImage);
    const Graph g = b.finish(b.module("bn", bn, c, kImage));
    EXPECT_EQ(fuse(g).to_string(), g.to_string());
  }
}

TEST(Fuse, OtherClampsAndSubclassesStayUnfused) {
  const Graph clamp = conv_bn_then([](Builder& b, Value v) {
    return b.function("clamp", {v}, kImage, {{"min", 0.0}, {"max", 3.0}});
  });
  EXPECT_EQ(fuse(clamp).node("conv").op, "ConvBn2d");
  EXPECT_EQ(fuse(clamp).node("clamp").op, "clamp");

  // A subclass may compute something else in forward().
  class LeakyConv : public nn::Conv2d {
   public:
    LeakyConv() : nn::Conv2d(4, 4, 3) {}
  };
  Builder b(kImage);
  const Value c = b.module("conv", std::make_shared<LeakyConv>(), {0, 0}, kImage);
  const Graph g = b.finish(b.module("bn", bn4(), c, kImage));
  EXPECT_EQ(fuse(g).to_string(), g.to_string());
}

TEST(Fuse, ConvFeedingTheOutputStaysUnfused) {
  Builder b(kImage);
  const Graph g = b.finish(b.module("conv", conv4(), {0, 0}, kImage));
  EXPECT_EQ(fuse(g).to_string(), g.to_string());
}

TEST(Fuse, IsPureAndIdempotent) {
  const Graph g = conv_bn_then([](Builder& b, Value v) { return b.function("relu", {v}, kImage); });
  const std::string before = g.to_string();
  const Graph once = fuse(g);
  EXPECT_EQ(g.to_string(), before);
  EXPECT_EQ(fuse(once).to_string(), once.to_string());
}

TEST(FusedModules, CheckTheirArguments) {
  EXPECT_THROW(FusedConv2d(conv4(), nullptr, Activation::kNone), Error);
  EXPECT_THROW(FusedConv2d(conv4(), std::make_shared<nn::BatchNorm2d>(3), Activation::kNone),
               Error);
  EXPECT_THROW(FusedLinear(std::make_shared<nn::Linear>(2, 2), Activation::kNone), Error);
  EXPECT_EQ(FusedConv2d(conv4(), nullptr, Activation::kReLU6).type_name(), "ConvReLU6");
  EXPECT_EQ(FusedConv2d(conv4(), bn4(), Activation::kNone).extra_repr(),
            "4, 4, kernel_size=(3, 3), stride=(1, 1), bn=BatchNorm2d(4, eps=1e-05, momentum=0.1, "
            "affine=True, track_running_stats=True)");
}

// Input gradient of a 1x1 identity conv fused with `activation`, at x = {0, 6, 3, -1}.
std::vector<float> boundary_gradient(Activation activation) {
  auto conv = std::make_shared<nn::Conv2d>(1, 1, 1, nn::Conv2dOptions().bias(false));
  conv->weight.fill_(1.0);
  FusedConv2d fused(conv, nullptr, activation);
  Tensor x = Tensor::from_vector<float>({0, 6, 3, -1}, {1, 1, 2, 2});
  x.requires_grad_(true);
  ops::sum(fused.forward(x)).backward();
  return x.grad().to_vector<float>();
}

TEST(FusedModules, ClampKeepsItsInclusiveGradient) {
  EXPECT_EQ(boundary_gradient(Activation::kClamp0To6), (std::vector<float>{1, 1, 1, 0}));
  EXPECT_EQ(boundary_gradient(Activation::kReLU6), (std::vector<float>{0, 0, 1, 0}));
}

// Every pattern fuse() knows, as a user would write them: conv-bn-ReLU, conv-bn-relu
// (functional), conv-clamp(0, 6), conv-bn into a residual add, depthwise conv-bn-ReLU6 and
// linear-ReLU.
class FusableNet : public nn::Module {
 public:
  FusableNet() {
    const auto no_bias = nn::Conv2dOptions().padding(1).bias(false);
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 8, 3, no_bias));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(8));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(8, 8, 3, no_bias));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(8));
    conv3 = register_module("conv3", std::make_shared<nn::Conv2d>(8, 8, 1));
    conv4 = register_module("conv4", std::make_shared<nn::Conv2d>(8, 8, 3, no_bias));
    bn4 = register_module("bn4", std::make_shared<nn::BatchNorm2d>(8));
    conv5 = register_module(
        "conv5", std::make_shared<nn::Conv2d>(8, 8, 3, nn::Conv2dOptions(no_bias).groups(8)));
    bn5 = register_module("bn5", std::make_shared<nn::BatchNorm2d>(8));
    relu6 = register_module("relu6", std::make_shared<nn::ReLU6>());
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(8, 16));
    fc_relu = register_module("fc_relu", std::make_shared<nn::ReLU>());
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 10));
  }
  std::string type_name() const override { return "FusableNet"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3, conv4, conv5;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn4, bn5;
  std::shared_ptr<nn::ReLU> relu, fc_relu;
  std::shared_ptr<nn::ReLU6> relu6;
  std::shared_ptr<nn::Linear> fc1, fc2;

 protected:
  Tensor forward_impl(const Tensor& input) override {
    const Tensor x = relu->forward(bn1->forward(conv1->forward(input)));
    Tensor y = ops::relu(bn2->forward(conv2->forward(x)));
    y = ops::clamp(conv3->forward(y), 0.0, 6.0);
    y = relu->forward(ops::add(bn4->forward(conv4->forward(y)), x));
    y = relu6->forward(bn5->forward(conv5->forward(y)));
    y = ops::flatten(ops::adaptive_avg_pool2d(y, {1, 1}), 1);
    return fc2->forward(fc_relu->forward(fc1->forward(y)));
  }
};

TEST(Fuse, TracedSmallModel) {
  auto model = std::make_shared<FusableNet>();
  model->eval();
  EXPECT_EQ(fuse(trace(*model, {2, 3, 8, 8})).to_string(),
            "input: input -> [2, 3, 8, 8]\n"
            "conv1: ConvBnReLU2d(input) -> [2, 8, 8, 8]  # fused bn1, relu\n"
            "conv2: ConvBnReLU2d(conv1) -> [2, 8, 8, 8]  # fused bn2, relu_1\n"
            "conv3: ConvReLU6(conv2) -> [2, 8, 8, 8]  # fused clamp\n"
            "conv4: ConvBn2d(conv3) -> [2, 8, 8, 8]  # fused bn4\n"
            "add: add(conv4, conv1) -> [2, 8, 8, 8]\n"
            "relu_2: ReLU(add) -> [2, 8, 8, 8]\n"
            "conv5: ConvBnReLU6(relu_2) -> [2, 8, 8, 8]  # fused bn5, relu6\n"
            "adaptive_avg_pool2d: adaptive_avg_pool2d(conv5) -> [2, 8, 1, 1]  "
            "{output_size=[1, 1]}\n"
            "flatten: flatten(adaptive_avg_pool2d) -> [2, 8]  {start_dim=1, end_dim=-1}\n"
            "fc1: LinearReLU(flatten) -> [2, 16]  # fused fc_relu\n"
            "fc2: Linear(fc1) -> [2, 10]\n"
            "output: output(fc2)\n");
}

// Everything one training step computes: the output, every parameter's gradient and the model
// state afterwards (BatchNorm running statistics move in training mode).
struct Step {
  std::vector<float> output;
  std::vector<std::vector<float>> grads;
  std::vector<std::vector<double>> state;
};

Step run_step(const Graph& graph, nn::Module& model, const nn::StateDict& state, const Tensor& x) {
  model.load_state_dict(state);
  model.zero_grad();
  manual_seed(3);  // the dropout stream
  const Tensor y = run(graph, x);
  Tensor weight = Tensor::empty(y.shape());
  Generator gen(4);
  normal_(weight, 0.0, 1.0, gen);
  ops::sum(ops::mul(y, weight)).backward();
  Step step;
  step.output = y.to_vector<float>();
  for (const Tensor& p : model.parameters())  // googlenet's aux heads get none in eval
    step.grads.push_back(p.grad().defined() ? p.grad().to_vector<float>() : std::vector<float>());
  for (const auto& entry : model.state_dict())
    step.state.push_back(entry.second.to_vector<double>());
  return step;
}

nn::StateDict cloned_state(const nn::Module& model) {
  nn::StateDict out;
  for (const auto& [name, t] : model.state_dict()) out.emplace_back(name, t.clone());
  return out;
}

// Runs the traced and the fused graph of `model` on x in both modes from the same state: same
// outputs, gradients and BatchNorm statistics, bit for bit.
void expect_fused_graph_trains_bit_exactly(nn::Module& model, const Tensor& x) {
  const nn::StateDict state = cloned_state(model);
  for (const bool training : {true, false}) {
    SCOPED_TRACE(training ? "train" : "eval");
    model.train(training);
    const Graph traced = trace(model, x.shape());
    const Graph fused = fuse(traced);
    ASSERT_LT(fused.nodes.size(), traced.nodes.size());
    const Step want = run_step(traced, model, state, x);
    const Step got = run_step(fused, model, state, x);
    EXPECT_EQ(got.output, want.output);
    EXPECT_EQ(got.grads, want.grads);
    EXPECT_EQ(got.state, want.state);
  }
}

Tensor random_input(const Shape& shape, double stddev) {
  Tensor x = Tensor::empty(shape);
  Generator gen(5);
  normal_(x, 0.0, stddev, gen);
  return x;
}

TEST(Fuse, FusedGraphTrainsBitExactly) {
  auto model = std::make_shared<FusableNet>();
  // Large enough to reach the clamp's upper bound.
  expect_fused_graph_trains_bit_exactly(*model, random_input({2, 3, 8, 8}, 3.0));
}

TEST(Fuse, FusedGoogLeNetTrainsBitExactly) {  // functional relu after BN, aux heads
  zoo::ModelConfig config;
  config.name = "googlenet";
  config.small_input = true;
  config.num_classes = 10;
  config.aux_logits = true;
  auto model = zoo::create_model(config);
  expect_fused_graph_trains_bit_exactly(*model, random_input({2, 3, 32, 32}, 1.0));
}

// Node count per op, for the ops fusion creates or leaves behind.
std::map<std::string, int> fusion_counts(const Graph& g) {
  std::map<std::string, int> counts;
  for (const GraphNode& node : g.nodes) {
    for (const char* op : {"ConvBn2d", "ConvBnReLU2d", "ConvBnReLU6", "ConvReLU2d", "ConvReLU6",
                           "LinearReLU", "LinearReLU6", "Conv2d", "BatchNorm2d", "Linear"}) {
      if (node.op == op) ++counts[node.op];
    }
  }
  return counts;
}

TEST(Fuse, EveryZooModel) {
  struct Case {
    std::string name;
    bool training;  // googlenet's aux heads run in training mode only
    std::map<std::string, int> counts;
  };
  // No Conv2d or BatchNorm2d is left unfused in any zoo model.
  const std::vector<Case> cases = {
      {"resnet18", false, {{"ConvBnReLU2d", 9}, {"ConvBn2d", 11}, {"Linear", 1}}},
      {"resnet34", false, {{"ConvBnReLU2d", 17}, {"ConvBn2d", 19}, {"Linear", 1}}},
      {"resnet50", false, {{"ConvBnReLU2d", 33}, {"ConvBn2d", 20}, {"Linear", 1}}},
      {"mobilenet_v2", false, {{"ConvBnReLU6", 35}, {"ConvBn2d", 17}, {"Linear", 1}}},
      {"shufflenet_v2_x0_5", false, {{"ConvBnReLU2d", 37}, {"ConvBn2d", 19}, {"Linear", 1}}},
      {"shufflenet_v2_x1_0", false, {{"ConvBnReLU2d", 37}, {"ConvBn2d", 19}, {"Linear", 1}}},
      {"shufflenet_v2_x1_5", false, {{"ConvBnReLU2d", 37}, {"ConvBn2d", 19}, {"Linear", 1}}},
      {"shufflenet_v2_x2_0", false, {{"ConvBnReLU2d", 37}, {"ConvBn2d", 19}, {"Linear", 1}}},
      {"googlenet", false, {{"ConvBnReLU2d", 57}, {"Linear", 1}}},
      {"googlenet", true, {{"ConvBnReLU2d", 59}, {"LinearReLU", 2}, {"Linear", 3}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    zoo::ModelConfig config;
    config.name = c.name;
    config.small_input = true;
    config.num_classes = 10;
    if (c.name == "googlenet") config.aux_logits = c.training;
    auto model = zoo::create_model(config);
    model->train(c.training);
    EXPECT_EQ(fusion_counts(fuse(trace(*model, {2, 3, 32, 32}))), c.counts);
  }
}

}  // namespace
}  // namespace qat::graph
