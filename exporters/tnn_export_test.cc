#include "exporters/tnn_export.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"
#include "exporters/tnn_net.h"
#include "exporters/tnn_reader.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "graph/quantizable_model.h"
#include "graph/trace.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/pooling.h"
#include "quant/conv_bn_relu.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"
#include "tests/testing/calibration.h"
#include "tests/testing/deterministic_weights.h"
#include "tests/testing/golden_text.h"
#include "zoo/registry.h"

namespace qat::exporters {
namespace {

using graph::IntModel;
using graph::IntNode;
using graph::Value;

const Shape kInputShape = {2, 3, 32, 32};

using testing::random_input;

std::shared_ptr<nn::Module> zoo_model(const std::string& name) {
  zoo::ModelConfig config;
  config.name = name;
  config.small_input = true;
  config.num_classes = 10;
  if (name == "googlenet") {
    config.aux_logits = false;
    config.transform_input = false;
  }
  std::shared_ptr<nn::Module> model = zoo::create_model(config);
  testing::fill_deterministic(*model);
  return model;
}

// Prepared for tnn, two calibration forwards, converted.
IntModel calibrated_int_model(std::shared_ptr<nn::Module> model, const Shape& shape) {
  return graph::convert(
      *testing::calibrated(std::move(model), shape, quant::QConfig::preset("tnn"), /*batches=*/2));
}

// One conversion per zoo model, shared by the tests.
const IntModel& zoo_int_model(const std::string& name) {
  static std::map<std::string, IntModel> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, calibrated_int_model(zoo_model(name), kInputShape)).first;
  return it->second;
}

std::string temp_prefix(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

// Writes `net` to files and reads them back, checking that the bytes survive a second round.
TnnNet write_and_read(const TnnNet& net, const std::string& name) {
  const std::string prefix = temp_prefix(name);
  write_tnn(net, prefix);
  const TnnNet read = read_tnn(prefix);
  EXPECT_EQ(tnn_proto_text(read), tnn_proto_text(net));
  EXPECT_EQ(tnn_model_bytes(read), tnn_model_bytes(net));
  return read;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// ----- IntModel comparison -----

bool dropped_by_export(const IntNode& n) { return n.op == "quantize" || n.op == "dropout"; }

// What a node input reads, in terms that survive the export: the producer's name and output,
// through left-out dropouts; a quantizer as its scale and what it quantizes.
std::string describe(const IntModel& m, Value v) {
  while (m.nodes[v.node].op == "dropout") v = m.nodes[v.node].inputs.at(0);
  const IntNode& n = m.nodes[v.node];
  if (n.op == "quantize") {
    char scale[32];
    std::snprintf(scale, sizeof(scale), "%a", n.qparams->scale.to_vector<float>()[0]);
    return std::string("quantize(") + scale + ", " + describe(m, n.inputs.at(0)) + ")";
  }
  return n.name + ":" + std::to_string(v.output);
}

void expect_same_qparams(const quant::QParams& a, const quant::QParams& b) {
  EXPECT_TRUE(same_bits(a.scale, b.scale));
  EXPECT_EQ(a.zero_point.to_vector<int32_t>(), b.zero_point.to_vector<int32_t>());
  EXPECT_EQ(a.axis, b.axis);
  EXPECT_EQ(a.quant_min, b.quant_min);
  EXPECT_EQ(a.quant_max, b.quant_max);
  EXPECT_EQ(a.rounding, b.rounding);
}

// What the TNN files hold is equal bit for bit; what they do not is equal as far as it can be
// recovered (the weight scales within one float32 ulp, the float bias within half an LSB).
void expect_same_layer(const graph::IntLayer& a, const graph::IntLayer& b, float s_in) {
  EXPECT_TRUE(same_bits(a.weight, b.weight));
  // The exporter writes a zero int32 bias for a layer without one (tnn_format.md §7).
  const Tensor bias_int32 =
      a.bias_int32.defined() ? a.bias_int32 : Tensor::zeros({a.weight.size(0)}, DType::kInt32);
  EXPECT_TRUE(same_bits(bias_int32, b.bias_int32));
  EXPECT_TRUE(same_bits(a.accumulator_scale, b.accumulator_scale));
  EXPECT_EQ(a.activation, b.activation);
  ASSERT_TRUE(a.output.has_value() && b.output.has_value());
  expect_same_qparams(*a.output, *b.output);
  EXPECT_EQ(a.weight_qparams.zero_point.to_vector<int32_t>(),
            b.weight_qparams.zero_point.to_vector<int32_t>());
  EXPECT_EQ(a.weight_qparams.axis, b.weight_qparams.axis);
  EXPECT_EQ(a.weight_qparams.quant_min, b.weight_qparams.quant_min);
  EXPECT_EQ(a.weight_qparams.quant_max, b.weight_qparams.quant_max);
  EXPECT_EQ(a.weight_qparams.rounding, b.weight_qparams.rounding);
  const std::vector<float> sa = a.weight_qparams.scale.to_vector<float>();
  const std::vector<float> sb = b.weight_qparams.scale.to_vector<float>();
  const std::vector<float> acc = b.accumulator_scale.to_vector<float>();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t c = 0; c < sa.size(); ++c) {
    EXPECT_LE(std::fabs(sa[c] - sb[c]), std::fabs(sa[c]) * std::numeric_limits<float>::epsilon());
    EXPECT_EQ(s_in * sb[c], acc[c]);
  }
  ASSERT_TRUE(b.bias.defined());
  if (!a.bias.defined()) {
    EXPECT_EQ(b.bias.to_vector<float>(), std::vector<float>(sa.size(), 0.0f));
    return;
  }
  const std::vector<float> ba = a.bias.to_vector<float>(), bb = b.bias.to_vector<float>();
  // |b' - round(b' / acc) * acc| <= acc / 2, plus the float32 rounding of the product.
  for (size_t c = 0; c < ba.size(); ++c) {
    EXPECT_LE(std::fabs(ba[c] - bb[c]),
              acc[c] * 0.5f + 4 * std::numeric_limits<float>::epsilon() * std::fabs(ba[c]));
  }
}

void expect_same_int_model(const IntModel& a, const IntModel& b) {
  EXPECT_EQ(b.target, quant::Target::kTNN);
  std::multiset<std::string> quantizers_a, quantizers_b;
  for (size_t i = 0; i < a.nodes.size(); ++i)
    if (a.nodes[i].op == "quantize") quantizers_a.insert(describe(a, {static_cast<int>(i), 0}));
  for (size_t i = 0; i < b.nodes.size(); ++i)
    if (b.nodes[i].op == "quantize") quantizers_b.insert(describe(b, {static_cast<int>(i), 0}));
  EXPECT_EQ(quantizers_a, quantizers_b);
  // The reader names quantizers as prepare_qat() does; only one behind a left-out dropout is
  // renamed after the dropout's producer.
  for (const IntNode& q : a.nodes) {
    if (q.op != "quantize" || a.nodes[q.inputs.at(0).node].op == "dropout") continue;
    const int j = b.find(q.name);
    EXPECT_TRUE(j >= 0 && b.nodes[j].op == "quantize") << "quantizer " << q.name;
  }
  size_t kept = 0;
  for (const IntNode& na : a.nodes) {
    if (dropped_by_export(na)) continue;
    ++kept;
    SCOPED_TRACE("node " + na.name);
    const int j = b.find(na.name);
    ASSERT_GE(j, 0) << "missing in the re-read model";
    const IntNode& nb = b.nodes[j];
    EXPECT_EQ(na.op, nb.op);
    EXPECT_EQ(na.attrs, nb.attrs) << na.attrs.to_string() << " vs " << nb.attrs.to_string();
    if (na.op != "output") {
      EXPECT_EQ(na.output_shapes, nb.output_shapes);
    }
    EXPECT_EQ(na.output_scales, nb.output_scales);
    EXPECT_EQ(na.input_scales, nb.input_scales);
    ASSERT_EQ(na.inputs.size(), nb.inputs.size());
    for (size_t k = 0; k < na.inputs.size(); ++k)
      EXPECT_EQ(describe(a, na.inputs[k]), describe(b, nb.inputs[k]));
    ASSERT_EQ(na.layer.has_value(), nb.layer.has_value());
    if (na.layer) {
      const Value in = na.inputs.at(0);
      expect_same_layer(*na.layer, *nb.layer, *a.nodes[in.node].output_scales.at(in.output));
    }
  }
  EXPECT_EQ(kept + quantizers_b.size(), b.nodes.size());
}

// ----- structure of the written net -----

void expect_within_token_limit(const TnnNet& net) {
  const std::vector<std::string> tokens = tnn_proto_tokens(tnn_proto_text(net));
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i == 2) continue;  // the all-blobs list, which TNN ignores
    EXPECT_LE(tokens[i].size(), kTnnMaxTokenLength) << tokens[i].substr(0, 80);
  }
}

// tnn_format.md §3.1: every blob a Quantized* layer reads or writes has a BlobScale; §1.1: no
// name holds a character the parser splits on.
void expect_blob_scales_and_safe_names(const TnnNet& net) {
  std::set<std::string> scaled;
  for (const TnnResource& r : net.resources)
    if (r.type == "BlobScale") scaled.insert(r.name);
  auto safe = [](const std::string& s) {
    return !s.empty() && s.find_first_of(",\": \n\t") == std::string::npos;
  };
  std::set<std::string> layer_names;
  for (const TnnLayer& l : net.layers) {
    EXPECT_TRUE(safe(l.name)) << l.name;
    EXPECT_TRUE(layer_names.insert(l.name).second) << "duplicate layer " << l.name;
    for (const std::string& b : l.inputs) EXPECT_TRUE(safe(b)) << b;
    for (const std::string& b : l.outputs) EXPECT_TRUE(safe(b)) << b;
    if (l.type.rfind("Quantized", 0) != 0) continue;
    for (const std::string& b : l.inputs) EXPECT_TRUE(scaled.count(b + "_scale_data_")) << b;
    for (const std::string& b : l.outputs) EXPECT_TRUE(scaled.count(b + "_scale_data_")) << b;
  }
}

// Exports, writes, reads back: the same IntModel and the same simulate() output, bit for bit
// (with TNN's load-time fusions, and also without them when `both_fusion_modes`).
void expect_int8_round_trip(const IntModel& model, const std::string& name, const Tensor& x,
                            bool both_fusion_modes = true) {
  const TnnNet net = tnn_net(model);
  expect_within_token_limit(net);
  expect_blob_scales_and_safe_names(net);
  const IntModel reread = tnn_int_model(write_and_read(net, name));
  graph::SimulateOptions separate;
  separate.apply_tnn_load_fusions = false;
  for (const graph::SimulateOptions& options : {graph::SimulateOptions(), separate}) {
    if (!options.apply_tnn_load_fusions && !both_fusion_modes) continue;
    const Tensor want = graph::simulate(model, x, options);
    const Tensor got = graph::simulate(reread, x, options);
    EXPECT_TRUE(same_bits(want, got))
        << "simulate() differs, load fusions " << options.apply_tnn_load_fusions;
  }
}

// ----- the zoo -----

class TnnZooTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TnnZooTest, Int8FilesReadBackToTheSameIntModel) {
  const IntModel& model = zoo_int_model(GetParam());
  const IntModel reread = tnn_int_model(write_and_read(tnn_net(model), GetParam() + "_int8"));
  expect_same_int_model(model, reread);
  int fused_a = 0, fused_b = 0;
  for (const int c : graph::tnn_load_fusions(model)) fused_a += c >= 0;
  for (const int c : graph::tnn_load_fusions(reread)) fused_b += c >= 0;
  EXPECT_EQ(fused_a, fused_b) << "TNN's load-time conv + add fusions";
}

TEST_P(TnnZooTest, Int8SimulationOfTheReadModelIsBitExact) {
  expect_int8_round_trip(zoo_int_model(GetParam()), GetParam() + "_sim",
                         random_input({1, 3, 32, 32}, 7), /*both_fusion_modes=*/false);
}

TEST_P(TnnZooTest, FloatFilesRunLikeTheModel) {
  std::shared_ptr<nn::Module> model = zoo_model(GetParam());
  model->eval();
  const TnnNet net = tnn_net_float(graph::trace(*model, kInputShape));
  expect_within_token_limit(net);
  expect_blob_scales_and_safe_names(net);
  for (const TnnLayer& l : net.layers) {
    EXPECT_EQ(l.type.rfind("Quantized", 0), std::string::npos) << l.name;
    EXPECT_NE(l.type, "BatchNormCxx") << l.name << ": every zoo BN follows a conv";
  }
  const TnnNet read = write_and_read(net, GetParam() + "_float");
  const Tensor x = random_input(kInputShape, 11);
  NoGradGuard no_grad;
  const std::vector<float> want = model->forward(x).to_vector<float>();
  const std::vector<float> got = run_tnn_float(read, x).to_vector<float>();
  ASSERT_EQ(want.size(), got.size());
  float scale = 1.0f;
  for (const float v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(want[i], got[i], 1e-4f * scale) << "output " << i << " (BN folded in float)";
}

INSTANTIATE_TEST_SUITE_P(Zoo, TnnZooTest,
                         ::testing::Values("resnet18", "resnet50", "mobilenet_v2",
                                           "shufflenet_v2_x1_0", "googlenet"),
                         [](const auto& info) { return info.param; });

TEST(TnnExportTest, ResNet18Int8ProtoMatchesGolden) {
  const TnnNet net = tnn_net(zoo_int_model("resnet18"));
  testing::expect_golden_text(tnn_proto_text(net), "exporters/testdata/tnn_resnet18_int8.tnnproto",
                              "//exporters:tnn_export_test");
}

// The layer lines the spec shows for TNN's own tools, as this exporter writes them.
TEST(TnnExportTest, LayerLinesFollowTheSpecsParameterOrders) {
  const TnnNet net = tnn_net(zoo_int_model("resnet18"));
  std::map<std::string, std::string> first;  // type -> first line
  const std::string text = tnn_proto_text(net);
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "\"1 " + std::to_string(net.blobs.size()) + " 1 4206624772 ,\"");
  EXPECT_NE(text.find("\"input 4 2 3 32 32 0 ,\""), std::string::npos);
  // conv1: 3x3, stride 1, pad 1, BN folded (bias), ReLU fused (activation_type 1).
  EXPECT_NE(
      text.find("\"QuantizedConvolution conv1 1 1 input conv1 1 3 64 3 3 1 1 1 1 1 -1 1 1 1 ,\""),
      std::string::npos);
  EXPECT_NE(text.find("\"QuantizedAdd layer1.0.add 2 1 layer1.0.conv2 conv1 layer1.0.add 1 ,\""),
            std::string::npos);
  EXPECT_NE(text.find("\"QuantizedPooling avgpool 1 1 layer4.1.relu_1 avgpool 1 0 0 1 1 0 0 -1 -1 "
                      "-1 0 0 0 0 ,\""),
            std::string::npos);
  EXPECT_NE(text.find("\"Flatten flatten 1 1 avgpool flatten 1 ,\""), std::string::npos);
  EXPECT_NE(text.find("\"QuantizedInnerProduct fc 1 1 flatten fc 10 1 0 1 ,\""), std::string::npos);
  // The .tnnmodel starts with the v2 magic and the exact resource count.
  const std::string bytes = tnn_model_bytes(net);
  uint32_t magic = 0;
  int32_t count = 0;
  std::memcpy(&magic, bytes.data(), 4);
  std::memcpy(&count, bytes.data() + 4, 4);
  EXPECT_EQ(magic, 0xFABC0004u);
  EXPECT_EQ(count, static_cast<int32_t>(net.resources.size()));
}

// The layout TNN's quantization tool writes (tnn_format.md §2.3 hexdump): no leading dims in
// the RawBuffers (ndims 0), and the old conv form whose first buffer after the bias is the
// float scale (zero point 0).
TEST(TnnNetTest, ParsesTheToolsRawBuffersAndOldScaleForm) {
  std::string bytes;
  auto i32 = [&](uint32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  auto str = [&](const std::string& s) {
    i32(static_cast<uint32_t>(s.size()));
    bytes += s;
  };
  auto raw = [&](int32_t dtype, const std::string& data) {
    i32(0xFABC0004u);
    i32(static_cast<uint32_t>(dtype));
    i32(static_cast<uint32_t>(data.size()));
    if (data.empty()) return;
    i32(0);  // ndims
    bytes += data;
  };
  const float scale[3] = {0.5f, 0.25f, 0.125f};
  i32(0xFABC0004u);
  i32(2);
  i32(600);
  str("BlobScale");
  str("input_scale_data_");
  raw(2, std::string(3, '\0'));
  raw(0, std::string(reinterpret_cast<const char*>(scale), sizeof(scale)));
  raw(3, std::string(12, '\0'));
  i32(1);
  str("Convolution");
  str("c1");
  str("c1");
  i32(0);  // has_bias
  raw(2, std::string(6, '\1'));
  raw(0, std::string(reinterpret_cast<const char*>(scale), sizeof(scale)));
  const std::string proto =
      "\"1 2 1 4206624772 ,\"\n\"input 4 1 2 1 1 0 ,\"\n\" input c1 ,\"\n\"c1 ,\"\n\" 1 ,\"\n"
      "\"QuantizedConvolution c1 1 1 input c1 1 2 3 1 1 1 1 0 0 0 -1 1 1 ,\"\n";
  const TnnNet net = parse_tnn(proto, bytes);
  ASSERT_EQ(net.resources.size(), 2u);
  const TnnResource& blob = net.resources[0];
  EXPECT_EQ(blob.name, "input_scale_data_");
  EXPECT_EQ(blob.buffers.at(0).to_vector<int8_t>(), (std::vector<int8_t>{0, 0, 0}));
  EXPECT_EQ(blob.buffers.at(1).to_vector<float>(), (std::vector<float>{0.5f, 0.25f, 0.125f}));
  EXPECT_EQ(blob.buffers.at(2).shape(), (Shape{3}));
  const TnnResource& conv = net.resources[1];
  EXPECT_FALSE(conv.has_bias);
  ASSERT_EQ(conv.buffers.size(), 3u);
  EXPECT_EQ(conv.buffers[0].shape(), (Shape{6}));
  EXPECT_FALSE(conv.buffers[1].defined()) << "no zero point in the old form";
  EXPECT_EQ(conv.buffers[2].to_vector<float>(), (std::vector<float>{0.5f, 0.25f, 0.125f}));
  ASSERT_EQ(net.layers.size(), 1u);
  EXPECT_EQ(net.layers[0].params.size(), 13u);
  EXPECT_EQ(net.inputs.at(0).dims, (Shape{1, 2, 1, 1}));
  // Per-channel blob scales have no IntModel form.
  EXPECT_NE(error_of([&] { tnn_int_model(net); }).find("per-tensor"), std::string::npos);
}

// conv-bn-relu -> max pool -> flatten -> linear + relu -> linear: the fused ReLU of an FC is a
// ReLU layer after the InnerProduct, which the reader folds back.
class HeadNet : public nn::Module {
 public:
  HeadNet() {
    conv = register_module(
        "conv", std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions().padding(1).bias(false)));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(4));
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(4 * 4 * 4, 16));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 5));
  }
  std::string type_name() const override { return "HeadNet"; }
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::Linear> fc1, fc2;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    const Tensor y = pool->forward(ops::relu(bn->forward(conv->forward(x))));
    return fc2->forward(ops::relu(fc1->forward(ops::flatten(y, 1))));
  }
};

TEST(TnnExportTest, LinearReLURoundTrips) {
  const Shape shape = {2, 3, 8, 8};
  auto model = std::make_shared<HeadNet>();
  testing::fill_deterministic(*model);
  const IntModel int8 = calibrated_int_model(model, shape);
  ASSERT_EQ(int8.node("fc1").layer->activation, quant::FusedActivation::kReLU);
  const TnnNet net = tnn_net(int8);
  bool relu_after_fc = false;
  for (size_t j = 1; j < net.layers.size(); ++j) {
    relu_after_fc = relu_after_fc ||
                    (net.layers[j - 1].name == "fc1" && net.layers[j].type == "QuantizedReLU" &&
                     net.layers[j].inputs == net.layers[j - 1].outputs);
  }
  EXPECT_TRUE(relu_after_fc) << tnn_proto_text(net);
  expect_same_int_model(int8, tnn_int_model(write_and_read(net, "head_int8")));
  expect_int8_round_trip(int8, "head_sim", random_input(shape, 9));

  model->eval();
  const TnnNet float_net = tnn_net_float(graph::trace(*model, shape));
  const Tensor x = random_input(shape, 4);
  NoGradGuard no_grad;
  const std::vector<float> want = model->forward(x).to_vector<float>();
  const std::vector<float> got =
      run_tnn_float(write_and_read(float_net, "head_float"), x).to_vector<float>();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(want[i], got[i], 1e-4f);
}

// The float layers the zoo does not use: a BN with no conv before it (BatchNormCxx), Clip,
// SplitV with unequal pieces, Reshape, ReduceMean with keep_dims, a broadcasting Add, an
// average pool, a ReLU6 after an InnerProduct.
class FloatOps : public nn::Module {
 public:
  FloatOps() {
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(3));
    conv = register_module("conv",
                           std::make_shared<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions().padding(1)));
    act = register_module("act", std::make_shared<nn::ReLU6>());
    pool = register_module(
        "pool", std::make_shared<nn::MaxPool2d>(2, nn::MaxPool2dOptions().ceil_mode(true)));
    avg = register_module("avg", std::make_shared<nn::AvgPool2d>(2));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(8 * 2 * 2, 16));
    fc_act = register_module("fc_act", std::make_shared<nn::ReLU6>());
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 4));
  }
  std::string type_name() const override { return "FloatOps"; }
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::ReLU6> act, fc_act;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::AvgPool2d> avg;
  std::shared_ptr<nn::Linear> fc1, fc2;

 protected:
  Tensor forward_impl(const Tensor& input) override {
    Tensor x = pool->forward(act->forward(conv->forward(bn->forward(input))));  // [N, 8, 5, 5]
    const std::vector<Tensor> parts = ops::split(x, {3, 5}, 1);
    x = ops::channel_shuffle(ops::cat({parts[1], parts[0]}, 1), 2);
    x = ops::clamp(x, -1.0, 2.5);
    x = avg->forward(ops::add(x, ops::mean(x, {2, 3}, /*keepdim=*/true)));  // [N, 8, 2, 2]
    x = ops::reshape(x, {-1, 8 * 2 * 2});
    return fc2->forward(fc_act->forward(fc1->forward(x)));
  }
};

TEST(TnnExportTest, FloatLayersOutsideTheZooRunLikeTheModel) {
  const Shape shape = {2, 3, 9, 9};
  auto model = std::make_shared<FloatOps>();
  testing::fill_deterministic(*model);
  model->eval();
  const TnnNet net = tnn_net_float(graph::trace(*model, shape));
  std::multiset<std::string> types;
  for (const TnnLayer& l : net.layers) types.insert(l.type);
  for (const char* type : {"BatchNormCxx", "Clip", "SplitV", "Reshape", "ReduceMean", "Add",
                           "ShuffleChannel", "ReLU6", "Concat"})
    EXPECT_TRUE(types.count(type)) << type << " in\n" << tnn_proto_text(net);
  const Tensor x = random_input(shape, 6);
  NoGradGuard no_grad;
  const std::vector<float> want = model->forward(x).to_vector<float>();
  const std::vector<float> got =
      run_tnn_float(write_and_read(net, "float_ops"), x).to_vector<float>();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(want[i], got[i], 1e-4f);
}

// ----- TNN's load-time conv + add fusion (tnn_format.md §3.5) -----

IntNode int_node(const std::string& name, const std::string& op, std::vector<Value> inputs,
                 std::optional<float> scale) {
  IntNode n;
  n.name = name;
  n.op = op;
  n.inputs = std::move(inputs);
  n.output_shapes = {{1, 2, 2, 2}};
  n.output_scales = {scale};
  if (op == "quantize") n.qparams = testing::tnn_per_tensor(*scale);
  return n;
}

// input -> relu6 (float) ; quantize(input) -> 1x1 conv ; add(conv, quantize(relu6)) -> output.
// With `quantizer_between`, the relu6's quantizer sits between the conv and the add, so
// simulate() does not fuse them -- but the exported layer list would put them side by side.
IntModel conv_add_model(bool quantizer_between) {
  IntModel m;
  m.target = quant::Target::kTNN;
  m.nodes.push_back(int_node("input", "input", {}, std::nullopt));
  m.nodes.push_back(int_node("act", "relu6", {{0, 0}}, std::nullopt));
  m.nodes.push_back(int_node("input.activation_post_process", "quantize", {{0, 0}}, 0.05f));
  IntNode relu6_q = int_node("act.activation_post_process", "quantize", {{1, 0}}, 0.04f);
  IntNode conv = int_node("conv", "conv2d", {{2, 0}}, 0.1f);
  conv.attrs = {{"stride", std::vector<int64_t>{1, 1}},
                {"padding", std::vector<int64_t>{0, 0}},
                {"dilation", std::vector<int64_t>{1, 1}},
                {"groups", int64_t{1}}};
  graph::IntLayer layer;
  layer.weight = Tensor::from_vector<int8_t>({100, -50, 20, 127}, {2, 2, 1, 1});
  layer.weight_qparams.scale = Tensor::from_vector<float>({0.01f, 0.02f}, {2});
  layer.weight_qparams.zero_point = Tensor::zeros({2}, DType::kInt32);
  layer.weight_qparams.axis = 0;
  layer.weight_qparams.quant_min = -127;
  layer.weight_qparams.rounding = RoundingMode::kHalfAway;
  layer.bias = Tensor::from_vector<float>({0.1f, -0.2f}, {2});
  layer.bias_int32 = Tensor::from_vector<int32_t>({200, -200}, {2});
  layer.accumulator_scale = Tensor::from_vector<float>({0.05f * 0.01f, 0.05f * 0.02f}, {2});
  layer.output = testing::tnn_per_tensor(0.1f);
  conv.layer = layer;
  if (quantizer_between) {
    m.nodes.push_back(conv);     // 3
    m.nodes.push_back(relu6_q);  // 4
  } else {
    m.nodes.push_back(relu6_q);  // 3
    m.nodes.push_back(conv);     // 4
  }
  const int conv_index = quantizer_between ? 3 : 4;
  IntNode add = int_node("add", "add", {{conv_index, 0}, {7 - conv_index, 0}}, 0.08f);
  add.input_scales = {0.1f, 0.04f};
  m.nodes.push_back(add);  // 5
  m.nodes.push_back(int_node("add.activation_post_process", "quantize", {{5, 0}}, 0.08f));
  IntNode output = int_node("output", "output", {{6, 0}}, std::nullopt);
  output.output_scales.clear();
  output.output_shapes.clear();
  m.nodes.push_back(output);
  return m;
}

TEST(TnnExportTest, LoadTimeConvAddFusionMatchesTheIntModel) {
  const IntModel fused = conv_add_model(/*quantizer_between=*/false);
  ASSERT_EQ(graph::tnn_load_fusions(fused).at(5), 4);
  const Tensor x = random_input({1, 2, 2, 2}, 8);
  expect_int8_round_trip(fused, "conv_add", x);
  expect_same_int_model(fused, tnn_int_model(write_and_read(tnn_net(fused), "conv_add_rt")));

  const IntModel separate = conv_add_model(/*quantizer_between=*/true);
  ASSERT_EQ(graph::tnn_load_fusions(separate).at(5), -1);
  const std::string error = error_of([&] { tnn_net(separate); });
  EXPECT_NE(error.find("node 'add'"), std::string::npos) << error;
  EXPECT_NE(error.find("TNN fuses the 1x1 conv 'conv'"), std::string::npos) << error;
}

// ----- reader errors -----

TEST(TnnReaderErrorTest, TruncatedOrIncompleteFilesThrow) {
  const TnnNet net = tnn_net(zoo_int_model("resnet18"));
  const std::string proto = tnn_proto_text(net);
  const std::string bytes = tnn_model_bytes(net);
  for (const size_t size :
       {size_t{0}, size_t{5}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string error = error_of([&] { parse_tnn(proto, bytes.substr(0, size)); });
    EXPECT_NE(error.find("tnn model"), std::string::npos) << size << ": " << error;
  }
  EXPECT_NE(error_of([&] { parse_tnn("\"1 2 3 ,\"", bytes); }).find("tnn proto"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_tnn(temp_prefix("missing")); }).find("cannot open"),
            std::string::npos);
  // Without its BlobScales an int8 blob has no scale.
  TnnNet no_scales = net;
  no_scales.resources.erase(
      std::remove_if(no_scales.resources.begin(), no_scales.resources.end(),
                     [](const TnnResource& r) { return r.type == "BlobScale"; }),
      no_scales.resources.end());
  const std::string error = error_of([&] { tnn_int_model(no_scales); });
  EXPECT_NE(error.find("has no BlobScale"), std::string::npos) << error;
  // A float net has no integer model, an int8 one no float run.
  EXPECT_NE(error_of([&] { run_tnn_float(net, random_input(kInputShape, 1)); }).find("is int8"),
            std::string::npos);
}

// ----- names -----

TEST(TnnNamesTest, SanitizesDeterministicallyAndUniquely) {
  const std::string long_name(300, 'x');
  const std::vector<std::string> names = {"layer1.0.conv1",
                                          "a b",
                                          "a_b",
                                          "x,y:z\"w",
                                          "",
                                          "tab\there",
                                          "a~b",
                                          "foo_scale_data_",
                                          "bar_int8_reformat",
                                          long_name,
                                          long_name + "y",
                                          "a b"};
  const std::vector<std::string> safe = tnn_names(names);
  ASSERT_EQ(safe.size(), names.size());
  EXPECT_EQ(safe[0], "layer1.0.conv1");
  EXPECT_EQ(safe[1], "a_b");
  EXPECT_EQ(safe[2], "a_b~2");
  EXPECT_EQ(safe[3], "x_y_z_w");
  EXPECT_EQ(safe[4], "_");
  EXPECT_EQ(safe[5], "tab_here");
  EXPECT_EQ(safe[6], "a_b~3");
  EXPECT_EQ(safe[7], "foo_scale_data__");
  EXPECT_EQ(safe[8], "bar_int8_reformat_");
  EXPECT_EQ(safe[9].size(), 200u);
  EXPECT_NE(safe[9], safe[10]);
  EXPECT_EQ(safe[11], "a_b~4");
  EXPECT_EQ(tnn_names(names), safe);
  std::set<std::string> unique(safe.begin(), safe.end());
  EXPECT_EQ(unique.size(), safe.size());
}

// A user model whose module names hold the characters TNN splits on, two of which collide once
// sanitized; and a cat of many convs with long names, whose layer line would pass 4095
// characters.
class OddNames : public nn::Module {
 public:
  explicit OddNames(int branches, const std::string& prefix) {
    for (int b = 0; b < branches; ++b) {
      convs.push_back(
          register_module(prefix + std::to_string(b),
                          std::make_shared<nn::Conv2d>(2, 2, 3, nn::Conv2dOptions().padding(1))));
    }
    head = register_module("head,out:1", std::make_shared<nn::Conv2d>(
                                             2 * branches, 4, 1, nn::Conv2dOptions().bias(false)));
    tail = register_module("head_out_1", std::make_shared<nn::Conv2d>(4, 3, 1));
  }
  std::string type_name() const override { return "OddNames"; }

  std::vector<std::shared_ptr<nn::Conv2d>> convs;
  std::shared_ptr<nn::Conv2d> head, tail;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    std::vector<Tensor> parts;
    for (const auto& conv : convs) parts.push_back(conv->forward(x));
    return tail->forward(head->forward(ops::relu(ops::cat(parts, 1))));
  }
};

TEST(TnnNamesTest, OddModuleNamesExportAndReadBack) {
  const Shape shape = {1, 2, 6, 6};
  const IntModel model = calibrated_int_model(std::make_shared<OddNames>(3, "conv \"a\" "), shape);
  const TnnNet net = tnn_net(model);
  expect_blob_scales_and_safe_names(net);
  std::set<std::string> layers;
  for (const TnnLayer& l : net.layers) layers.insert(l.name);
  EXPECT_TRUE(layers.count("conv__a__0"));
  EXPECT_TRUE(layers.count("head_out_1"));
  EXPECT_TRUE(layers.count("head_out_1~2"));
  expect_int8_round_trip(model, "odd_names", random_input(shape, 3));
}

TEST(TnnNamesTest, LongLayerLinesStayUnderTheTokenLimit) {
  const Shape shape = {1, 2, 6, 6};
  const std::string prefix = "branch_" + std::string(150, 'b') + "_";
  const IntModel model = calibrated_int_model(std::make_shared<OddNames>(40, prefix), shape);
  const TnnNet net = tnn_net(model);
  expect_within_token_limit(net);
  bool shortened = false;
  for (const TnnLayer& l : net.layers)
    if (l.type == "QuantizedConcat") shortened = l.inputs.at(0).rfind("~b", 0) == 0;
  EXPECT_TRUE(shortened) << "the concat's blobs get short generated names";
  expect_int8_round_trip(model, "long_names", random_input(shape, 5));

  // The reader refuses what TNN would silently cut.
  TnnNet wide = net;
  for (TnnLayer& l : wide.layers)
    if (l.type == "QuantizedConcat")
      for (std::string& b : l.inputs) b = std::string(200, 'q') + b;
  try {
    parse_tnn(tnn_proto_text(wide), tnn_model_bytes(wide));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4095"), std::string::npos) << e.what();
  }
}

// ----- errors -----

// conv -> neg -> conv: TNN has no layer for a functional neg.
class WithNeg : public nn::Module {
 public:
  WithNeg() {
    a = register_module("a", std::make_shared<nn::Conv2d>(2, 2, 1));
    b = register_module("b", std::make_shared<nn::Conv2d>(2, 2, 1));
  }
  std::string type_name() const override { return "WithNeg"; }
  std::shared_ptr<nn::Conv2d> a, b;

 protected:
  Tensor forward_impl(const Tensor& x) override { return b->forward(ops::neg(a->forward(x))); }
};

TEST(TnnExportErrorTest, UnsupportedOpNamesTheNode) {
  const Shape shape = {1, 2, 4, 4};
  const IntModel model = calibrated_int_model(std::make_shared<WithNeg>(), shape);
  const std::string int8 = error_of([&] { tnn_net(model); });
  EXPECT_NE(int8.find("node 'neg'"), std::string::npos) << int8;
  EXPECT_NE(int8.find("no TNN layer for op 'neg'"), std::string::npos) << int8;
  auto model_float = std::make_shared<WithNeg>();
  model_float->eval();
  const std::string float_error =
      error_of([&] { tnn_net_float(graph::trace(*model_float, shape)); });
  EXPECT_NE(float_error.find("node 'neg'"), std::string::npos) << float_error;
}

TEST(TnnExportErrorTest, RejectsOtherTargetsAndPreparedGraphs) {
  IntModel model = zoo_int_model("resnet18");
  model.target = quant::Target::kTensorRT;
  EXPECT_NE(error_of([&] { tnn_net(model); }).find("converted for 'tensorrt'"), std::string::npos);
  auto qm = std::make_shared<graph::QuantizableModel>(
      std::make_shared<WithNeg>(), Shape{1, 2, 4, 4}, quant::QConfig::preset("tnn"));
  const std::string prepared = error_of([&] { tnn_net_float(qm->graph()); });
  EXPECT_NE(prepared.find("prepared for QAT"), std::string::npos) << prepared;
}

TEST(TnnExportErrorTest, WriteFailureIsAnError) {
  const TnnNet net = tnn_net(zoo_int_model("resnet18"));
  const std::string missing_dir = temp_prefix("no/such/dir/model");
  EXPECT_NE(error_of([&] { write_tnn(net, missing_dir); }).find("cannot create"),
            std::string::npos);
}

}  // namespace
}  // namespace qat::exporters
