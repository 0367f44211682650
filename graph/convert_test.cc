#include "graph/convert.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/random.h"
#include "graph/int_model.h"
#include "graph/quantizable_model.h"
#include "tests/testing/calibration.h"
#include "quant/conv_bn_relu.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"
#include "tests/testing/errors.h"
#include "zoo/registry.h"

namespace qat::graph {
namespace {

using qat::testing::error_of;

const Shape kTraceShape = {4, 3, 32, 32};

std::shared_ptr<nn::Module> small_zoo_model(const std::string& name) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = true;
  config.num_classes = 10;
  return zoo::create_model(config);
}

// The QAT life cycle up to deployment: a tensorrt QuantizableModel of zoo model `name`, a few
// calibration forwards in train mode (observers on, BN on batch statistics), then observers
// and BN frozen and eval mode.
std::shared_ptr<QuantizableModel> calibrated(const std::string& name) {
  auto qm = std::make_shared<QuantizableModel>(small_zoo_model(name), kTraceShape,
                                               quant::QConfig::preset("tensorrt"));
  qm->train();
  {
    NoGradGuard no_grad;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      qm->forward(qat::testing::random_input({4, 3, 32, 32}, seed));
    }
  }
  quant::disable_observer(*qm);
  quant::freeze_bn_stats(*qm);
  qm->eval();
  return qm;
}

struct Agreement {
  int64_t mismatches = 0;  // elements whose float32 bits differ
  double max_abs_diff = 0.0;
};

Agreement compare(const Tensor& expected, const Tensor& actual) {
  EXPECT_EQ(expected.shape(), actual.shape());
  const std::vector<float> a = expected.to_vector<float>();
  const std::vector<float> b = actual.to_vector<float>();
  Agreement out;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] == b[i]) continue;
    ++out.mismatches;
    out.max_abs_diff = std::max(out.max_abs_diff, static_cast<double>(std::fabs(a[i] - b[i])));
  }
  return out;
}

// The fake-quant eval forward of `qm` and simulate(convert(qm)) on a batch of `batch`.
Agreement fake_quant_vs_simulated(QuantizableModel& qm, int64_t batch, uint64_t seed) {
  const Tensor x = qat::testing::random_input({batch, 3, 32, 32}, seed);
  NoGradGuard no_grad;
  const Tensor expected = qm.forward(x);
  const Tensor actual = simulate(convert(qm), x);
  return compare(expected, actual);
}

class ConvertZooTest : public ::testing::TestWithParam<std::string> {};

// With running statistics ConvBn2d computes the folded conv conv(x, fq(W'), b'), which is what
// the converted model runs, so the two agree bit for bit at any batch size.
TEST_P(ConvertZooTest, SimulationEqualsFakeQuantEval) {
  const std::shared_ptr<QuantizableModel> qm = calibrated(GetParam());
  const Agreement one = fake_quant_vs_simulated(*qm, 1, 11);
  EXPECT_EQ(one.mismatches, 0) << "batch 1, max |diff| " << one.max_abs_diff;
  const Agreement four = fake_quant_vs_simulated(*qm, 4, 12);
  EXPECT_EQ(four.mismatches, 0) << "batch 4, max |diff| " << four.max_abs_diff;
}

TEST_P(ConvertZooTest, WeightsAreTheFrozenFakeQuantizedFoldedWeights) {
  const std::shared_ptr<QuantizableModel> qm = calibrated(GetParam());
  const IntModel int_model = convert(*qm);
  const Graph& graph = qm->graph();
  ASSERT_EQ(int_model.nodes.size(), graph.nodes.size());
  int layers = 0, quantizers = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    const IntNode& converted = int_model.nodes[i];
    SCOPED_TRACE(node.name);
    EXPECT_EQ(converted.name, node.name);
    EXPECT_EQ(converted.inputs, node.inputs);
    if (const auto* fq = dynamic_cast<const quant::FakeQuantize*>(node.module.get())) {
      ++quantizers;
      ASSERT_EQ(converted.op, "quantize");
      EXPECT_EQ(converted.qparams->scale.to_vector<float>(), fq->scale().to_vector<float>());
      EXPECT_EQ(converted.qparams->zero_point.to_vector<int32_t>(), std::vector<int32_t>{0});
      EXPECT_EQ(converted.qparams->quant_min, -128);
      EXPECT_EQ(converted.qparams->quant_max, 127);
      continue;
    }
    const auto* module = dynamic_cast<const quant::QatModule*>(node.module.get());
    if (module == nullptr) continue;
    ++layers;
    ASSERT_TRUE(converted.layer.has_value());
    const IntLayer& layer = *converted.layer;
    ASSERT_EQ(layer.weight.dtype(), DType::kInt8);
    const std::vector<int8_t> codes = layer.weight.to_vector<int8_t>();
    EXPECT_GE(*std::min_element(codes.begin(), codes.end()), -127);
    EXPECT_LE(*std::max_element(codes.begin(), codes.end()), 127);

    const quant::FoldedWeights folded = module->fold();
    const Tensor fake_quantized =
        quant::fake_quantize(folded.weight, module->weight_fake_quant()->qparams());
    EXPECT_EQ(layer.dequantized_weight().to_vector<float>(), fake_quantized.to_vector<float>());
    EXPECT_EQ(layer.bias.to_vector<float>(), folded.bias.to_vector<float>());
    // tensorrt quantizes every conv / linear input, so each has an int32 bias.
    ASSERT_TRUE(layer.bias_int32.defined());
    EXPECT_EQ(layer.bias_int32.dtype(), DType::kInt32);
    EXPECT_FALSE(layer.output.has_value());  // tensorrt leaves conv / linear outputs float
  }
  EXPECT_GT(layers, 0);
  EXPECT_GT(quantizers, 0);
}

INSTANTIATE_TEST_SUITE_P(Zoo, ConvertZooTest, ::testing::Values("resnet18", "mobilenet_v2"));

TEST(ConvertTest, Int32BiasIsTheBiasOnTheAccumulatorGrid) {
  const std::shared_ptr<QuantizableModel> qm = calibrated("resnet18");
  const IntModel int_model = convert(*qm);
  const IntNode& fc = int_model.node("fc");
  ASSERT_EQ(fc.op, "linear");
  const float s_in = int_model.nodes[fc.inputs[0].node].qparams->scale.data<float>()[0];
  const std::vector<float> bias = fc.layer->bias.to_vector<float>();
  const std::vector<float> s_w = fc.layer->weight_qparams.scale.to_vector<float>();
  const std::vector<int32_t> q = fc.layer->bias_int32.to_vector<int32_t>();
  for (size_t c = 0; c < bias.size(); ++c)
    EXPECT_EQ(q[c], static_cast<int32_t>(std::nearbyint(bias[c] / (s_in * s_w[c])))) << c;
}

TEST(ConvertTest, ErrorsNameTheNode) {
  const auto traced = QuantizableModel::manual(small_zoo_model("resnet18"), kTraceShape);
  const std::string unprepared = error_of([&] { convert(*traced); });
  EXPECT_NE(unprepared.find("node 'conv1' (Conv2d)"), std::string::npos) << unprepared;

  const QuantizableModel uncalibrated(small_zoo_model("resnet18"), kTraceShape,
                                      quant::QConfig::preset("tensorrt"));
  const std::string never_observed = error_of([&] { convert(uncalibrated); });
  EXPECT_NE(never_observed.find("node 'input.activation_post_process' (FakeQuantize)"),
            std::string::npos)
      << never_observed;
  EXPECT_NE(never_observed.find("never observed data"), std::string::npos) << never_observed;

  const QuantizableModel tnn(small_zoo_model("resnet18"), kTraceShape,
                             quant::QConfig::preset("tnn"));
  EXPECT_NE(error_of([&] { convert(tnn); }).find("never observed data"), std::string::npos);
}

}  // namespace
}  // namespace qat::graph
