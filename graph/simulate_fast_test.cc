#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "graph/int_model_test_util.h"
#include "graph/quantizable_model.h"
#include "tests/testing/calibration.h"
#include "zoo/registry.h"

// The tnn simulate() fast path (exact float32 conv / GEMM sums, plane-wise requantization)
// against its reference twin (SimulateOptions::reference_kernels: the plain integer loops):
// every blob bit for bit, on zoo models and on layers past the 2^24 bound of exact float32
// sums (the digit split and the fallback to the loops).
namespace qat::graph {
namespace {

SimulateOptions reference_options(bool fusions) {
  SimulateOptions options;
  options.apply_tnn_load_fusions = fusions;
  options.reference_kernels = true;
  return options;
}

SimulateOptions fast_options(bool fusions) {
  SimulateOptions options;
  options.apply_tnn_load_fusions = fusions;
  return options;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// Runs `model` node by node with the fast and the reference kernels, load fusions off and on,
// and expects every output of every node identical; then the same of simulate().
void expect_fast_equals_reference(const IntModel& model, const Tensor& x) {
  for (const bool fusions : {false, true}) {
    SCOPED_TRACE(fusions ? "fusions on" : "fusions off");
    std::vector<std::vector<Tensor>> fast(model.nodes.size()), reference(model.nodes.size());
    for (size_t i = 0; i < model.nodes.size(); ++i) {
      const int index = static_cast<int>(i);
      fast[i] = simulate_tnn_node(model, index, fast, x, fast_options(fusions));
      reference[i] = simulate_tnn_node(model, index, reference, x, reference_options(fusions));
      ASSERT_EQ(fast[i].size(), reference[i].size());
      for (size_t k = 0; k < fast[i].size(); ++k) {
        ASSERT_TRUE(same_bytes(fast[i][k], reference[i][k]))
            << "node '" << model.nodes[i].name << "' (" << model.nodes[i].op << ") output " << k;
      }
    }
  }
  EXPECT_TRUE(same_bytes(simulate(model, x), simulate(model, x, reference_options(true))));
}

struct Case {
  std::string name;
  Shape shape;
};

class SimulateFastZooTest : public ::testing::TestWithParam<Case> {};

TEST_P(SimulateFastZooTest, EveryBlobEqualsReference) {
  const Case& c = GetParam();
  zoo::ModelConfig config;
  config.name = c.name;
  if (c.name != "small_cnn") {
    config.small_input = true;
    config.num_classes = 10;
  }
  if (c.name == "googlenet") config.aux_logits = false;
  const std::shared_ptr<QuantizableModel> qm = testing::calibrated(
      zoo::create_model(config), c.shape, quant::QConfig::preset("tnn"), /*batches=*/2);
  const IntModel model = convert(*qm);
  ASSERT_EQ(model.target, quant::Target::kTNN);
  NoGradGuard no_grad;
  expect_fast_equals_reference(model, testing::random_input(c.shape, 5));
}

INSTANTIATE_TEST_SUITE_P(Models, SimulateFastZooTest,
                         ::testing::Values(Case{"small_cnn", {4, 1, 28, 28}},
                                           Case{"resnet18", {2, 3, 32, 32}},
                                           Case{"mobilenet_v2", {2, 3, 32, 32}},
                                           Case{"shufflenet_v2_x0_5", {2, 3, 32, 32}},
                                           Case{"googlenet", {1, 3, 32, 32}}),
                         [](const auto& info) { return info.param.name; });

// ----- Hand-built layers past the 2^24 bound -----

using test_util::make_node;

// input (float [N, ...]) -> quantize (scale 1) -> `layer` -> output.
IntModel chain(const Shape& input_shape, IntNode layer) {
  IntModel model;
  model.target = quant::Target::kTNN;
  model.nodes.push_back(make_node("input", "input", {}, input_shape, std::nullopt));
  IntNode quantize = make_node("q", "quantize", {{0, 0}}, input_shape, 1.0f);
  quantize.qparams = testing::tnn_per_tensor(1.0f);
  model.nodes.push_back(std::move(quantize));
  layer.inputs = {{1, 0}};
  model.nodes.push_back(std::move(layer));
  IntNode output = make_node("output", "output", {{2, 0}}, {}, std::nullopt);
  output.output_scales.clear();
  model.nodes.push_back(std::move(output));
  return model;
}

// An int8 layer with weight codes `codes` of `weight_shape`, accumulator scale s_acc, output
// scale 1 and integer bias `bias` on every channel.
IntLayer make_layer(const std::vector<int8_t>& codes, const Shape& weight_shape, float s_acc,
                    int32_t bias) {
  const int64_t channels = weight_shape[0];
  IntLayer layer;
  layer.weight = Tensor::from_vector(codes, weight_shape);
  layer.weight_qparams = testing::tnn_per_tensor(1.0f);
  layer.weight_qparams.scale = Tensor::from_vector(std::vector<float>(channels, 1.0f), {channels});
  layer.weight_qparams.zero_point =
      Tensor::from_vector(std::vector<int32_t>(channels, 0), {channels});
  layer.weight_qparams.axis = 0;
  layer.bias_int32 = Tensor::from_vector(std::vector<int32_t>(channels, bias), {channels});
  layer.accumulator_scale = Tensor::from_vector(std::vector<float>(channels, s_acc), {channels});
  layer.output = testing::tnn_per_tensor(1.0f);
  return layer;
}

// A 1 x k linear layer whose sum has partial sums near 127 * 127 * k / 2 but ends at
// 5 * 7 = 35: inputs 127 but the last (5), weights +127 on the first half, -127 on the second,
// 7 last. max|x| * sum|w| is past 2^24; with k = 2001 the digits w = 16 * high + low are each
// within the bound, with k = 20001 high is not and the layer runs the integer loops.
IntModel balanced_linear(int64_t k) {
  const int64_t half = (k - 1) / 2;
  std::vector<int8_t> w(k, 127);
  for (int64_t i = half; i < 2 * half; ++i) w[i] = -127;
  w[k - 1] = 7;
  IntNode fc = make_node("fc", "linear", {}, {1, 1}, 1.0f);
  fc.layer = make_layer(w, {1, k}, 1.0f, -3);
  return chain({1, k}, std::move(fc));
}

TEST(SimulateFastTest, LinearPastTheBoundIsExact) {
  NoGradGuard no_grad;
  for (const int64_t k : {2001, 20001}) {
    SCOPED_TRACE(k);
    std::vector<float> x(k, 127.0f);
    x[k - 1] = 5.0f;
    const Tensor input = Tensor::from_vector(x, {1, k});
    const IntModel model = balanced_linear(k);
    // acc = 35 + bias -3, output scale 1.
    EXPECT_EQ(simulate(model, input).to_vector<float>(), std::vector<float>{32.0f});
    EXPECT_EQ(simulate(model, input, reference_options(true)).to_vector<float>(),
              std::vector<float>{32.0f});
  }
}

// A grouped 2x2 conv (2 groups, no padding) with `group_in` input channels per group on a 2x2
// input of code 127: with m(ic, kw) in [0, 42], w[ic, kh, kw] = m, m on the first half of each
// group's input channels and m, -3m on the second, so that the sum is 0 and partial sums run
// far from it in channel-major and tap-major order alike: every accumulator is the bias, 5.
// Magnitudes spread over [0, 42] on 1200 channels (max|x| * sum|w| is past 2^24, the digit
// split is exact), or near 42 on 8000 (the high digit is past it too: the integer loops).
TEST(SimulateFastTest, GroupedConvPastTheBoundIsExact) {
  NoGradGuard no_grad;
  struct ConvCase {
    int64_t group_in;
    bool large;
  };
  for (const ConvCase& c : {ConvCase{1200, false}, ConvCase{8000, true}}) {
    SCOPED_TRACE(c.group_in);
    const int64_t groups = 2, out_channels = 4, half = c.group_in / 2;
    std::vector<int8_t> w(out_channels * c.group_in * 4);
    for (int64_t oc = 0; oc < out_channels; ++oc) {
      for (int64_t ic = 0; ic < half; ++ic) {
        for (int64_t kw = 0; kw < 2; ++kw) {
          const int64_t i = (oc * half + ic) * 2 + kw;
          const auto m = static_cast<int8_t>(c.large ? 42 - i % 3 : (i * 37 + i / 11) % 43);
          // [oc, ic, kh, kw] is first[2 * kh] and second[2 * kh] of the two halves.
          int8_t* first = &w[(oc * c.group_in + ic) * 4 + kw];
          int8_t* second = &w[(oc * c.group_in + half + ic) * 4 + kw];
          first[0] = first[2] = second[0] = m;
          second[2] = static_cast<int8_t>(-3 * m);
        }
      }
    }
    IntNode conv = make_node("conv", "conv2d", {}, {1, out_channels, 1, 1}, 1.0f);
    conv.attrs = {{"stride", std::vector<int64_t>{1, 1}},
                  {"padding", std::vector<int64_t>{0, 0}},
                  {"dilation", std::vector<int64_t>{1, 1}},
                  {"groups", groups}};
    conv.layer = make_layer(w, {out_channels, c.group_in, 2, 2}, 1.0f, 5);
    const Shape shape = {1, groups * c.group_in, 2, 2};
    const IntModel model = chain(shape, std::move(conv));
    const Tensor x = Tensor::full(shape, 127.0f);
    EXPECT_EQ(simulate(model, x).to_vector<float>(), std::vector<float>(out_channels, 5.0f));
    expect_fast_equals_reference(model, x);
  }
}

}  // namespace
}  // namespace qat::graph
