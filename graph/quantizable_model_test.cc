#include "graph/quantizable_model.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/ops/loss.h"
#include "core/random.h"
#include "core/serialize.h"
#include "graph/test_models.h"
#include "nn/optim.h"
#include "quant/conv_bn_relu.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"
#include "tests/testing/errors.h"
#include "zoo/registry.h"

namespace qat::graph {
namespace {

using qat::testing::error_of;

const quant::QConfig kTensorRT = quant::QConfig::preset("tensorrt");
const Shape kBatch = {4, 3, 32, 32};

std::shared_ptr<nn::Module> small_zoo_model(const std::string& name) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = true;
  config.num_classes = 10;
  return zoo::create_model(config);
}

Tensor random_batch(uint64_t seed) {
  Tensor x = Tensor::empty(kBatch);
  Generator gen(seed);
  normal_(x, 0.0, 1.0, gen);
  return x;
}

const Tensor& targets() {
  static const Tensor kTargets = Tensor::from_vector<int64_t>({0, 1, 2, 3}, {4});
  return kTargets;
}

// Runs `steps` SGD steps on one fixed batch; returns the losses.
std::vector<double> train_steps(nn::Module& model, int steps) {
  const Tensor x = random_batch(7);
  nn::SGD sgd(model.parameters(), nn::SGDOptions(0.02).momentum(0.9));
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    sgd.zero_grad();
    const Tensor loss = ops::cross_entropy(model.forward(x), targets());
    loss.backward();
    sgd.step();
    losses.push_back(loss.item());
  }
  return losses;
}

std::vector<std::string> keys(const nn::NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

// The node whose name is the longest dotted prefix of `key` ("flatten.activation_post_process"
// for "flatten.activation_post_process.scale"), or nullptr.
const GraphNode* node_of(const Graph& graph, const std::string& key) {
  for (size_t dot = key.rfind('.'); dot != std::string::npos && dot > 0;
       dot = key.rfind('.', dot - 1)) {
    const int node = graph.find(key.substr(0, dot));
    if (node >= 0) return &graph.nodes[node];
  }
  return nullptr;
}

TEST(QuantizableModel, BothFrontDoorsGiveTheSameGraphAndOutputs) {
  auto model = small_zoo_model("resnet18");
  auto twin = small_zoo_model("resnet18");
  twin->load_state_dict(model->state_dict());
  auto one_call = std::make_shared<QuantizableModel>(model, kBatch, kTensorRT);
  auto manual = QuantizableModel::manual(twin, kBatch);
  EXPECT_FALSE(manual->is_fused());
  manual->fuse_model();
  manual->set_qconfig(kTensorRT);
  manual->prepare_qat();
  EXPECT_TRUE(manual->is_prepared());
  EXPECT_EQ(manual->graph().to_string(), one_call->graph().to_string());
  EXPECT_EQ(keys(manual->state_dict()), keys(one_call->state_dict()));
  const Tensor x = random_batch(1);
  EXPECT_EQ(values(manual->forward(x)), values(one_call->forward(x)));
}

TEST(QuantizableModel, StateDictIsTheModelsThenTheQuantStateByNode) {
  auto model = small_zoo_model("resnet18");
  auto qm = std::make_shared<QuantizableModel>(model, kBatch, kTensorRT);
  const nn::StateDict float_state = model->state_dict();
  const nn::StateDict state = qm->state_dict();
  ASSERT_EQ(float_state.size(), 122u);
  ASSERT_GT(state.size(), float_state.size());
  for (size_t i = 0; i < float_state.size(); ++i) {
    EXPECT_EQ(state[i].first, float_state[i].first);
    EXPECT_TRUE(state[i].second.shares_storage(float_state[i].second)) << state[i].first;
  }
  // Every further key belongs to a quant module, under its node's name.
  std::set<std::string> quant_keys;
  for (size_t i = float_state.size(); i < state.size(); ++i) {
    const std::string& key = state[i].first;
    quant_keys.insert(key);
    const GraphNode* node = node_of(qm->graph(), key);
    ASSERT_NE(node, nullptr) << key;
    EXPECT_TRUE(dynamic_cast<const quant::QatModule*>(node->module.get()) ||
                dynamic_cast<const quant::FakeQuantize*>(node->module.get()))
        << key;
  }
  for (const std::string& key : {
           "conv1.weight_fake_quant.scale",
           "layer1.0.conv1.weight_fake_quant.activation_post_process.min_val",
           "layer1.0.relu_1.activation_post_process.scale",
           "layer1.0.relu_1.activation_post_process.activation_post_process.max_val",
           "layer2.0.downsample.0.weight_fake_quant.zero_point",
           "fc.weight_fake_quant.observer_enabled",
       }) {
    EXPECT_EQ(quant_keys.count(key), 1u) << key;
  }
  // The quant modules hold no parameters of their own (no LSQ in the preset).
  EXPECT_EQ(qm->parameters().size(), model->parameters().size());
}

TEST(QuantizableModel, ParametersIncludeLearnableScalesOnce) {
  auto model = std::make_shared<test_models::TinyNet>();
  const auto lsq = quant::QConfig::from_json(
      {{"preset", "tensorrt"}, {"activation", {{"learnable_scale", true}}}});
  auto qm = std::make_shared<QuantizableModel>(model, Shape{2, 1, 8, 8}, lsq);
  size_t activation_quantizers = 0;
  for (const GraphNode& node : qm->graph().nodes)
    activation_quantizers += dynamic_cast<const quant::FakeQuantize*>(node.module.get()) != nullptr;
  ASSERT_GT(activation_quantizers, 0u);
  const nn::NamedTensors params = qm->named_parameters();
  EXPECT_EQ(params.size(), model->parameters().size() + activation_quantizers);
  EXPECT_EQ(params.back().first, "flatten.activation_post_process.scale");
}

TEST(QuantizableModel, TrainAndEvalReachEveryNodeModule) {
  auto qm = std::make_shared<QuantizableModel>(small_zoo_model("resnet18"), kBatch, kTensorRT);
  int conv_bns = 0;
  for (const GraphNode& node : qm->graph().nodes) {
    conv_bns += dynamic_cast<const quant::ConvBn2d*>(node.module.get()) != nullptr;
    if (node.module) EXPECT_TRUE(node.module->is_training()) << node.name;
  }
  EXPECT_EQ(conv_bns, 20);
  const Tensor x = random_batch(3);
  qm->forward(x);  // observers and BN running statistics see data
  quant::disable_observer(*qm);
  qm->eval();
  for (const GraphNode& node : qm->graph().nodes)
    if (node.module) EXPECT_FALSE(node.module->is_training()) << node.name;
  // Eval: running statistics, the folded conv; the same output every time.
  const std::vector<float> eval_output = values(qm->forward(x));
  EXPECT_EQ(values(qm->forward(x)), eval_output);
  qm->train();
  EXPECT_NE(values(qm->forward(x)), eval_output);  // batch statistics
}

TEST(QuantizableModel, ModelWideSwitchesReachTheQuantModules) {
  auto qm = std::make_shared<QuantizableModel>(small_zoo_model("resnet18"), kBatch, kTensorRT);
  quant::freeze_bn_stats(*qm);
  quant::disable_observer(*qm);
  int conv_bns = 0, quantizers = 0;
  for (const auto& [name, module] : qm->named_modules()) {
    if (auto* conv_bn = dynamic_cast<const quant::ConvBn2d*>(module.get())) {
      ++conv_bns;
      EXPECT_TRUE(conv_bn->bn_frozen()) << name;
    }
    if (auto* fq = dynamic_cast<const quant::FakeQuantize*>(module.get())) {
      ++quantizers;
      EXPECT_FALSE(fq->observer_enabled()) << name;
    }
  }
  EXPECT_EQ(conv_bns, 20);
  EXPECT_GT(quantizers, 21);  // a weight quantizer per conv / linear, plus the activations'
}

TEST(QuantizableModel, CheckpointRoundTripRestoresIdenticalOutputs) {
  auto qm = std::make_shared<QuantizableModel>(small_zoo_model("resnet18"), kBatch, kTensorRT);
  train_steps(*qm, 3);
  quant::disable_observer(*qm);  // a freeze flag the checkpoint must carry
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/qat.safetensors";
  save_safetensors(path, qm->state_dict());

  auto fresh = std::make_shared<QuantizableModel>(small_zoo_model("resnet18"), kBatch, kTensorRT);
  fresh->load_state_dict(load_safetensors(path));  // strict
  const nn::StateDict want = qm->state_dict(), got = fresh->state_dict();
  ASSERT_EQ(keys(got), keys(want));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].second.shape(), want[i].second.shape()) << got[i].first;
    EXPECT_EQ(got[i].second.dtype(), want[i].second.dtype()) << got[i].first;
  }
  for (const auto& [name, module] : fresh->named_modules()) {
    if (auto* fq = dynamic_cast<const quant::FakeQuantize*>(module.get()))
      EXPECT_FALSE(fq->observer_enabled()) << name;
  }
  qm->eval();
  fresh->eval();
  const Tensor x = random_batch(5);
  EXPECT_EQ(values(fresh->forward(x)), values(qm->forward(x)));
}

TEST(QuantizableModel, ManualStepsOutOfOrderAreErrors) {
  const Shape shape = {2, 1, 8, 8};
  auto qm = QuantizableModel::manual(std::make_shared<test_models::TinyNet>(), shape);
  // Each message starts with the API and what it expected.
  const auto starts_with = [](const std::string& message, const std::string& prefix) {
    return message.compare(0, prefix.size(), prefix) == 0;
  };
  EXPECT_PRED2(starts_with, error_of([&] { qm->prepare_qat(); }),
               "QuantizableModel::prepare_qat: expected a fused model, got an unfused one "
               "(HINT: call fuse_model() first)");
  qm->fuse_model();
  EXPECT_PRED2(starts_with, error_of([&] { qm->fuse_model(); }),
               "QuantizableModel::fuse_model: the model is already fused");
  EXPECT_PRED2(starts_with, error_of([&] { qm->prepare_qat(); }),
               "QuantizableModel::prepare_qat: expected a qconfig, got none "
               "(HINT: call set_qconfig() first)");
  quant::QConfig bad = kTensorRT;
  bad.weight.bits = 1;
  EXPECT_NE(error_of([&] { qm->set_qconfig(bad); }), "");
  EXPECT_FALSE(qm->qconfig().has_value());
  qm->set_qconfig(kTensorRT);
  qm->prepare_qat();
  EXPECT_PRED2(starts_with, error_of([&] { qm->prepare_qat(); }),
               "QuantizableModel::prepare_qat: the model is already prepared");
  EXPECT_PRED2(starts_with, error_of([&] { qm->set_qconfig(kTensorRT); }),
               "QuantizableModel::set_qconfig: the model is already prepared with target "
               "'tensorrt' (HINT: set_qconfig() comes before prepare_qat())");
  EXPECT_PRED2(starts_with, error_of([&] { qm->fuse_model(); }),
               "QuantizableModel::fuse_model: the model is already prepared "
               "(HINT: fuse_model() comes before prepare_qat())");
  EXPECT_PRED2(starts_with, error_of([&] { QuantizableModel::manual(nullptr, shape); }),
               "QuantizableModel: got a null model");
}

TEST(QuantizableModel, ResNet18AndMobileNetV2Train) {
  for (const std::string name : {"resnet18", "mobilenet_v2"}) {
    SCOPED_TRACE(name);
    manual_seed(0);  // the initial weights and mobilenet_v2's dropout
    auto qm = std::make_shared<QuantizableModel>(small_zoo_model(name), kBatch, kTensorRT);
    const std::vector<double> losses = train_steps(*qm, 5);
    std::string trace;
    for (const double loss : losses) trace += std::to_string(loss) + " ";
    RecordProperty(name + "_losses", trace);
    for (size_t i = 1; i < losses.size(); ++i)
      EXPECT_LT(losses[i], losses[i - 1]) << "step " << i << ": " << trace;
  }
}

}  // namespace
}  // namespace qat::graph
