#include "zoo/evaluate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/autograd.h"
#include "core/random.h"
#include "exporters/onnx.h"
#include "exporters/tnn_export.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "graph/quantizable_model.h"
#include "graph/trace.h"
#include "nn/data/data_loader.h"
#include "nn/data/dataset.h"
#include "quant/qconfig.h"
#include "tests/testing/calibration.h"
#include "zoo/small_cnn.h"

namespace qat::zoo {
namespace {

// Rows of logits [5, 3] with their labels, and what count_top_k gives for them:
//   row                label  rank  (classes ahead: larger, or equal at a lower index)
//   [1, 3, 2]          2      1
//   [2, 2, 2]          2      2     (ties: both lower indices are ahead)
//   [0, 5, 5]          2      1     (tie with index 1, which comes first)
//   [4, 1, 0]          0      0
//   [7, 7, 1]          0      0     (tie with index 1, which comes after)
const std::vector<float> kRows = {1, 3, 2, 2, 2, 2, 0, 5, 5, 4, 1, 0, 7, 7, 1};
const std::vector<int64_t> kLabels = {2, 2, 2, 0, 0};

Tensor logits() { return Tensor::from_vector<float>(kRows, {5, 3}); }
Tensor labels() { return Tensor::from_vector<int64_t>(kLabels, {5}); }

TEST(CountTopK, RanksTiesByIndexAsTorchTopk) {
  EXPECT_EQ(count_top_k(logits(), labels(), 1), 2);
  EXPECT_EQ(count_top_k(logits(), labels(), 2), 4);
  EXPECT_EQ(count_top_k(logits(), labels(), 3), 5);
  EXPECT_EQ(count_top_k(logits(), labels(), 7), 5);  // k > K: every row
}

TEST(CountTopK, RejectsBadInputs) {
  EXPECT_THROW(count_top_k(logits(), Tensor::from_vector<int64_t>({0, 0, 3, 0, 0}, {5}), 1), Error);
  EXPECT_THROW(count_top_k(logits(), Tensor::from_vector<int64_t>({0, 0}, {2}), 1), Error);
  EXPECT_THROW(count_top_k(logits().view({15}), labels(), 1), Error);
  EXPECT_THROW(count_top_k(logits(), labels(), 0), Error);
}

// Example i: the image [1, 1, 3] is row i of kRows, the label kLabels[i].
class RowDataset : public nn::data::Dataset {
 public:
  size_t size() const override { return kLabels.size(); }
  nn::data::Example get(size_t i) const override {
    const std::vector<float> row(kRows.begin() + 3 * i, kRows.begin() + 3 * i + 3);
    return {Tensor::from_vector<float>(row, {1, 1, 3}), kLabels[i]};
  }
};

// -log softmax(row)[label], by the formula.
double row_loss(size_t i) {
  const float* row = kRows.data() + 3 * i;
  return std::log(std::exp(double(row[0])) + std::exp(double(row[1])) + std::exp(double(row[2]))) -
         row[kLabels[i]];
}

TEST(Evaluate, GivesTopOneTopFiveAndLossOverUnevenBatches) {
  nn::data::DataLoader loader(std::make_shared<RowDataset>(),
                              nn::data::DataLoaderOptions().batch_size(2));  // 2, 2, 1 images
  const LogitsFunction identity = [](const Tensor& images) {
    return images.view({images.size(0), 3});
  };
  std::vector<std::tuple<int64_t, int64_t, int64_t>> calls;
  const EvalResult all = evaluate(identity, loader, 0, [&](int64_t done, int64_t total, int64_t n) {
    calls.emplace_back(done, total, n);
  });
  EXPECT_EQ(all.images, 5);
  EXPECT_DOUBLE_EQ(all.top1, 40.0);   // rows 3 and 4
  EXPECT_DOUBLE_EQ(all.top5, 100.0);  // k = min(5, 3 classes)
  double loss = 0;
  for (size_t i = 0; i < 5; ++i) loss += row_loss(i);
  EXPECT_NEAR(all.loss, loss / 5, 1e-12);
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> expected = {
      {1, 3, 2}, {2, 3, 4}, {3, 3, 5}};
  EXPECT_EQ(calls, expected);

  // max_batches: the first two batches, from the start of epoch 0 again.
  const EvalResult two = evaluate(identity, loader, 2);
  EXPECT_EQ(two.images, 4);
  EXPECT_DOUBLE_EQ(two.top1, 25.0);  // row 3
  EXPECT_NEAR(two.loss, (row_loss(0) + row_loss(1) + row_loss(2) + row_loss(3)) / 4, 1e-12);

  const LogitsFunction wrong = [](const Tensor& images) { return images.view({-1}); };
  EXPECT_THROW(evaluate(wrong, loader), Error);
}

// 12 synthetic 1x28x28 images of 10 classes in batches of 5, 5 and 2 (the last one smaller).
std::unique_ptr<nn::data::DataLoader> synthetic_loader() {
  return std::make_unique<nn::data::DataLoader>(
      std::make_shared<nn::data::SyntheticDataset>(12, Shape{1, 28, 28}, 10, 5),
      nn::data::DataLoaderOptions().batch_size(5));
}

const Shape kInput = {1, 1, 28, 28};

std::shared_ptr<graph::QuantizableModel> calibrated_small_cnn(const std::string& target) {
  manual_seed(1);
  return testing::calibrated(std::make_shared<SmallCnn>(), kInput, quant::QConfig::preset(target),
                             2);
}

void expect_equal(const EvalResult& a, const EvalResult& b) {
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.top1, b.top1);
  EXPECT_EQ(a.top5, b.top5);
  EXPECT_EQ(a.loss, b.loss);
}

TEST(EvaluateModule, RunsInEvalModeAndRestoresTheTrainingFlag) {
  manual_seed(2);
  SmallCnn model;
  const auto loader = synthetic_loader();
  {
    // Train-mode BN statistics would differ from the running ones the eval forward uses.
    model.train();
    NoGradGuard no_grad;
    model.forward(testing::random_input({8, 1, 28, 28}, 3));
  }
  model.train();
  const EvalResult from_train = evaluate_module(model, *loader);
  EXPECT_TRUE(model.is_training());
  model.eval();
  const EvalResult from_eval = evaluate_module(model, *loader);
  EXPECT_FALSE(model.is_training());
  EXPECT_EQ(from_eval.images, 12);
  expect_equal(from_train, from_eval);
  const EvalResult by_hand =
      evaluate([&model](const Tensor& x) { return model.forward(x); }, *loader);
  expect_equal(from_eval, by_hand);
}

// tnn: the integer simulator equals the fake-quant eval forward bit for bit (without TNN's
// load-time fusion, which the fake-quant graph does not make).
TEST(EvaluateIntModel, EqualsTheFakeQuantEvalForTnn) {
  const auto qm = calibrated_small_cnn("tnn");
  const auto loader = synthetic_loader();
  graph::SimulateOptions options;
  options.apply_tnn_load_fusions = false;
  const EvalResult int8 = evaluate_int_model(graph::convert(*qm), options, *loader);
  EXPECT_EQ(int8.images, 12);
  expect_equal(int8, evaluate_module(*qm, *loader));
}

std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

// ORT is required here: .bazelrc passes $QAT_ORT_DIR and tools/test.sh installs it there.
TEST(EvaluateOnnxRuntime, EqualsSimulateInOrtOrderForTensorrt) {
  std::string reason;
  ASSERT_TRUE(onnx_runtime_available(&reason))
      << "this test runs ONNX Runtime for Node from $QAT_ORT_DIR: " << reason;
  const graph::IntModel int_model = graph::convert(*calibrated_small_cnn("tensorrt"));
  const std::string onnx = temp_path("small_cnn_tensorrt.onnx");
  exporters::export_onnx(int_model, onnx);
  const auto loader = synthetic_loader();
  graph::SimulateOptions options;
  options.accumulation = graph::Accumulation::kOnnxRuntime;
  int64_t calls = 0;
  const EvalResult ort =
      evaluate_onnx_runtime(onnx, *loader, 0, [&](int64_t done, int64_t total, int64_t) {
        EXPECT_EQ(done, ++calls);
        EXPECT_EQ(total, 3);
      });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(ort.images, 12);
  expect_equal(ort, evaluate_int_model(int_model, options, *loader));
  EXPECT_EQ(evaluate_onnx_runtime(onnx, *loader, 1).images, 5);
  EXPECT_THROW(evaluate_onnx_runtime(temp_path("missing.onnx"), *loader), Error);
}

TEST(EvaluateOnnxRuntime, SaysHowToInstallItWhenMissing) {
  const char* saved = std::getenv("QAT_ORT_DIR");
  const std::string previous = saved != nullptr ? saved : "";
  ::setenv("QAT_ORT_DIR", temp_path("no_ort_here").c_str(), 1);
  std::string reason;
  EXPECT_FALSE(onnx_runtime_available(&reason));
  EXPECT_NE(reason.find("npm install onnxruntime-node --onnxruntime-node-install=skip"),
            std::string::npos)
      << reason;
  const auto loader = synthetic_loader();
  EXPECT_THROW(evaluate_onnx_runtime(temp_path("any.onnx"), *loader), Error);
  if (saved != nullptr) {
    ::setenv("QAT_ORT_DIR", previous.c_str(), 1);
  } else {
    ::unsetenv("QAT_ORT_DIR");
  }
}

TEST(EvaluateTnnFiles, Int8EqualsTheIntModelAndFloatTheModule) {
  const graph::IntModel int_model = graph::convert(*calibrated_small_cnn("tnn"));
  const std::string int8_prefix = temp_path("small_cnn_tnn_int8");
  exporters::export_tnn(int_model, int8_prefix);
  const auto loader = synthetic_loader();
  expect_equal(evaluate_tnn_files(int8_prefix, *loader),
               evaluate_int_model(int_model, graph::SimulateOptions(), *loader));

  manual_seed(4);
  const auto model = std::make_shared<SmallCnn>();
  model->eval();
  const std::string float_prefix = temp_path("small_cnn_float");
  exporters::export_tnn_float(graph::trace(*model, kInput), float_prefix);
  const EvalResult tnn = evaluate_tnn_files(float_prefix, *loader);
  const EvalResult module = evaluate_module(*model, *loader);
  EXPECT_EQ(tnn.images, 12);
  EXPECT_NEAR(tnn.loss, module.loss, 1e-4 * module.loss);  // float32 sums in another order
}

}  // namespace
}  // namespace qat::zoo
