#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "graph/convert.h"
#include "graph/executor.h"
#include "graph/int_model.h"
#include "graph/int_model_test_util.h"
#include "graph/quantizable_model.h"
#include "graph/test_models.h"
#include "quant/conv_bn_relu.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"
#include "tests/testing/calibration.h"
#include "zoo/registry.h"

// convert + simulate for the tnn target: the int8 kernels of tnn_format.md §3.4 on hand-built
// integer models, and the integer simulation against the fake-quant eval forward.
namespace qat::graph {
namespace {

// ----- The kernels on hand-built integer models -----

using test_util::make_node;

IntNode quantize_node(const std::string& name, Value input, const Shape& shape, float scale) {
  IntNode node = make_node(name, "quantize", {input}, shape, scale);
  node.qparams = testing::tnn_per_tensor(scale);
  return node;
}

// input (float `shape`) -> quantize (scale 1) -> `middle` -> output.
IntModel chain(const Shape& shape, IntNode middle) {
  IntModel model;
  model.target = quant::Target::kTNN;
  model.nodes.push_back(make_node("input", "input", {}, shape, std::nullopt));
  model.nodes.push_back(quantize_node("q", {0, 0}, shape, 1.0f));
  middle.inputs = {{1, 0}};
  model.nodes.push_back(std::move(middle));
  IntNode output = make_node("output", "output", {{2, 0}}, {}, std::nullopt);
  output.output_scales.clear();
  model.nodes.push_back(std::move(output));
  return model;
}

TEST(Float2Int8Test, RoundsHalfAwayFromZeroAndSaturates) {
  EXPECT_EQ(float2int8(0.5f), 1);
  EXPECT_EQ(float2int8(-0.5f), -1);
  // In float32, 0.49999997 + 0.5 rounds to 1, so the largest float below 0.5 also goes to 1
  // (TNN adds and truncates in float32 as well).
  EXPECT_EQ(float2int8(0.49999997f), 1);
  EXPECT_EQ(float2int8(0.4999999f), 0);
  EXPECT_EQ(float2int8(1.5f), 2);
  EXPECT_EQ(float2int8(2.5f), 3);
  EXPECT_EQ(float2int8(-2.5f), -3);
  EXPECT_EQ(float2int8(126.5f), 127);
  EXPECT_EQ(float2int8(127.5f), 127);
  EXPECT_EQ(float2int8(-127.5f), -128);
  EXPECT_EQ(float2int8(-128.5f), -128);
  EXPECT_EQ(float2int8(1e9f), 127);
  EXPECT_EQ(float2int8(-1e9f), -128);
}

TEST(TnnSimulateTest, AveragePoolTruncatesTowardZero) {
  IntNode pool = make_node("pool", "adaptive_avg_pool2d", {}, {2, 1, 1, 1}, 1.0f);
  pool.attrs = {{"output_size", std::vector<int64_t>{1, 1}}};
  const IntModel model = chain({2, 1, 2, 2}, pool);
  // Sums -7 and 7 over 4 elements: -1.75 -> -1, 1.75 -> 1 (rounding would give -2, 2).
  const Tensor x = Tensor::from_vector<float>({-2, -2, -2, -1, 2, 2, 2, 1}, {2, 1, 2, 2});
  EXPECT_EQ(simulate(model, x).to_vector<float>(), (std::vector<float>{-1, 1}));

  IntNode avg = make_node("pool", "avg_pool2d", {}, {1, 1, 1, 2}, 1.0f);
  avg.attrs = {{"kernel", std::vector<int64_t>{2, 2}},
               {"stride", std::vector<int64_t>{2, 2}},
               {"padding", std::vector<int64_t>{0, 0}},
               {"ceil_mode", false},
               {"count_include_pad", true}};
  const Tensor y = Tensor::from_vector<float>({-2, -2, 3, 3, -2, -1, 3, 2}, {1, 1, 2, 4});
  EXPECT_EQ(simulate(chain({1, 1, 2, 4}, avg), y).to_vector<float>(), (std::vector<float>{-1, 2}));
}

// A 1 -> 1 linear layer with weight code 1, weight scale 1 and bias 0: v = q_in / s_out.
IntNode unit_linear(quant::FusedActivation activation, float s_out) {
  IntNode fc = make_node("fc", "linear", {}, {3, 1}, s_out);
  IntLayer layer;
  layer.weight = Tensor::from_vector<int8_t>({1}, {1, 1});
  layer.weight_qparams = testing::tnn_per_tensor(1.0f);
  layer.weight_qparams.axis = 0;
  layer.accumulator_scale = Tensor::from_vector<float>({1.0f}, {1});
  layer.activation = activation;
  layer.output = testing::tnn_per_tensor(s_out);
  fc.layer = std::move(layer);
  return fc;
}

TEST(TnnSimulateTest, ReLU6ClampsAtFloat2Int8OfSixOverScale) {
  // s_out 4: 6 / 4 = 1.5 rounds to 2, so ReLU6 lets 2 * 4 = 8 through.
  const Tensor x = Tensor::from_vector<float>({100, 5, -9}, {3, 1});
  EXPECT_EQ(simulate(chain({3, 1}, unit_linear(quant::FusedActivation::kReLU6, 4.0f)), x)
                .to_vector<float>(),
            (std::vector<float>{8, 4, 0}));
  // ReLU: max(v, 0) then float2int8, no upper clamp; none: plain float2int8.
  EXPECT_EQ(simulate(chain({3, 1}, unit_linear(quant::FusedActivation::kReLU, 4.0f)), x)
                .to_vector<float>(),
            (std::vector<float>{100, 4, 0}));
  EXPECT_EQ(simulate(chain({3, 1}, unit_linear(quant::FusedActivation::kNone, 4.0f)), x)
                .to_vector<float>(),
            (std::vector<float>{100, 4, -8}));
}

TEST(TnnSimulateTest, AddRequantizesBothInputs) {
  // a = float2int8(x / 0.5), b = float2int8(x / 0.25), out = float2int8((a/2 + b/4) / 0.5).
  IntModel model;
  model.target = quant::Target::kTNN;
  const Shape shape = {4};
  model.nodes.push_back(make_node("input", "input", {}, shape, std::nullopt));
  model.nodes.push_back(quantize_node("a", {0, 0}, shape, 0.5f));
  model.nodes.push_back(quantize_node("b", {0, 0}, shape, 0.25f));
  IntNode add = make_node("add", "add", {{1, 0}, {2, 0}}, shape, 0.5f);
  add.input_scales = {0.5f, 0.25f};
  model.nodes.push_back(std::move(add));
  IntNode output = make_node("output", "output", {{3, 0}}, {}, std::nullopt);
  output.output_scales.clear();
  model.nodes.push_back(std::move(output));
  // 0.625: a = 1 (1.25 -> 1), b = 3 (2.5 -> 3), (0.5 + 0.75) / 0.5 = 2.5 -> 3.
  // 100: a = b = 127 (saturated), (63.5 + 31.75) / 0.5 = 190.5 -> 127.
  const Tensor x = Tensor::from_vector<float>({0.625f, -0.625f, 10.0f, 100.0f}, shape);
  EXPECT_EQ(simulate(model, x).to_vector<float>(), (std::vector<float>{1.5f, -1.5f, 20.0f, 63.5f}));
}

// ----- Fake-quant eval against the integer simulation -----

using testing::random_input;

// A tnn QuantizableModel of `model` calibrated with three train-mode forwards.
std::shared_ptr<QuantizableModel> calibrated(std::shared_ptr<nn::Module> model,
                                             const Shape& shape) {
  return testing::calibrated(std::move(model), shape, quant::QConfig::preset("tnn"),
                             /*batches=*/3);
}

// Differences between reference values (the fake-quant forward) and simulated ones, in LSBs
// of the blob scale.
struct Agreement {
  int64_t elements = 0;
  int64_t mismatches = 0;
  double max_lsb = 0.0;

  void add(const Agreement& other) {
    elements += other.elements;
    mismatches += other.mismatches;
    max_lsb = std::max(max_lsb, other.max_lsb);
  }
};

Agreement compare(const Tensor& reference, const Tensor& simulated, float scale) {
  EXPECT_EQ(reference.shape(), simulated.shape());
  const std::vector<float> a = reference.to_vector<float>();
  const std::vector<float> b = simulated.to_vector<float>();
  Agreement out;
  out.elements = static_cast<int64_t>(a.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] == b[i]) continue;
    ++out.mismatches;
    out.max_lsb = std::max(out.max_lsb, std::fabs(static_cast<double>(a[i]) - b[i]) / scale);
  }
  return out;
}

std::string describe(const Agreement& a) {
  char buffer[96];
  std::snprintf(buffer, sizeof(buffer), "%lld / %lld differ, max %.2f LSB",
                static_cast<long long>(a.mismatches), static_cast<long long>(a.elements),
                a.max_lsb);
  return buffer;
}

Tensor dequantize(const Tensor& codes, float scale) {
  std::vector<float> values;
  for (const int8_t q : codes.to_vector<int8_t>()) values.push_back(static_cast<float>(q) * scale);
  return Tensor::from_vector(values, codes.shape());
}

Tensor quantize(const Tensor& x, float scale) {
  std::vector<int8_t> codes;
  for (const float v : x.to_vector<float>()) codes.push_back(float2int8(v / scale));
  return Tensor::from_vector(codes, x.shape());
}

// Every node's outputs in the fake-quant eval forward of the prepared graph.
std::vector<std::vector<Tensor>> fake_quant_values(const Graph& graph, const Tensor& input) {
  std::vector<std::vector<Tensor>> values(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    std::vector<Tensor> in;
    for (const Value& v : node.inputs) in.push_back(values[v.node].at(v.output));
    if (node.kind == NodeKind::kInput) {
      values[i] = {input};
    } else if (node.kind == NodeKind::kModule) {
      values[i] = {node.module->forward(in.at(0))};
    } else if (node.kind == NodeKind::kFunction) {
      values[i] = run_function(node.op, in, node.attrs);
    }
  }
  return values;
}

// The fake-quant value of int8 blob (node i, output 0) of `model`: for a requantizing add /
// cat, the output of the quantizer that reads it.
const Tensor& reference_value(const IntModel& model, const std::vector<std::vector<Tensor>>& fq,
                              int i) {
  if (!model.nodes[i].input_scales.empty()) {
    for (size_t j = i + 1; j < model.nodes.size(); ++j)
      if (model.nodes[j].op == "quantize" && model.nodes[j].inputs[0] == Value{i, 0})
        return fq[j][0];
  }
  return fq[i][0];
}

// Each int8 kernel of the simulation checked alone: node i runs on the fake-quant forward's
// values of the nodes before it (int8 blobs as their codes), and its output is compared with
// the fake-quant value of its blob. Per kind of node.
struct LocalAgreement {
  Agreement layers;      // conv / linear
  Agreement averages;    // average pools
  Agreement fused_adds;  // adds with a fused 1x1 conv (load fusions on)
  Agreement others;      // quantize, add, cat, relu, max pool
};

LocalAgreement local_agreement(const QuantizableModel& qm, const IntModel& model,
                               const Tensor& input, const SimulateOptions& options) {
  const std::vector<std::vector<Tensor>> fq = fake_quant_values(qm.graph(), input);
  std::vector<std::vector<Tensor>> forced = fq;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const IntNode& node = model.nodes[i];
    if (!node.output_scales.empty() && node.output_scales[0]) {
      forced[i][0] =
          quantize(reference_value(model, fq, static_cast<int>(i)), *node.output_scales[0]);
    }
  }
  const std::vector<int> fused_conv = tnn_load_fusions(model);
  LocalAgreement out;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const IntNode& node = model.nodes[i];
    if (node.op == "input" || node.output_scales.empty() || !node.output_scales[0]) continue;
    const float scale = *node.output_scales[0];
    const Tensor simulated =
        simulate_tnn_node(model, static_cast<int>(i), forced, input, options).at(0);
    const Agreement local = compare(reference_value(model, fq, static_cast<int>(i)),
                                    dequantize(simulated, scale), scale);
    if (node.layer) {
      out.layers.add(local);
    } else if (node.op == "avg_pool2d" || node.op == "adaptive_avg_pool2d") {
      out.averages.add(local);
    } else if (options.apply_tnn_load_fusions && fused_conv[i] >= 0) {
      out.fused_adds.add(local);
    } else {
      out.others.add(local);
    }
  }
  return out;
}

// The scale of the blob the output node reads.
float output_scale(const IntModel& model) {
  const IntNode& output = model.nodes.back();
  const Value v = output.inputs.at(0);
  return model.nodes[v.node].output_scales.at(v.output).value();
}

struct Case {
  std::string name;
  Shape shape;
};

std::shared_ptr<nn::Module> make_model(const std::string& name) {
  if (name == "tiny") return std::make_shared<test_models::TinyNet>();
  zoo::ModelConfig config;
  config.name = name;
  if (name == "googlenet") config.aux_logits = false;
  config.small_input = true;
  config.num_classes = 10;
  return zoo::create_model(config);
}

// |a - b| / s of two values on one grid is a whole number only up to float32 rounding.
constexpr double kLsbSlack = 1e-4;

class TnnAgreementTest : public ::testing::TestWithParam<Case> {};

// The fake-quant eval runs TNN's int8 arithmetic (QatModule's tnn kernel: exact int32 sums
// and TNN's requantization; Int8AveragePool's truncation), so without the load fusions the
// simulation equals it bit for bit, kernel by kernel and at the output. With them, only the
// fused 1x1 conv + adds differ (one rounding instead of two, tnn_format.md §3.5): counted,
// and at most 1 LSB each on the fake-quant inputs; the output difference they cause downstream
// is reported.
TEST_P(TnnAgreementTest, SimulationMatchesFakeQuantEval) {
  const Case& c = GetParam();
  const std::shared_ptr<QuantizableModel> qm = calibrated(make_model(c.name), c.shape);
  const IntModel model = convert(*qm);
  ASSERT_EQ(model.target, quant::Target::kTNN);
  const Tensor x = random_input(c.shape, 21);
  NoGradGuard no_grad;
  SimulateOptions separate;
  separate.apply_tnn_load_fusions = false;
  const std::vector<int> fused_conv = tnn_load_fusions(model);
  const auto fusions =
      std::count_if(fused_conv.begin(), fused_conv.end(), [](int c) { return c >= 0; });

  for (const SimulateOptions& options : {separate, SimulateOptions()}) {
    const char* mode = options.apply_tnn_load_fusions ? "fusions on" : "fusions off";
    SCOPED_TRACE(mode);
    const LocalAgreement local = local_agreement(*qm, model, x, options);
    const Agreement end_to_end =
        compare(qm->forward(x), simulate(model, x, options), output_scale(model));
    std::printf(
        "[tnn %s, %s, %lld load fusion(s)] per kernel: conv/linear %s; average pools %s; "
        "fused adds %s; others %s. Output: %s\n",
        c.name.c_str(), mode, static_cast<long long>(fusions), describe(local.layers).c_str(),
        describe(local.averages).c_str(), describe(local.fused_adds).c_str(),
        describe(local.others).c_str(), describe(end_to_end).c_str());
    EXPECT_EQ(local.layers.mismatches, 0);
    EXPECT_EQ(local.averages.mismatches, 0);
    EXPECT_EQ(local.others.mismatches, 0);
    EXPECT_LE(local.fused_adds.max_lsb, 1.0 + kLsbSlack);
    if (!options.apply_tnn_load_fusions || fusions == 0) {
      EXPECT_EQ(end_to_end.mismatches, 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TnnAgreementTest,
                         ::testing::Values(Case{"tiny", {4, 1, 8, 8}},
                                           Case{"resnet18", {4, 3, 32, 32}},
                                           Case{"resnet34", {2, 3, 32, 32}},
                                           Case{"resnet50", {2, 3, 32, 32}},
                                           Case{"mobilenet_v2", {4, 3, 32, 32}},
                                           Case{"shufflenet_v2_x0_5", {4, 3, 32, 32}},
                                           Case{"shufflenet_v2_x1_0", {2, 3, 32, 32}},
                                           Case{"googlenet", {2, 3, 32, 32}}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace qat::graph
