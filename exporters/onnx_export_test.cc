#include "exporters/onnx.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include "core/autograd.h"
#include "exporters/onnx_test_util.h"
#include "graph/convert.h"
#include "graph/fuse.h"
#include "graph/int_model.h"
#include "graph/trace.h"
#include "nn/batch_norm.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "tests/testing/errors.h"

namespace qat::exporters {
namespace {

using qat::testing::error_of;
using test_util::ZooCase;

// What the checks read from an exported model.
struct Index {
  std::map<std::string, const onnx::TensorProto*> initializers;
  std::map<std::string, const onnx::NodeProto*> producers;  // tensor name -> node writing it
  std::map<std::string, int> op_counts;

  explicit Index(const onnx::ModelProto& model) {
    for (const onnx::TensorProto& t : model.graph().initializer()) initializers[t.name()] = &t;
    for (const onnx::NodeProto& n : model.graph().node()) {
      ++op_counts[n.op_type()];
      for (const std::string& out : n.output()) producers[out] = &n;
    }
  }
  int count(const std::string& op) const {
    auto it = op_counts.find(op);
    return it == op_counts.end() ? 0 : it->second;
  }
  const onnx::NodeProto* producer(const std::string& tensor) const {
    auto it = producers.find(tensor);
    return it == producers.end() ? nullptr : it->second;
  }
  const onnx::TensorProto* initializer(const std::string& name) const {
    auto it = initializers.find(name);
    return it == initializers.end() ? nullptr : it->second;
  }
};

const onnx::AttributeProto* find_attr(const onnx::NodeProto& node, const std::string& name) {
  for (const onnx::AttributeProto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

std::vector<int64_t> dims_of(const onnx::TensorProto& t) {
  return std::vector<int64_t>(t.dims().begin(), t.dims().end());
}

// The qat node name quoted in a doc string "qat node '<name>' (<op>)".
std::string doc_source(const onnx::NodeProto& node) {
  const std::string& doc = node.doc_string();
  const size_t open = doc.find('\'');
  const size_t close = doc.rfind('\'');
  if (doc.rfind("qat node '", 0) != 0 || close <= open) return "";
  return doc.substr(open + 1, close - open - 1);
}

// Input, output, opset and IR version as every export writes them.
void expect_model_header(const onnx::ModelProto& model, int64_t classes) {
  EXPECT_EQ(model.ir_version(), 7);
  ASSERT_EQ(model.opset_import_size(), 1);
  EXPECT_EQ(model.opset_import(0).domain(), "");
  EXPECT_EQ(model.opset_import(0).version(), 13);
  EXPECT_EQ(model.producer_name(), "qat");
  const onnx::GraphProto& g = model.graph();
  ASSERT_EQ(g.input_size(), 1);
  ASSERT_EQ(g.output_size(), 1);
  EXPECT_EQ(g.input(0).name(), "input");
  EXPECT_EQ(g.output(0).name(), "output");
  const onnx::TensorShapeProto& in = g.input(0).type().tensor_type().shape();
  ASSERT_EQ(in.dim_size(), 4);
  EXPECT_EQ(in.dim(0).dim_param(), "batch");
  EXPECT_EQ(in.dim(1).dim_value(), 3);
  EXPECT_EQ(in.dim(2).dim_value(), 32);
  EXPECT_EQ(in.dim(3).dim_value(), 32);
  const onnx::TensorShapeProto& out = g.output(0).type().tensor_type().shape();
  ASSERT_EQ(out.dim_size(), 2);
  EXPECT_EQ(out.dim(0).dim_param(), "batch");
  EXPECT_EQ(out.dim(1).dim_value(), classes);
}

class OnnxZooTest : public ::testing::TestWithParam<ZooCase> {};

TEST_P(OnnxZooTest, FloatExport) {
  std::shared_ptr<nn::Module> model = test_util::zoo_model(GetParam());
  model->eval();
  const graph::Graph graph = graph::trace(*model, {2, 3, 32, 32});
  const onnx::ModelProto onnx_model = test_util::parse_model(to_onnx(graph));
  onnx::checker::check_model(onnx_model);
  expect_model_header(onnx_model, 10);
  const Index index(onnx_model);
  int convs = 0, bns = 0, linears = 0;
  std::set<std::string> names;
  for (const graph::GraphNode& node : graph.nodes) {
    names.insert(node.name);
    convs += node.op == "Conv2d";
    bns += node.op == "BatchNorm2d";
    linears += node.op == "Linear";
  }
  EXPECT_EQ(index.count("Conv"), convs);
  EXPECT_EQ(index.count("BatchNormalization"), bns);
  EXPECT_EQ(index.count("Gemm"), linears);
  EXPECT_EQ(index.count("QuantizeLinear"), 0);
  EXPECT_EQ(index.count("DequantizeLinear"), 0);
  for (const onnx::NodeProto& node : onnx_model.graph().node())
    EXPECT_EQ(names.count(doc_source(node)), 1u) << node.name() << ": " << node.doc_string();
  // Initializers carry the state_dict names and values.
  std::string classifier;  // fc, classifier.1
  for (const graph::GraphNode& node : graph.nodes)
    if (node.op == "Linear") classifier = node.name;
  const auto& fc = dynamic_cast<const nn::Linear&>(*graph.node(classifier).module);
  const onnx::TensorProto* fc_weight = index.initializer(classifier + ".weight");
  ASSERT_NE(fc_weight, nullptr);
  EXPECT_EQ(dims_of(*fc_weight), (std::vector<int64_t>{10, fc.in_features}));
  const std::vector<float> w = fc.weight.to_vector<float>();
  EXPECT_EQ(fc_weight->raw_data(),
            std::string(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float)));
}

// Q/DQ counts, scales, zero points and axes per the IntModel; every IntModel edge is an ONNX
// edge (placement exactly as convert() decided).
TEST_P(OnnxZooTest, TensorRTQdqExport) {
  const auto qm = test_util::calibrated_tensorrt(test_util::zoo_model(GetParam()));
  const graph::IntModel int_model = graph::convert(*qm);
  const onnx::ModelProto onnx_model = test_util::parse_model(to_onnx(int_model));
  onnx::checker::check_model(onnx_model);
  expect_model_header(onnx_model, 10);
  const Index index(onnx_model);

  int quantizers = 0, layers = 0;
  int input = -1, output = -1;
  for (size_t i = 0; i < int_model.nodes.size(); ++i) {
    const graph::IntNode& node = int_model.nodes[i];
    quantizers += node.op == "quantize";
    layers += node.layer.has_value();
    if (node.op == "input") input = static_cast<int>(i);
    if (node.op == "output") output = static_cast<int>(i);
  }
  EXPECT_GT(quantizers, 0);
  EXPECT_EQ(index.count("QuantizeLinear"), quantizers);
  EXPECT_EQ(index.count("DequantizeLinear"), quantizers + layers);
  EXPECT_EQ(index.count("Conv") + index.count("Gemm"), layers);
  EXPECT_EQ(index.count("BatchNormalization"), 0);

  for (const onnx::NodeProto& node : onnx_model.graph().node()) {
    SCOPED_TRACE(node.name());
    ASSERT_GE(int_model.find(doc_source(node)), 0) << node.doc_string();
    if (node.op_type() != "QuantizeLinear" && node.op_type() != "DequantizeLinear") continue;
    ASSERT_EQ(node.input_size(), 3);  // explicit zero point: omitted would mean uint8
    const onnx::TensorProto* scale = index.initializer(node.input(1));
    const onnx::TensorProto* zp = index.initializer(node.input(2));
    ASSERT_NE(scale, nullptr);
    ASSERT_NE(zp, nullptr);
    EXPECT_EQ(scale->data_type(), onnx::TensorProto::FLOAT);
    EXPECT_EQ(zp->data_type(), onnx::TensorProto::INT8);
    EXPECT_EQ(zp->raw_data(), std::string(zp->raw_data().size(), '\0'));
    const onnx::TensorProto* weight = index.initializer(node.input(0));
    if (weight == nullptr) {  // an activation: per tensor, 0-d scale and zero point
      EXPECT_EQ(scale->dims_size(), 0);
      EXPECT_EQ(zp->dims_size(), 0);
      float s = 0;
      ASSERT_EQ(scale->raw_data().size(), sizeof(s));
      std::memcpy(&s, scale->raw_data().data(), sizeof(s));
      EXPECT_GT(s, 0.0f);
      EXPECT_EQ(find_attr(node, "axis"), nullptr);
      continue;
    }
    // A weight: int8 codes, DequantizeLinear with explicit axis 0 and [OC] scales.
    EXPECT_EQ(node.op_type(), "DequantizeLinear");
    EXPECT_EQ(weight->data_type(), onnx::TensorProto::INT8);
    const onnx::AttributeProto* axis = find_attr(node, "axis");
    ASSERT_NE(axis, nullptr);
    EXPECT_EQ(axis->i(), 0);
    EXPECT_EQ(dims_of(*scale), std::vector<int64_t>{weight->dims(0)});
    EXPECT_EQ(dims_of(*zp), std::vector<int64_t>{weight->dims(0)});
  }

  // Every conv / Gemm reads a dequantized activation and a dequantized weight.
  for (const onnx::NodeProto& node : onnx_model.graph().node()) {
    if (node.op_type() != "Conv" && node.op_type() != "Gemm") continue;
    SCOPED_TRACE(node.name());
    const onnx::NodeProto* x = index.producer(node.input(0));
    const onnx::NodeProto* w = index.producer(node.input(1));
    ASSERT_NE(x, nullptr);
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(x->op_type(), "DequantizeLinear");
    EXPECT_EQ(w->op_type(), "DequantizeLinear");
    EXPECT_NE(find_attr(*w, "axis"), nullptr);
  }

  // Each input of each IntModel node is read by one of the ONNX nodes exported from it.
  const graph::Value output_value = int_model.nodes.at(output).inputs.at(0);
  std::map<std::string, std::set<std::string>> reads;  // qat node -> ONNX tensors its nodes read
  for (const onnx::NodeProto& node : onnx_model.graph().node())
    for (const std::string& in : node.input()) reads[doc_source(node)].insert(in);
  for (const graph::IntNode& node : int_model.nodes) {
    if (node.op == "output") continue;
    for (const graph::Value& v : node.inputs) {
      const graph::IntNode& producer = int_model.nodes.at(v.node);
      std::string tensor = v.node == input ? "input" : v == output_value ? "output" : producer.name;
      if (v.node != input && producer.output_shapes.size() > 1)
        tensor += ":" + std::to_string(v.output);
      EXPECT_EQ(reads[node.name].count(tensor), 1u) << node.name << " reads " << tensor;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, OnnxZooTest, ::testing::ValuesIn(test_util::zoo_cases()),
                         test_util::case_name);

// The PyTorch presets export as torch.onnx (opset 13) writes a PyTorch 1.13 eager QAT model:
// every activation quantizer a QuantizeLinear -> DequantizeLinear pair with the observer's
// scale and uint8 zero point (fbgemm's reduce_range [0, 127]: a uint8 Clip(max 127) between
// them), int8 weights with zero point 0 per channel along axis 0 (qnnpack: per tensor, 0-d).
class OnnxPyTorchPresetTest
    : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(OnnxPyTorchPresetTest, QdqExportWithUint8Activations) {
  const auto& [model_name, target] = GetParam();
  const auto qm = test_util::calibrated(test_util::zoo_model({model_name, model_name}), target);
  const graph::IntModel int_model = graph::convert(*qm);
  const onnx::ModelProto onnx_model = test_util::parse_model(to_onnx(int_model));
  onnx::checker::check_model(onnx_model);
  expect_model_header(onnx_model, 10);
  const Index index(onnx_model);

  int quantizers = 0, layers = 0;
  for (const graph::IntNode& node : int_model.nodes) {
    quantizers += node.op == "quantize";
    layers += node.layer.has_value();
  }
  const int activation_qdq = quantizers + layers;  // every layer has an output quantizer
  EXPECT_GT(quantizers, 0);
  EXPECT_EQ(index.count("QuantizeLinear"), activation_qdq);
  EXPECT_EQ(index.count("DequantizeLinear"), activation_qdq + layers);
  EXPECT_EQ(index.count("Conv") + index.count("Gemm"), layers);

  int code_clips = 0;  // Clips of QuantizeLinear's codes (ReLU6 exports as a float Clip)
  for (const onnx::NodeProto& node : onnx_model.graph().node()) {
    SCOPED_TRACE(node.name());
    ASSERT_GE(int_model.find(doc_source(node)), 0) << node.doc_string();
    const onnx::NodeProto* producer = index.producer(node.input(0));
    if (node.op_type() == "Clip" && producer != nullptr &&
        producer->op_type() == "QuantizeLinear") {
      ++code_clips;
      ASSERT_EQ(node.input_size(), 3);
      EXPECT_EQ(node.input(1), "");
      const onnx::TensorProto* max = index.initializer(node.input(2));
      ASSERT_NE(max, nullptr);
      EXPECT_EQ(max->data_type(), onnx::TensorProto::UINT8);
      EXPECT_EQ(max->raw_data(), std::string(1, '\x7f'));
      const onnx::NodeProto* reader = nullptr;
      for (const onnx::NodeProto& n : onnx_model.graph().node())
        if (n.input_size() > 0 && n.input(0) == node.output(0)) reader = &n;
      ASSERT_NE(reader, nullptr);
      EXPECT_EQ(reader->op_type(), "DequantizeLinear");
      continue;
    }
    if (node.op_type() != "QuantizeLinear" && node.op_type() != "DequantizeLinear") continue;
    ASSERT_EQ(node.input_size(), 3);
    const onnx::TensorProto* scale = index.initializer(node.input(1));
    const onnx::TensorProto* zp = index.initializer(node.input(2));
    ASSERT_NE(scale, nullptr);
    ASSERT_NE(zp, nullptr);
    const onnx::TensorProto* weight = index.initializer(node.input(0));
    if (weight == nullptr) {  // an activation: uint8, the observer's zero point
      EXPECT_EQ(zp->data_type(), onnx::TensorProto::UINT8);
      EXPECT_EQ(scale->dims_size(), 0);
      EXPECT_EQ(zp->dims_size(), 0);
      ASSERT_EQ(zp->raw_data().size(), 1u);
      if (target == "fbgemm") {
        EXPECT_LE(static_cast<uint8_t>(zp->raw_data()[0]), 127);
      }
      continue;
    }
    EXPECT_EQ(node.op_type(), "DequantizeLinear");
    EXPECT_EQ(weight->data_type(), onnx::TensorProto::INT8);
    EXPECT_EQ(zp->data_type(), onnx::TensorProto::INT8);
    EXPECT_EQ(zp->raw_data(), std::string(zp->raw_data().size(), '\0'));
    if (target == "qnnpack") {
      EXPECT_EQ(find_attr(node, "axis"), nullptr);
      EXPECT_EQ(scale->dims_size(), 0);
      EXPECT_EQ(zp->dims_size(), 0);
    } else {
      const onnx::AttributeProto* axis = find_attr(node, "axis");
      ASSERT_NE(axis, nullptr);
      EXPECT_EQ(axis->i(), 0);
      EXPECT_EQ(dims_of(*scale), std::vector<int64_t>{weight->dims(0)});
    }
  }
  EXPECT_EQ(code_clips, target == "fbgemm" ? activation_qdq : 0);
}

INSTANTIATE_TEST_SUITE_P(
    Presets, OnnxPyTorchPresetTest,
    ::testing::Combine(::testing::Values("resnet18", "mobilenet_v2"),
                       ::testing::Values("fbgemm", "qnnpack", "qnnpack_perchannel")),
    [](const ::testing::TestParamInfo<std::tuple<std::string, std::string>>& info) {
      return std::get<0>(info.param) + "_" + std::get<1>(info.param);
    });

// An integer range with no Q/DQ form (torch.onnx raises for it too) names the node.
TEST(OnnxExport, RangeWithoutQdqFormNamesTheNode) {
  const auto qm = test_util::calibrated(test_util::zoo_model({"resnet18", "resnet18"}), "qnnpack");
  graph::IntModel int_model = graph::convert(*qm);
  graph::IntNode* quantizer = nullptr;
  for (graph::IntNode& node : int_model.nodes)
    if (node.op == "quantize" && quantizer == nullptr) quantizer = &node;
  ASSERT_NE(quantizer, nullptr);
  quantizer->qparams->quant_max = 15;  // a 4-bit quint8 grid
  const std::string error = error_of([&] { to_onnx(int_model); });
  EXPECT_NE(error.find("node '" + quantizer->name + "' (quantize)"), std::string::npos) << error;
  EXPECT_NE(error.find("integer range [0, 15]"), std::string::npos) << error;
}

TEST(OnnxExport, FloatOpsOfAUserModel) {
  auto model = std::make_shared<test_util::OpsNet>();
  testing::fill_deterministic(*model);
  model->eval();
  const onnx::ModelProto onnx_model =
      test_util::parse_model(to_onnx(graph::trace(*model, {2, 3, 32, 32})));
  const Index index(onnx_model);
  for (const char* op :
       {"Conv", "MaxPool", "AveragePool", "Clip", "Split", "Concat", "Neg", "Sub", "Div", "Add",
        "Relu", "Mul", "Transpose", "ReduceMean", "ReduceSum", "Reshape", "Gemm", "LogSoftmax"})
    EXPECT_GT(index.count(op), 0) << op;
  // PyTorch's ceil_mode as explicit end padding: 30 -> 16 with kernel 3, stride 2, padding 1.
  const onnx::NodeProto* pool = index.producer("pool");
  ASSERT_NE(pool, nullptr);
  const onnx::AttributeProto* pads = find_attr(*pool, "pads");
  ASSERT_NE(pads, nullptr);
  EXPECT_EQ(std::vector<int64_t>(pads->ints().begin(), pads->ints().end()),
            (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(find_attr(*pool, "ceil_mode"), nullptr);
}

TEST(OnnxExport, FixedBatchAndFusedGraph) {
  std::shared_ptr<nn::Module> model = test_util::zoo_model({"resnet18", "resnet18"});
  model->eval();
  const graph::Graph fused = graph::fuse(graph::trace(*model, {2, 3, 32, 32}));
  const onnx::ModelProto onnx_model =
      test_util::parse_model(to_onnx(fused, OnnxExportOptions().batch_dim("")));
  EXPECT_EQ(onnx_model.graph().input(0).type().tensor_type().shape().dim(0).dim_value(), 2);
  const Index index(onnx_model);
  EXPECT_EQ(index.count("Conv"), 20);
  EXPECT_EQ(index.count("BatchNormalization"), 20);
}

// GoogLeNet traced in training mode runs its aux heads, whose values reach no output: the
// export leaves them out (and runs BN and dropout in eval semantics).
TEST(OnnxExport, LeavesOutDeadAuxHeads) {
  zoo::ModelConfig config;
  config.name = "googlenet";
  config.small_input = true;
  config.num_classes = 10;
  config.aux_logits = true;
  std::shared_ptr<nn::Module> model = zoo::create_model(config);
  model->train();
  const graph::Graph graph = graph::trace(*model, {2, 3, 32, 32});
  ASSERT_GE(graph.find("aux1.fc2"), 0);
  const onnx::ModelProto onnx_model = test_util::parse_model(to_onnx(graph));
  for (const onnx::NodeProto& node : onnx_model.graph().node())
    EXPECT_NE(doc_source(node).rfind("aux", 0), 0u) << node.name();
  EXPECT_GT(Index(onnx_model).count("Identity"), 0);  // the dropout before fc
}

std::string temp_dir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream os;
  os << file.rdbuf();
  return os.str();
}

TEST(OnnxExport, WritesAtomicallyAndCheckedFromFile) {
  auto model = std::make_shared<test_util::OpsNet>();
  const std::string path = temp_dir() + "/ops_net.onnx";
  std::remove(path.c_str());
  export_onnx(*model, {1, 3, 32, 32}, path);
  onnx::checker::check_model(path);
  EXPECT_EQ(read_file(path), to_onnx(graph::trace(*model, {1, 3, 32, 32})));
  EXPECT_NE(::access((path + ".tmp." + std::to_string(::getpid())).c_str(), F_OK), 0);

  // A failed export leaves the previous file as it was.
  const std::string before = read_file(path);
  auto bad = std::make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair(3, 3));
  EXPECT_THROW(export_onnx(*bad, {1, 3, 32, 32}, path), Error);
  EXPECT_EQ(read_file(path), before);
}

// A leaf module qat has no ONNX form for.
class Square : public nn::Module {
 public:
  std::string type_name() const override { return "Square"; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return ops::mul(x, x); }
};

// conv -> <custom op> -> global pool -> fc.
class UserNet : public nn::Module {
 public:
  explicit UserNet(std::shared_ptr<nn::Module> middle) {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(3, 4, 3));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(4));
    this->middle = register_module("middle", std::move(middle));
    pool = register_module("pool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair(1, 1)));
    fc = register_module("fc", std::make_shared<nn::Linear>(4, 10));
  }
  std::string type_name() const override { return "UserNet"; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::Module> middle;
  std::shared_ptr<nn::AdaptiveAvgPool2d> pool;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    return fc->forward(ops::flatten(pool->forward(middle->forward(bn->forward(conv->forward(x))))));
  }
};

// One calibration forward in train mode, then observers off and eval.
void calibrate_once(graph::QuantizableModel& qm, const Shape& shape) {
  qm.train();
  {
    NoGradGuard no_grad;
    qm.forward(test_util::random_input(shape, 1));
  }
  quant::disable_observer(qm);
  qm.eval();
}

TEST(OnnxExport, UnsupportedOpNamesTheNode) {
  auto with_square = std::make_shared<UserNet>(std::make_shared<Square>());
  const std::string square = error_of([&] { to_onnx(graph::trace(*with_square, {1, 3, 32, 32})); });
  EXPECT_NE(square.find("node 'middle' (Square)"), std::string::npos) << square;
  EXPECT_NE(square.find("no ONNX export for module Square"), std::string::npos) << square;

  // 30x30 -> 3x3 bins of PyTorch's adaptive pool are equal: AveragePool; 32x32 -> 3x3 are not.
  auto uneven =
      std::make_shared<UserNet>(std::make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair(3, 3)));
  const std::string pool = error_of([&] { to_onnx(graph::trace(*uneven, {1, 3, 34, 34})); });
  EXPECT_NE(pool.find("node 'middle' (AdaptiveAvgPool2d)"), std::string::npos) << pool;
  EXPECT_NE(pool.find("unequal bins"), std::string::npos) << pool;
  EXPECT_EQ(error_of([&] { to_onnx(graph::trace(*uneven, {1, 3, 32, 32})); }), "");

  // The same node in a converted tensorrt model.
  const auto qm = test_util::calibrated_tensorrt(uneven);
  EXPECT_EQ(error_of([&] { to_onnx(graph::convert(*qm)); }), "");
  auto qm_uneven = std::make_shared<graph::QuantizableModel>(
      std::make_shared<UserNet>(std::make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair(3, 3))),
      Shape{2, 3, 34, 34}, quant::QConfig::preset("tensorrt"));
  calibrate_once(*qm_uneven, {2, 3, 34, 34});
  const std::string qat_pool = error_of([&] { to_onnx(graph::convert(*qm_uneven)); });
  EXPECT_NE(qat_pool.find("node 'middle' (adaptive_avg_pool2d)"), std::string::npos) << qat_pool;

  // A conv left float in a tensorrt model: convert() names it.
  auto black_listed = std::make_shared<graph::QuantizableModel>(
      std::make_shared<UserNet>(std::make_shared<nn::ReLU>()), Shape{2, 3, 32, 32},
      quant::QConfig::preset("tensorrt"), std::vector<std::string>{"fc"});
  calibrate_once(*black_listed, {2, 3, 32, 32});
  const std::string fc = error_of([&] { to_onnx(graph::convert(*black_listed)); });
  EXPECT_NE(fc.find("node 'fc'"), std::string::npos) << fc;

  // A QAT graph is exported through convert(), not as a float graph.
  const std::string prepared = error_of([&] { to_onnx(qm->graph()); });
  EXPECT_NE(prepared.find("node 'input.activation_post_process' (FakeQuantize)"), std::string::npos)
      << prepared;
  EXPECT_NE(prepared.find("export graph::convert()"), std::string::npos) << prepared;
}

TEST(OnnxExport, RejectsTnnIntModel) {
  auto model = std::make_shared<UserNet>(std::make_shared<nn::ReLU>());
  auto qm = std::make_shared<graph::QuantizableModel>(model, Shape{2, 3, 32, 32},
                                                      quant::QConfig::preset("tnn"));
  calibrate_once(*qm, {2, 3, 32, 32});
  const std::string error = error_of([&] { to_onnx(graph::convert(*qm)); });
  EXPECT_NE(error.find("target is 'tnn'"), std::string::npos) << error;
}

}  // namespace
}  // namespace qat::exporters
