#include "zoo/sensitivity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/random.h"
#include "graph/fuse.h"
#include "graph/trace.h"
#include "nn/data/dataset.h"
#include "quant/qat_module.h"
#include "zoo/evaluate.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"
#include "zoo/small_cnn.h"

namespace qat::zoo {
namespace {

const Shape kInputShape = {1, 1, 28, 28};
constexpr int64_t kBatch = 32;
constexpr int64_t kBatches = 2;
const std::vector<std::string> kNodes = {"features.0", "features.4", "features.8", "fc"};

// small_cnn with its default (Kaiming) init and random BN variances, so BN folding matters.
std::shared_ptr<SmallCnn> random_small_cnn() {
  manual_seed(7);
  auto model = std::make_shared<SmallCnn>(1, 10);
  for (auto& [name, tensor] : model->state_dict()) {
    if (name.find("running_var") != std::string::npos) uniform_(tensor, 0.5, 2.0);
  }
  // The features are ReLU outputs with a common positive mean: rows of fc that sum to 0 (and no
  // bias) keep one class from winning for every image.
  Tensor& w = model->fc->weight;
  const int64_t in = w.size(1);
  float* v = w.data<float>();
  for (int64_t k = 0; k < w.size(0); ++k) {
    double mean = 0;
    for (int64_t i = 0; i < in; ++i) mean += v[k * in + i] / in;
    for (int64_t i = 0; i < in; ++i) v[k * in + i] -= static_cast<float>(mean);
  }
  model->fc->bias.zero_();
  model->eval();
  return model;
}

std::unique_ptr<nn::data::DataLoader> loader_of(std::shared_ptr<const nn::data::Dataset> data) {
  return std::make_unique<nn::data::DataLoader>(std::move(data),
                                                nn::data::DataLoaderOptions().batch_size(kBatch));
}

// Synthetic images labelled by the float model's own top-1: the float model scores 100%, and
// every point lost is quantization's.
class LabelledByModel : public nn::data::Dataset {
 public:
  explicit LabelledByModel(nn::Module& model)
      : images_(std::make_shared<nn::data::SyntheticDataset>(kBatch * kBatches, Shape{1, 28, 28},
                                                             10, 11)) {
    NoGradGuard no_grad;
    const auto loader = loader_of(images_);
    loader->start_epoch(0);
    while (const std::optional<nn::data::Batch> batch = loader->next()) {
      const Tensor logits = model.forward(batch->images);
      const std::vector<float> v = logits.to_vector<float>();
      const int64_t classes = logits.size(1);
      for (int64_t n = 0; n < logits.size(0); ++n) {
        const auto row = v.begin() + n * classes;
        labels_.push_back(std::max_element(row, row + classes) - row);
      }
    }
  }

  size_t size() const override { return images_->size(); }
  nn::data::Example get(size_t index) const override {
    return {images_->get(index).image, labels_.at(index)};
  }
  size_t distinct_labels() const {
    return std::set<int64_t>(labels_.begin(), labels_.end()).size();
  }

 private:
  std::shared_ptr<nn::data::SyntheticDataset> images_;
  std::vector<int64_t> labels_;
};

// The model prepared for `target`, calibrated (minmax) on other synthetic images, observers
// off, eval: what `qat sensitivity` measures.
std::shared_ptr<graph::QuantizableModel> calibrated(std::shared_ptr<nn::Module> model,
                                                    const std::string& target,
                                                    const std::vector<std::string>& black_list) {
  auto qm = std::make_shared<graph::QuantizableModel>(model, kInputShape,
                                                      quant::QConfig::preset(target), black_list);
  const auto loader =
      loader_of(std::make_shared<nn::data::SyntheticDataset>(64, Shape{1, 28, 28}, 10, 3));
  calibrate(*qm, *loader, 2, CalibratorChoice::kMinMax, kInputShape);
  quant::disable_observer(*qm);
  qm->eval();
  return qm;
}

// Records the input and output of one module's forward.
class Capture : public nn::ForwardHook {
 public:
  explicit Capture(const nn::Module* module) : module_(module) {}
  void after_forward(nn::Module& module, const Tensor& input, const Tensor& output) override {
    if (&module != module_) return;
    input_ = input;
    output_ = output;
  }
  Tensor input_, output_;

 private:
  const nn::Module* module_;
};

// max |a - b| / max |b|.
double relative_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  EXPECT_EQ(x.size(), y.size());
  double d = 0, m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    d = std::max(d, std::fabs(double(x[i]) - y[i]));
    m = std::max(m, std::fabs(double(y[i])));
  }
  return d / m;
}

class SensitivityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SensitivityTest, OneRowPerNodeWithItsQuantizers) {
  const auto qm = calibrated(random_small_cnn(), GetParam(), {});
  const SensitivityPlan plan = plan_sensitivity(*qm);
  std::vector<std::string> names;
  for (const SensitivityNode& node : plan.nodes) names.push_back(node.name);
  EXPECT_EQ(names, kNodes);
  EXPECT_TRUE(plan.black_list.empty());
  // Each node owns its weight quantizer, the graph input's quantizer belongs to features.0
  // (its only reader), and every quantizer has an owner, so leaving every node float is the
  // float model.
  for (const SensitivityNode& node : plan.nodes) {
    EXPECT_NE(
        std::find(node.quantizers.begin(), node.quantizers.end(), node.name + ".weight_fake_quant"),
        node.quantizers.end())
        << node.name;
  }
  EXPECT_EQ(plan.quantizers.size(), quantizers(*qm).size());
  for (const OwnedQuantizer& q : plan.quantizers) {
    EXPECT_FALSE(q.owners.empty()) << q.quantizer.name;
    if (q.quantizer.node == "input") {
      EXPECT_EQ(q.owners, std::vector<std::string>{"features.0"}) << q.quantizer.name;
    }
  }
  // tnn and fbgemm quantize conv outputs in the module; tensorrt quantizes the next conv's input,
  // which the reader owns (black-listing the max pool that produces it would not remove it).
  const std::vector<std::string>& f4 = plan.nodes[1].quantizers;
  if (GetParam() == "tensorrt") {
    EXPECT_EQ(f4, (std::vector<std::string>{"features.3.activation_post_process",
                                            "features.4.weight_fake_quant"}));
  } else {
    EXPECT_EQ(f4, (std::vector<std::string>{"features.4.weight_fake_quant",
                                            "features.4.activation_post_process"}));
  }
}

TEST_P(SensitivityTest, KeepsTheConfiguredBlackListOut) {
  const auto qm = calibrated(random_small_cnn(), GetParam(), {"fc"});
  const SensitivityPlan plan = plan_sensitivity(*qm);
  EXPECT_EQ(plan.black_list, std::vector<std::string>{"fc"});
  for (const SensitivityNode& node : plan.nodes) EXPECT_NE(node.name, "fc");
  EXPECT_EQ(plan.nodes.size(), 3u);
}

// "Only this node float" runs it as the float model does, also under tnn, whose QAT modules
// otherwise compute TNN's int8 kernel from their linked input quantizer.
TEST_P(SensitivityTest, LeaveFloatRunsTheNodeInFloat) {
  const std::shared_ptr<nn::Module> model = random_small_cnn();
  const auto qm = calibrated(model, GetParam(), {});
  const SensitivityPlan plan = plan_sensitivity(*qm);
  const graph::Graph fused = graph::fuse(graph::trace(*model, kInputShape));
  for (const graph::GraphNode& node : fused.nodes)
    if (node.module) node.module->eval();
  Tensor x = Tensor::empty({4, 1, 28, 28});
  normal_(x, 0.0, 1.0);
  NoGradGuard no_grad;
  for (const SensitivityNode& node : plan.nodes) {
    const auto& module = qm->graph().node(node.name).module;
    Capture capture(module.get());
    nn::ForwardHookGuard guard(capture);
    leave_float(plan, {});
    qm->forward(x);
    const Tensor quantized = capture.output_;
    const Tensor float_output = fused.node(node.name).module->forward(capture.input_);
    EXPECT_GT(relative_diff(quantized, float_output), 1e-3) << node.name << ": quantized";

    // The ConvBn modules fold BN into the weight, hence a rounding-level tolerance.
    leave_float(plan, {node.name});
    qm->forward(x);
    const Tensor expected = fused.node(node.name).module->forward(capture.input_);
    EXPECT_LE(relative_diff(capture.output_, expected), 1e-5) << node.name << ": float";
  }
  // Every node float: the float model.
  leave_float(plan, {kNodes.begin(), kNodes.end()});
  EXPECT_LE(relative_diff(qm->forward(x), model->forward(x)), 1e-5);
  leave_float(plan, {});
}

// One node made useless (its weight scale forced huge, so its weights quantize to 0):
// the analysis ranks it first and suggests leaving it float, and a model prepared with the
// suggested black_list has it float and is back within the budget.
TEST_P(SensitivityTest, SuggestsTheBrokenNodeAndTheBlackListRecovers) {
  const std::shared_ptr<nn::Module> model = random_small_cnn();
  const auto data = std::make_shared<LabelledByModel>(*model);
  ASSERT_GE(data->distinct_labels(), 3u);
  const auto loader = loader_of(data);
  const auto qm = calibrated(model, GetParam(), {});
  const std::string broken = "features.4.weight_fake_quant";
  for (const Quantizer& q : quantizers(*qm)) {
    Tensor scale = q.fake_quant->scale();  // a handle: fill_ writes the quantizer's scale
    if (q.name == broken) scale.fill_(1e3);
  }
  SensitivityOptions options;
  options.batches = kBatches;
  options.budget = 10;
  std::vector<std::string> calls;
  options.progress = [&](const std::string& stage, int64_t done, int64_t total) {
    calls.push_back(stage + " " + std::to_string(done) + "/" + std::to_string(total));
  };
  const SensitivityReport report = analyze_sensitivity(*qm, *loader, options);

  EXPECT_EQ(report.float_model.eval.top1, 100.0);
  EXPECT_GT(100.0 - report.quantized.eval.top1, options.budget);
  ASSERT_EQ(report.rows.size(), kNodes.size());
  EXPECT_EQ(report.rows[0].node.name, "features.4");
  for (size_t i = 1; i < report.rows.size(); ++i)
    EXPECT_GE(report.rows[i - 1].drop, report.rows[i].drop);
  ASSERT_FALSE(report.suggested.empty());
  EXPECT_EQ(report.suggested[0], "features.4");
  EXPECT_TRUE(report.within_budget) << report.with_suggested.eval.top1;
  EXPECT_EQ(report.black_list, report.suggested);
  // One trial (features.4 float) reaches the budget.
  EXPECT_EQ(calls, (std::vector<std::string>{"nodes 1/4", "nodes 2/4", "nodes 3/4", "nodes 4/4",
                                             "black_list 1/4"}));
  // The analysis leaves the model quantized.
  EXPECT_EQ(evaluate_module(*qm, *loader, kBatches).top1, report.quantized.eval.top1);

  const auto fixed = calibrated(model, GetParam(), report.black_list);
  for (const std::string& name : report.black_list) {
    const graph::GraphNode& node = fixed->graph().node(name);
    EXPECT_EQ(std::dynamic_pointer_cast<quant::QatModule>(node.module), nullptr) << name;
  }
  for (const Quantizer& q : quantizers(*fixed)) EXPECT_NE(q.name, broken);
  EXPECT_GE(evaluate_module(*fixed, *loader, kBatches).top1, 100.0 - options.budget);
}

INSTANTIATE_TEST_SUITE_P(Targets, SensitivityTest, ::testing::Values("tnn", "tensorrt", "fbgemm"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// resnet18 under tensorrt: the input of layer2.0 is quantized once for both conv1 and the
// downsample conv, so only leaving both float removes that quantizer; under tnn, an add owns
// its output quantizer.
TEST(Sensitivity, ResNetSharedQuantizersNeedAllTheirOwners) {
  ModelConfig config;
  config.name = "resnet18";
  config.num_classes = 10;
  config.in_channels = 1;
  config.small_input = true;
  const std::shared_ptr<nn::Module> model = create_model(config);
  model->eval();

  const auto trt = std::make_shared<graph::QuantizableModel>(model, kInputShape,
                                                             quant::QConfig::preset("tensorrt"));
  const SensitivityPlan plan = plan_sensitivity(*trt);
  const std::vector<std::string> both = {"layer2.0.conv1", "layer2.0.downsample.0"};
  const OwnedQuantizer* shared = nullptr;
  for (const OwnedQuantizer& q : plan.quantizers) {
    EXPECT_FALSE(q.owners.empty()) << q.quantizer.name;
    if (q.owners == both) shared = &q;
  }
  ASSERT_NE(shared, nullptr);
  leave_float(plan, {"layer2.0.conv1"});
  EXPECT_TRUE(shared->quantizer.fake_quant->fake_quant_enabled());
  leave_float(plan, {both.begin(), both.end()});
  EXPECT_FALSE(shared->quantizer.fake_quant->fake_quant_enabled());
  leave_float(plan, {});

  const auto tnn =
      std::make_shared<graph::QuantizableModel>(model, kInputShape, quant::QConfig::preset("tnn"));
  int adds = 0;
  for (const OwnedQuantizer& q : plan_sensitivity(*tnn).quantizers) {
    EXPECT_FALSE(q.owners.empty()) << q.quantizer.name;
    if (q.quantizer.name == "layer1.0.add.activation_post_process") {
      EXPECT_EQ(q.owners, std::vector<std::string>{"layer1.0.add"});
      ++adds;
    }
  }
  EXPECT_EQ(adds, 1);
}

TEST(Sensitivity, RejectsObserversOnAndBadOptions) {
  const auto qm = calibrated(random_small_cnn(), "tnn", {});
  const auto loader =
      loader_of(std::make_shared<nn::data::SyntheticDataset>(32, Shape{1, 28, 28}, 10, 1));
  SensitivityOptions options;
  options.batches = 0;
  EXPECT_THROW(analyze_sensitivity(*qm, *loader, options), Error);
  options.batches = 1;
  options.budget = -1;
  EXPECT_THROW(analyze_sensitivity(*qm, *loader, options), Error);
  options.budget = 1;
  quant::enable_observer(*qm);
  EXPECT_THROW(analyze_sensitivity(*qm, *loader, options), Error);
}

}  // namespace
}  // namespace qat::zoo
