#include "graph/executor.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/random.h"
#include "graph/test_models.h"
#include "graph/trace.h"
#include "nn/activation.h"
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

// Everything one training step computes: the output, every parameter's gradient and the model
// state afterwards (BatchNorm running statistics move in training mode).
struct Step {
  std::vector<float> output;
  std::vector<std::vector<float>> grads;
  std::vector<std::vector<double>> state;
};

// Loads `state` into `model`, runs `forward_module` (the model or its GraphModule) on x with a
// fixed dropout stream, and backpropagates sum(y * weight).
Step run_step(nn::Module& forward_module, nn::Module& model, const nn::StateDict& state,
              const Tensor& x) {
  model.load_state_dict(state);
  model.zero_grad();
  manual_seed(3);
  const Tensor y = forward_module.forward(x);
  Tensor weight = Tensor::empty(y.shape());
  Generator gen(4);
  normal_(weight, 0.0, 1.0, gen);
  ops::sum(ops::mul(y, weight)).backward();
  Step step;
  step.output = y.to_vector<float>();
  for (const Tensor& p : model.parameters())
    step.grads.push_back(p.grad().defined() ? p.grad().to_vector<float>() : std::vector<float>());
  for (const auto& entry : model.state_dict())
    step.state.push_back(entry.second.to_vector<double>());
  return step;
}

// Bitwise equality of two steps, reporting the first mismatch.
template <class T>
void expect_same(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      ADD_FAILURE() << what << " differs at " << i << ": " << got[i] << " vs " << want[i];
      return;
    }
  }
}

void expect_same_step(const Step& got, const Step& want) {
  expect_same(got.output, want.output, "output");
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t i = 0; i < got.grads.size(); ++i)
    expect_same(got.grads[i], want.grads[i], "gradient of parameter " + std::to_string(i));
  ASSERT_EQ(got.state.size(), want.state.size());
  for (size_t i = 0; i < got.state.size(); ++i)
    expect_same(got.state[i], want.state[i], "state_dict entry " + std::to_string(i));
}

nn::StateDict cloned_state(const nn::Module& model) {
  nn::StateDict out;
  for (const auto& [name, t] : model.state_dict()) out.emplace_back(name, t.clone());
  return out;
}

// The GraphModule of `model` traced in its current mode equals the model, bit for bit.
void expect_graph_matches_model(const std::shared_ptr<nn::Module>& model, const Shape& shape) {
  const nn::StateDict state = cloned_state(*model);
  auto graph_module = std::make_shared<GraphModule>(model, trace(*model, shape));
  Tensor x = Tensor::empty(shape);
  Generator gen(5);
  normal_(x, 0.0, 1.0, gen);
  const Step want = run_step(*model, *model, state, x);
  const Step got = run_step(*graph_module, *model, state, x);
  expect_same_step(got, want);
}

std::shared_ptr<nn::Module> small_zoo_model(const std::string& name, bool aux_logits = false) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = true;
  config.num_classes = 10;
  if (name == "googlenet") config.aux_logits = aux_logits;
  return zoo::create_model(config);
}

TEST(GraphModule, MatchesEveryZooModelInEvalAndTraining) {
  struct Case {
    std::string name;
    bool aux_logits;
  };
  const std::vector<Case> cases = {
      {"resnet18", false},           {"resnet34", false},           {"resnet50", false},
      {"mobilenet_v2", false},       {"shufflenet_v2_x0_5", false}, {"shufflenet_v2_x1_0", false},
      {"shufflenet_v2_x1_5", false}, {"shufflenet_v2_x2_0", false}, {"googlenet", false},
      {"googlenet", true},
  };
  for (const Case& c : cases) {
    auto model = small_zoo_model(c.name, c.aux_logits);
    for (const bool training : {false, true}) {
      SCOPED_TRACE(c.name + (c.aux_logits ? " aux" : "") + (training ? " train" : " eval"));
      model->train(training);
      expect_graph_matches_model(model, {2, 3, 32, 32});
    }
  }
}

TEST(GraphModule, MatchesASmallUserModel) {
  auto model = std::make_shared<test_models::TinyNet>();
  for (const bool training : {false, true}) {
    model->train(training);
    expect_graph_matches_model(model, {2, 1, 8, 8});
  }
}

TEST(GraphModule, TracedInEvalTrainsInTrainingMode) {
  auto model = small_zoo_model("resnet18");
  model->eval();
  auto graph_module = std::make_shared<GraphModule>(model, trace(*model, {2, 3, 32, 32}));
  graph_module->train();
  EXPECT_TRUE(model->is_training());
  EXPECT_TRUE(graph_module->model()->is_training());
  const nn::StateDict state = cloned_state(*model);
  Tensor x = Tensor::ones({2, 3, 32, 32});
  expect_same_step(run_step(*graph_module, *model, state, x), run_step(*model, *model, state, x));
  graph_module->eval();
  EXPECT_FALSE(model->is_training());
}

TEST(GraphModule, StateDictHasTheModelsKeysAndTensors) {
  for (const std::string name : {"resnet18", "googlenet"}) {
    SCOPED_TRACE(name);
    auto model = small_zoo_model(name, /*aux_logits=*/true);
    model->eval();
    GraphModule graph_module(model, trace(*model, {1, 3, 32, 32}));
    const nn::StateDict want = model->state_dict(), got = graph_module.state_dict();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, want[i].first);
      EXPECT_EQ(got[i].second.impl_ptr(), want[i].second.impl_ptr()) << got[i].first;
    }
  }
}

// Parameters and buffers registered on the model itself, one of them frozen.
class WithOwnState : public nn::Module {
 public:
  WithOwnState() {
    scale = register_parameter("scale", Tensor::ones({1}));
    scale.requires_grad_(false);
    steps = register_buffer("steps", Tensor::zeros({1}));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
  }
  std::string type_name() const override { return "WithOwnState"; }
  Tensor scale;
  Tensor steps;
  std::shared_ptr<nn::ReLU> relu;

 protected:
  Tensor forward_impl(const Tensor& x) override { return relu->forward(x); }
};

TEST(GraphModule, KeepsTheModelsOwnParametersAndBuffers) {
  auto model = std::make_shared<WithOwnState>();
  GraphModule graph_module(model, trace(*model, {2, 3}));
  const nn::StateDict sd = graph_module.state_dict();
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "scale");
  EXPECT_EQ(sd[1].first, "steps");
  EXPECT_FALSE(model->scale.requires_grad());  // still frozen
}

TEST(Run, ErrorsNameTheNode) {
  auto model = std::make_shared<test_models::TinyNet>();
  model->eval();
  const Graph g = trace(*model, {2, 1, 8, 8});
  const std::string message = error_of([&] { run(g, Tensor::ones({2, 2, 8, 8})); });
  EXPECT_EQ(message.find("graph run: node 'stem' (Conv2d): conv2d: input has 2 channels"), 0u)
      << message;

  Graph unsupported = g;
  unsupported.nodes[g.find("mul")].op = "frobnicate";
  EXPECT_EQ(error_of([&] {
              run(unsupported, Tensor::ones({2, 1, 8, 8}));
            })
                .find("graph run: node 'mul' (frobnicate): no executor function for op "
                      "'frobnicate' (the executor runs: adaptive_avg_pool2d, add, "),
            0u);
  EXPECT_TRUE(has_function("channel_shuffle"));
  EXPECT_FALSE(has_function("frobnicate"));
}

}  // namespace
}  // namespace qat::graph
