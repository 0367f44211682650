#include "exporters/onnx.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include "core/check.h"
#include "core/serialize.h"
#include "graph/executor.h"
#include "graph/fused_modules.h"
#include "graph/trace.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"

namespace qat::exporters {
namespace {

using graph::pair_attr;
using graph::Value;

constexpr int64_t kOpset = 13;
// The IR version that came with opset 13 (ONNX 1.8): readable by every runtime with opset 13.
constexpr int64_t kIrVersion = 7;
// TensorProto raw_data is little-endian; initializers copy the host's bytes.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the ONNX exporter needs a little-endian host");

std::string doc_of(const std::string& name, const std::string& op) {
  return "qat node '" + name + "' (" + op + ")";
}

int64_t wrap(int64_t dim, size_t rank) { return dim < 0 ? dim + static_cast<int64_t>(rank) : dim; }

void attr_int(onnx::NodeProto& node, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void attr_ints(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (const int64_t v : values) a->add_ints(v);
}

void attr_float(onnx::NodeProto& node, const std::string& name, float value) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

// Appends nodes and initializers to an ONNX graph; the doc_string of every node names the qat
// node being exported (set_source()).
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  void set_source(const std::string& name, const std::string& op) { doc_ = doc_of(name, op); }

  onnx::NodeProto& node(const std::string& op_type, const std::string& name,
                        const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    onnx::NodeProto* n = graph_.add_node();
    n->set_op_type(op_type);
    n->set_name(name);
    for (const std::string& in : inputs) n->add_input(in);
    for (const std::string& out : outputs) n->add_output(out);
    n->set_doc_string(doc_);
    return *n;
  }

  // An initializer of `dims` (empty: 0-d) holding `bytes` bytes of little-endian `data`.
  std::string initializer(const std::string& name, onnx::TensorProto::DataType type,
                          const Shape& dims, const void* data, size_t bytes) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (const int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(static_cast<const char*>(data), bytes));
    return name;
  }

  std::string floats(const std::string& name, const Shape& dims, const std::vector<float>& v) {
    return initializer(name, onnx::TensorProto::FLOAT, dims, v.data(), v.size() * sizeof(float));
  }
  // A float32 tensor's values under its own shape.
  std::string floats(const std::string& name, const Tensor& t) {
    return floats(name, t.shape(), t.to(DType::kFloat32).to_vector<float>());
  }
  std::string float_scalar(const std::string& name, float v) { return floats(name, {}, {v}); }
  std::string int64s(const std::string& name, const std::vector<int64_t>& v) {
    return initializer(name, onnx::TensorProto::INT64, {static_cast<int64_t>(v.size())}, v.data(),
                       v.size() * sizeof(int64_t));
  }
  std::string int8s(const std::string& name, const Shape& dims, const std::vector<int8_t>& v) {
    return initializer(name, onnx::TensorProto::INT8, dims, v.data(), v.size());
  }
  std::string uint8s(const std::string& name, const Shape& dims, const std::vector<uint8_t>& v) {
    return initializer(name, onnx::TensorProto::UINT8, dims, v.data(), v.size());
  }

 private:
  onnx::GraphProto& graph_;
  std::string doc_;
};

// One qat node to export: its ONNX input / output tensor names and traced shapes.
struct Call {
  std::string name;  // the qat node's name
  std::string op;    // functional op name (executor.cc's)
  OpAttrs attrs;
  std::vector<std::string> inputs;
  std::vector<Shape> input_shapes;
  std::vector<std::string> outputs;
  std::vector<Shape> output_shapes;
  bool dynamic_batch = true;
};

// ----- the functional ops (graph/executor.cc's table), each as ONNX -----

// Clip(x, lo, hi) with 0-d bounds (opset 13 takes them as inputs).
void emit_clip(GraphBuilder& b, const std::string& name, const std::string& in,
               const std::string& out, float lo, float hi) {
  const std::string min = b.float_scalar(name + "/min", lo);
  const std::string max = b.float_scalar(name + "/max", hi);
  b.node("Clip", name, {in, min, max}, {out});
}

// The ONNX Reshape target for a traced output shape: dimension 0 copies the input's (the
// batch) when the traced op kept it, else -1. So the batch may change as long as it stays
// dimension 0 or scales it.
std::vector<int64_t> reshape_target(const Call& c) {
  std::vector<int64_t> target(c.output_shapes.at(0).begin(), c.output_shapes.at(0).end());
  if (!c.dynamic_batch || target.empty() || c.input_shapes.at(0).empty()) return target;
  target[0] = target[0] == c.input_shapes[0][0] ? 0 : -1;
  return target;
}

void emit_reshape(GraphBuilder& b, const Call& c) {
  const std::string shape = b.int64s(c.name + "/shape", reshape_target(c));
  b.node("Reshape", c.name, {c.inputs[0], shape}, c.outputs);
}

// Pads [top, left, bottom, right] for an ONNX pool with ceil_mode 0 that gives the traced
// output size: PyTorch's ceil_mode windows may run past the bottom / right padding, so those
// pads grow by what that takes (extra[d] > 0 only then).
std::vector<int64_t> pool_pads(const Call& c, std::array<int64_t, 2> kernel,
                               std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                               std::array<int64_t, 2> dilation, std::array<int64_t, 2>& extra) {
  const Shape& in = c.input_shapes.at(0);
  const Shape& out = c.output_shapes.at(0);
  QAT_CHECK(in.size() == 4 && out.size() == 4, "expected [N, C, H, W] in and out, got ",
            shape_str(in), " -> ", shape_str(out));
  for (int d = 0; d < 2; ++d) {
    const int64_t span = dilation[d] * (kernel[d] - 1) + 1;
    const int64_t padded = in[2 + d] + 2 * padding[d];
    extra[d] = std::max<int64_t>(0, (out[2 + d] - 1) * stride[d] + span - padded);
    QAT_CHECK((padded + extra[d] - span) / stride[d] + 1 == out[2 + d], "the traced output size ",
              out[2 + d], " of spatial dim ", d, " is not a pooling window count");
  }
  return {padding[0], padding[1], padding[0] + extra[0], padding[1] + extra[1]};
}

void emit_max_pool(GraphBuilder& b, const Call& c) {
  const auto kernel = pair_attr(c.attrs, "kernel");
  const auto stride = pair_attr(c.attrs, "stride");
  const auto dilation = pair_attr(c.attrs, "dilation");
  std::array<int64_t, 2> extra{};
  const std::vector<int64_t> pads =
      pool_pads(c, kernel, stride, pair_attr(c.attrs, "padding"), dilation, extra);
  onnx::NodeProto& n = b.node("MaxPool", c.name, {c.inputs[0]}, c.outputs);
  attr_ints(n, "kernel_shape", {kernel[0], kernel[1]});
  attr_ints(n, "strides", {stride[0], stride[1]});
  attr_ints(n, "pads", pads);
  attr_ints(n, "dilations", {dilation[0], dilation[1]});
}

void emit_avg_pool(GraphBuilder& b, const Call& c) {
  const auto kernel = pair_attr(c.attrs, "kernel");
  const auto stride = pair_attr(c.attrs, "stride");
  const bool count_include_pad = c.attrs.get_bool("count_include_pad");
  std::array<int64_t, 2> extra{};
  const std::vector<int64_t> pads =
      pool_pads(c, kernel, stride, pair_attr(c.attrs, "padding"), {1, 1}, extra);
  QAT_CHECK(!count_include_pad || (extra[0] == 0 && extra[1] == 0),
            "avg_pool2d with ceil_mode and count_include_pad has windows past the padding, "
            "whose divisor PyTorch clips and ONNX AveragePool does not (HINT: "
            "count_include_pad=false or ceil_mode=false export exactly)");
  onnx::NodeProto& n = b.node("AveragePool", c.name, {c.inputs[0]}, c.outputs);
  attr_ints(n, "kernel_shape", {kernel[0], kernel[1]});
  attr_ints(n, "strides", {stride[0], stride[1]});
  attr_ints(n, "pads", pads);
  attr_int(n, "count_include_pad", count_include_pad ? 1 : 0);
}

void emit_adaptive_avg_pool(GraphBuilder& b, const Call& c) {
  const Shape& in = c.input_shapes.at(0);
  const Shape& out = c.output_shapes.at(0);
  QAT_CHECK(in.size() == 4 && out.size() == 4, "expected [N, C, H, W] in and out");
  if (out[2] == 1 && out[3] == 1) {
    b.node("GlobalAveragePool", c.name, {c.inputs[0]}, c.outputs);
    return;
  }
  QAT_CHECK(in[2] % out[2] == 0 && in[3] % out[3] == 0, "adaptive_avg_pool2d from ", shape_str(in),
            " to ", shape_str(out),
            " has unequal bins, which ONNX cannot express (HINT: an output size that divides "
            "the input size exports as AveragePool)");
  const int64_t kh = in[2] / out[2], kw = in[3] / out[3];
  onnx::NodeProto& n = b.node("AveragePool", c.name, {c.inputs[0]}, c.outputs);
  attr_ints(n, "kernel_shape", {kh, kw});
  attr_ints(n, "strides", {kh, kw});
}

void emit_flatten(GraphBuilder& b, const Call& c) {
  const size_t rank = c.input_shapes.at(0).size();
  const int64_t start = wrap(c.attrs.get_int("start_dim"), rank);
  const int64_t end = wrap(c.attrs.get_int("end_dim"), rank);
  if (start == 1 && end == static_cast<int64_t>(rank) - 1) {
    attr_int(b.node("Flatten", c.name, {c.inputs[0]}, c.outputs), "axis", 1);
  } else {
    emit_reshape(b, c);
  }
}

// Split along `dim` into the traced output sizes (split and chunk).
void emit_split(GraphBuilder& b, const Call& c) {
  const size_t rank = c.input_shapes.at(0).size();
  const int64_t dim = wrap(c.attrs.get_int("dim"), rank);
  std::vector<int64_t> sizes;
  for (const Shape& s : c.output_shapes) sizes.push_back(s.at(dim));
  const std::string split = b.int64s(c.name + "/split", sizes);
  attr_int(b.node("Split", c.name, {c.inputs[0], split}, c.outputs), "axis", dim);
}

// [N, C, H, W] -> Reshape [N, g, C/g, H, W] -> Transpose(0, 2, 1, 3, 4) -> Reshape [N, C, H, W].
void emit_channel_shuffle(GraphBuilder& b, const Call& c) {
  const Shape& s = c.input_shapes.at(0);
  QAT_CHECK(s.size() == 4, "channel_shuffle expects [N, C, H, W], got ", shape_str(s));
  const int64_t g = c.attrs.get_int("groups");
  const int64_t n = c.dynamic_batch ? 0 : s[0];
  const std::string split_shape = b.int64s(c.name + "/grouped_shape", {n, g, s[1] / g, s[2], s[3]});
  const std::string merged_shape = b.int64s(c.name + "/shape", {n, s[1], s[2], s[3]});
  b.node("Reshape", c.name + "/reshape", {c.inputs[0], split_shape}, {c.name + "/grouped"});
  attr_ints(
      b.node("Transpose", c.name + "/transpose", {c.name + "/grouped"}, {c.name + "/transposed"}),
      "perm", {0, 2, 1, 3, 4});
  b.node("Reshape", c.name, {c.name + "/transposed", merged_shape}, c.outputs);
}

// add / mul with a scalar "other" attribute, or of two inputs.
void emit_binary(GraphBuilder& b, const Call& c, const std::string& op_type) {
  std::vector<std::string> inputs = c.inputs;
  if (inputs.size() == 1) {
    inputs.push_back(
        b.float_scalar(c.name + "/other", static_cast<float>(c.attrs.get_double("other"))));
  }
  b.node(op_type, c.name, inputs, c.outputs);
}

void emit_conv_function(GraphBuilder& b, const Call& c) {
  const Shape& w = c.input_shapes.at(1);
  const auto stride = pair_attr(c.attrs, "stride");
  const auto padding = pair_attr(c.attrs, "padding");
  const auto dilation = pair_attr(c.attrs, "dilation");
  onnx::NodeProto& n = b.node("Conv", c.name, c.inputs, c.outputs);
  attr_ints(n, "kernel_shape", {w.at(2), w.at(3)});
  attr_ints(n, "strides", {stride[0], stride[1]});
  attr_ints(n, "pads", {padding[0], padding[1], padding[0], padding[1]});
  attr_ints(n, "dilations", {dilation[0], dilation[1]});
  attr_int(n, "group", c.attrs.get_int("groups"));
}

void emit_gemm(GraphBuilder& b, const Call& c) {
  QAT_CHECK(c.input_shapes.at(0).size() == 2,
            "linear exports as Gemm, which needs a 2-d input [N, in_features], got ",
            shape_str(c.input_shapes.at(0)));
  attr_int(b.node("Gemm", c.name, c.inputs, c.outputs), "transB", 1);
}

void emit_reduce(GraphBuilder& b, const Call& c) {
  std::vector<int64_t> axes;
  for (const int64_t d : c.attrs.get_ints("dims"))
    axes.push_back(wrap(d, c.input_shapes.at(0).size()));
  const int64_t keepdims = c.attrs.get_bool("keepdim") ? 1 : 0;
  if (c.op == "mean") {
    onnx::NodeProto& n = b.node("ReduceMean", c.name, c.inputs, c.outputs);
    attr_ints(n, "axes", axes);
    attr_int(n, "keepdims", keepdims);
  } else {  // ReduceSum-13 takes its axes as an input
    const std::string axes_name = b.int64s(c.name + "/axes", axes);
    attr_int(b.node("ReduceSum", c.name, {c.inputs[0], axes_name}, c.outputs), "keepdims",
             keepdims);
  }
}

void emit_transpose(GraphBuilder& b, const Call& c) {
  const size_t rank = c.input_shapes.at(0).size();
  std::vector<int64_t> perm;
  if (c.op == "permute") {
    for (const int64_t d : c.attrs.get_ints("dims")) perm.push_back(wrap(d, rank));
  } else {
    for (size_t d = 0; d < rank; ++d) perm.push_back(static_cast<int64_t>(d));
    std::swap(perm.at(wrap(c.attrs.get_int("dim0"), rank)),
              perm.at(wrap(c.attrs.get_int("dim1"), rank)));
  }
  attr_ints(b.node("Transpose", c.name, c.inputs, c.outputs), "perm", perm);
}

void emit_cat(GraphBuilder& b, const Call& c) {
  const int64_t axis = wrap(c.attrs.get_int("dim"), c.output_shapes.at(0).size());
  attr_int(b.node("Concat", c.name, c.inputs, c.outputs), "axis", axis);
}

void emit_log_softmax(GraphBuilder& b, const Call& c) {
  attr_int(b.node("LogSoftmax", c.name, c.inputs, c.outputs), "axis",
           wrap(c.attrs.get_int("dim"), c.input_shapes.at(0).size()));
}

using Emit = void (*)(GraphBuilder& b, const Call& c);

// The ONNX form of each functional op (graph/executor.cc's names and attrs), plus "identity"
// (nn::Identity). dropout runs in eval semantics: Identity.
const std::map<std::string, Emit>& emitters() {
  static const std::map<std::string, Emit> kEmitters = {
      {"adaptive_avg_pool2d", emit_adaptive_avg_pool},
      {"add", [](GraphBuilder& b, const Call& c) { emit_binary(b, c, "Add"); }},
      {"avg_pool2d", emit_avg_pool},
      {"cat", emit_cat},
      {"channel_shuffle", emit_channel_shuffle},
      {"chunk", emit_split},
      {"clamp",
       [](GraphBuilder& b, const Call& c) {
         emit_clip(b, c.name, c.inputs[0], c.outputs[0],
                   static_cast<float>(c.attrs.get_double("min")),
                   static_cast<float>(c.attrs.get_double("max")));
       }},
      {"conv2d", emit_conv_function},
      {"div", [](GraphBuilder& b, const Call& c) { b.node("Div", c.name, c.inputs, c.outputs); }},
      {"dropout",
       [](GraphBuilder& b, const Call& c) { b.node("Identity", c.name, c.inputs, c.outputs); }},
      {"flatten", emit_flatten},
      {"identity",
       [](GraphBuilder& b, const Call& c) { b.node("Identity", c.name, c.inputs, c.outputs); }},
      {"linear", emit_gemm},
      {"log_softmax", emit_log_softmax},
      {"max_pool2d", emit_max_pool},
      {"mean", emit_reduce},
      {"mul", [](GraphBuilder& b, const Call& c) { emit_binary(b, c, "Mul"); }},
      {"neg", [](GraphBuilder& b, const Call& c) { b.node("Neg", c.name, c.inputs, c.outputs); }},
      {"permute", emit_transpose},
      {"relu", [](GraphBuilder& b, const Call& c) { b.node("Relu", c.name, c.inputs, c.outputs); }},
      {"relu6", [](GraphBuilder& b,
                   const Call& c) { emit_clip(b, c.name, c.inputs[0], c.outputs[0], 0.0f, 6.0f); }},
      {"reshape", emit_reshape},
      {"split", emit_split},
      {"sub", [](GraphBuilder& b, const Call& c) { b.node("Sub", c.name, c.inputs, c.outputs); }},
      {"sum", emit_reduce},
      {"transpose", emit_transpose},
  };
  return kEmitters;
}

void emit_function(GraphBuilder& b, const Call& c) {
  auto it = emitters().find(c.op);
  if (it == emitters().end()) {
    std::string known;
    for (const auto& entry : emitters()) known += (known.empty() ? "" : ", ") + entry.first;
    QAT_CHECK(false, "op '", c.op, "' has no ONNX export (exported: ", known, ")");
  }
  it->second(b, c);
}

// ----- weighted layers and quantizers -----

// The name written by step `step` of the `count` ONNX nodes that export the qat node of `c`:
// the last step writes the node's own output, the others "<name>/<what>".
std::string step_output(const Call& c, int step, int count, const std::string& what) {
  return step == count - 1 ? c.outputs.at(0) : c.name + "/" + what;
}

OpAttrs conv_attrs(const nn::Conv2d& conv) {
  const ops::Conv2dParams p = conv.conv_params();
  return {
      {"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation}, {"groups", p.groups}};
}

// Conv or Gemm of `c` (op "conv2d" / "linear") on `x` with the weight / bias tensors named,
// writing `out`.
void emit_layer(GraphBuilder& b, const Call& c, const Shape& weight_shape, const std::string& x,
                const std::string& weight, const std::string& bias, const std::string& out) {
  Call layer = c;
  layer.inputs = {x, weight};
  if (!bias.empty()) layer.inputs.push_back(bias);
  layer.input_shapes = {c.input_shapes.at(0), weight_shape};
  layer.outputs = {out};
  if (c.op == "conv2d") {
    emit_conv_function(b, layer);
  } else {
    emit_gemm(b, layer);
  }
}

void emit_activation(GraphBuilder& b, const std::string& name, graph::Activation activation,
                     const std::string& in, const std::string& out) {
  if (activation == graph::Activation::kReLU) {
    b.node("Relu", name, {in}, {out});
  } else {
    emit_clip(b, name, in, out, 0.0f, 6.0f);  // ReLU6 and clamp(0, 6)
  }
}

graph::Activation float_activation(quant::FusedActivation activation) {
  switch (activation) {
    case quant::FusedActivation::kReLU:
      return graph::Activation::kReLU;
    case quant::FusedActivation::kReLU6:
      return graph::Activation::kReLU6;
    case quant::FusedActivation::kNone:
      break;
  }
  return graph::Activation::kNone;
}

// BatchNormalization with the running statistics (eval semantics), initializers "<prefix>.weight",
// "<prefix>.bias", "<prefix>.running_mean", "<prefix>.running_var".
void emit_batch_norm(GraphBuilder& b, const std::string& name, const std::string& prefix,
                     const nn::BatchNorm2d& bn, const std::string& in, const std::string& out) {
  QAT_CHECK(bn.running_mean.defined() && bn.running_var.defined(),
            "a BatchNorm2d without running statistics normalizes with batch statistics even in "
            "eval, which ONNX BatchNormalization cannot express");
  const int64_t c = bn.num_features;
  const std::string scale = bn.weight.defined()
                                ? b.floats(prefix + ".weight", bn.weight)
                                : b.floats(prefix + ".weight", {c}, std::vector<float>(c, 1.0f));
  const std::string shift = bn.bias.defined()
                                ? b.floats(prefix + ".bias", bn.bias)
                                : b.floats(prefix + ".bias", {c}, std::vector<float>(c, 0.0f));
  const std::string mean = b.floats(prefix + ".running_mean", bn.running_mean);
  const std::string var = b.floats(prefix + ".running_var", bn.running_var);
  onnx::NodeProto& n = b.node("BatchNormalization", name, {in, scale, shift, mean, var}, {out});
  attr_float(n, "epsilon", static_cast<float>(bn.options.eps()));
}

// A float Conv2d / Linear [-> BatchNorm2d] [-> activation]: the module calls of a traced graph
// and fuse()'s FusedConv2d / FusedLinear.
void emit_float_layer(GraphBuilder& b, Call c, const nn::Module& layer, const nn::BatchNorm2d* bn,
                      graph::Activation activation) {
  const int steps = 1 + (bn != nullptr) + (activation != graph::Activation::kNone);
  const Tensor* weight;
  const Tensor* bias;
  if (const auto* conv = dynamic_cast<const nn::Conv2d*>(&layer)) {
    c.op = "conv2d";
    c.attrs = conv_attrs(*conv);
    weight = &conv->weight;
    bias = &conv->bias;
  } else {
    const auto& linear = dynamic_cast<const nn::Linear&>(layer);
    c.op = "linear";
    weight = &linear.weight;
    bias = &linear.bias;
  }
  const std::string w = b.floats(c.name + ".weight", *weight);
  const std::string bias_name = bias->defined() ? b.floats(c.name + ".bias", *bias) : "";
  std::string x = step_output(c, 0, steps, c.op);
  emit_layer(b, c, weight->shape(), c.inputs.at(0), w, bias_name, x);
  int step = 1;
  if (bn != nullptr) {
    const std::string out = step_output(c, step++, steps, "bn");
    emit_batch_norm(b, c.name + "/bn", c.name + "/bn", *bn, x, out);
    x = out;
  }
  if (activation != graph::Activation::kNone) {
    emit_activation(b, c.name + "/activation", activation, x, step_output(c, step, steps, "act"));
  }
}

// The ONNX zero-point type of an integer range, as torch.onnx (opset 13,
// fake_quantize_per_tensor_affine) chooses it: uint8 when quant_min is 0 ([0, 255]; fbgemm's
// reduce_range [0, 127], which torch.onnx clips), int8 for [-128, 127]; any other range has no
// Q/DQ form and is rejected with torch.onnx's rule.
bool uint8_range(const quant::QParams& q) {
  using Range = std::pair<int64_t, int64_t>;
  const Range range(q.quant_min, q.quant_max);
  const bool has_qdq_form =
      range == Range(0, 255) || range == Range(-128, 127) || range == Range(0, 127);
  QAT_CHECK(has_qdq_form, "integer range [", q.quant_min, ", ", q.quant_max,
            "]: ONNX QuantizeLinear saturates to uint8 [0, 255] or int8 [-128, 127] (torch.onnx "
            "also takes [0, 127] as QuantizeLinear -> Clip(max 127)), nothing else");
  return q.quant_min == 0;
}

// A zero-point initializer (uint8 or int8) holding `zero_points` under `dims`.
std::string zero_point_initializer(GraphBuilder& b, const std::string& name, const Shape& dims,
                                   const std::vector<int32_t>& zero_points, bool uint8) {
  if (uint8)
    return b.uint8s(name, dims, std::vector<uint8_t>(zero_points.begin(), zero_points.end()));
  return b.int8s(name, dims, std::vector<int8_t>(zero_points.begin(), zero_points.end()));
}

// QuantizeLinear -> DequantizeLinear with a 0-d float scale and a 0-d zero point: int8 zero
// point 0 for tensorrt; for the PyTorch presets the observer's zero point, uint8 for quint8
// ranges, and fbgemm's reduce_range [0, 127] as QuantizeLinear -> Clip(max = uint8 127) ->
// DequantizeLinear, torch.onnx's opset-13 form (QuantizeLinear alone saturates to [0, 255]).
void emit_quantize(GraphBuilder& b, quant::Target target, const std::string& name,
                   const quant::QParams& q, const std::string& in, const std::string& out) {
  QAT_CHECK(!q.per_channel() && q.scale.numel() == 1,
            "an activation quantizer must be per tensor (TensorRT: \"Activations-quantization "
            "does not support per-axis\")");
  const int32_t zero_point = q.zero_point.to(DType::kInt32).to_vector<int32_t>().at(0);
  if (target == quant::Target::kTensorRT) {
    QAT_CHECK(zero_point == 0, "zero point ", zero_point,
              ": TensorRT runs symmetric int8 only (zero point 0)");
    QAT_CHECK(q.quant_min == -128 && q.quant_max == 127, "integer range [", q.quant_min, ", ",
              q.quant_max, "]: ONNX int8 QuantizeLinear saturates to [-128, 127] only");
  }
  const bool uint8 = uint8_range(q);
  const std::string scale = b.float_scalar(name + "/scale", q.scale.to_vector<float>()[0]);
  const std::string zp = zero_point_initializer(b, name + "/zero_point", {}, {zero_point}, uint8);
  const std::string int8 = name + (uint8 ? "/uint8" : "/int8");
  b.node("QuantizeLinear", name + "/quantize", {in, scale, zp}, {int8});
  std::string codes = int8;
  if (q.quant_max == 127 && uint8) {
    const std::string max = b.uint8s(name + "/clip_max", {}, {127});
    codes = name + "/clipped";
    b.node("Clip", name + "/clip", {int8, "", max}, {codes});
  }
  b.node("DequantizeLinear", name + "/dequantize", {codes, scale, zp}, {out});
}

// An IntLayer: int8 weight -> DequantizeLinear with per-channel scales (axis=0) or a per-tensor
// scale (qnnpack) and int8 zero points -> Conv / Gemm with the float folded bias
// [-> activation] [-> output Q/DQ]. torch.onnx writes the float weight and a QuantizeLinear
// (rint(w / s)); the int8 codes here are the ones the training forward used (the PyTorch
// presets round w * (1 / s)), so the deployed weights are the trained ones.
void emit_int_layer(GraphBuilder& b, quant::Target target, const Call& c,
                    const graph::IntLayer& layer) {
  const Shape& shape = layer.weight.shape();
  const int64_t channels = shape.at(0);
  const bool per_channel = layer.weight_qparams.per_channel();
  const int64_t scales = per_channel ? channels : 1;
  QAT_CHECK(layer.weight.dtype() == DType::kInt8, "the IntLayer weight must be int8");
  QAT_CHECK(layer.weight_qparams.scale.numel() == scales, channels, " output channels but ",
            layer.weight_qparams.scale.numel(), " weight scales");
  QAT_CHECK(per_channel || target != quant::Target::kTensorRT,
            "tensorrt weights are per channel, got a per-tensor weight quantizer");
  QAT_CHECK(!per_channel || *layer.weight_qparams.axis == 0, "the weight quantizer's axis is ",
            *layer.weight_qparams.axis, ", not 0 (output channels)");
  const std::vector<int32_t> zero_points =
      layer.weight_qparams.zero_point.to(DType::kInt32).to_vector<int32_t>();
  for (const int32_t zp : zero_points)
    QAT_CHECK(zp == 0, "weight zero point ", zp, ": qint8 weights are symmetric (zero point 0)");
  const int8_t* codes = layer.weight.data<int8_t>();
  const std::string w_int8 = b.int8s(c.name + "/weight_int8", shape,
                                     std::vector<int8_t>(codes, codes + layer.weight.numel()));
  const Shape qparam_dims = per_channel ? Shape{channels} : Shape{};
  const std::string w_scale = b.floats(c.name + "/weight_scale", qparam_dims,
                                       layer.weight_qparams.scale.to_vector<float>());
  const std::string w_zp = zero_point_initializer(b, c.name + "/weight_zero_point", qparam_dims,
                                                  zero_points, /*uint8=*/false);
  onnx::NodeProto& dequantize = b.node("DequantizeLinear", c.name + "/weight_dequantize",
                                       {w_int8, w_scale, w_zp}, {c.name + "/weight"});
  if (per_channel) attr_int(dequantize, "axis", 0);
  const std::string bias = layer.bias.defined() ? b.floats(c.name + "/bias", layer.bias) : "";
  const graph::Activation activation = float_activation(layer.activation);
  const int steps = 1 + (activation != graph::Activation::kNone) + layer.output.has_value();
  std::string x = step_output(c, 0, steps, c.op);
  emit_layer(b, c, shape, c.inputs.at(0), c.name + "/weight", bias, x);
  int step = 1;
  if (activation != graph::Activation::kNone) {
    const std::string out = step_output(c, step++, steps, "act");
    emit_activation(b, c.name + "/activation", activation, x, out);
    x = out;
  }
  if (layer.output) {
    emit_quantize(b, target, c.name + "/output", *layer.output, x, c.outputs.at(0));
  }
}

// ----- the walk shared by both exports -----

// What the walk needs of a qat node (a GraphNode or an IntNode).
struct NodeInfo {
  std::string name;
  std::vector<Value> inputs;
  std::vector<Shape> output_shapes;
};

// Holds the model under construction and the ONNX tensor name of every qat value: the graph
// input / output names for those, else the qat node name (":k" for output k of a node with
// several).
class Exporter {
 public:
  Exporter(const OnnxExportOptions& options, std::vector<NodeInfo> nodes, int input, int output)
      : options_(options),
        nodes_(std::move(nodes)),
        input_(input),
        output_value_(nodes_.at(output).inputs.at(0)),
        b_(*model_.mutable_graph()),
        live_(nodes_.size(), false) {
    live_[output] = true;  // a node is live when a live node reads it
    for (int i = output; i >= 0; --i) {
      if (!live_[i]) continue;
      for (const Value& v : nodes_[i].inputs) live_.at(v.node) = true;
    }
  }

  GraphBuilder& builder() { return b_; }
  // Whether node i's values reach the output.
  bool live(int i) const { return live_.at(i); }

  // Node i as a Call of `op` with `attrs`; the builder's doc now names node i (`source_op`).
  Call call(int i, const std::string& source_op, const std::string& op, const OpAttrs& attrs) {
    const NodeInfo& node = nodes_.at(i);
    b_.set_source(node.name, source_op);
    Call c;
    c.name = node.name;
    c.op = op;
    c.attrs = attrs;
    for (const Value& v : node.inputs) {
      c.inputs.push_back(value_name(v));
      c.input_shapes.push_back(nodes_.at(v.node).output_shapes.at(v.output));
    }
    for (size_t k = 0; k < node.output_shapes.size(); ++k)
      c.outputs.push_back(value_name(Value{i, static_cast<int>(k)}));
    c.output_shapes = node.output_shapes;
    c.dynamic_batch = !options_.batch_dim().empty();
    return c;
  }

  // The finished, checked model, serialized; `doc` describes the export.
  std::string finish(const std::string& doc) {
    model_.set_ir_version(kIrVersion);
    onnx::OperatorSetIdProto* opset = model_.add_opset_import();
    opset->set_domain("");
    opset->set_version(kOpset);
    model_.set_producer_name("qat");
    model_.set_doc_string(doc);
    onnx::GraphProto& g = *model_.mutable_graph();
    g.set_name(options_.graph_name());
    if (output_value_.node == input_) {  // the model returns its input
      b_.set_source(nodes_.at(input_).name, "input");
      b_.node("Identity", options_.output_name(), {options_.input_name()},
              {options_.output_name()});
    }
    add_value_info(*g.add_input(), options_.input_name(), nodes_.at(input_).output_shapes.at(0));
    add_value_info(*g.add_output(), options_.output_name(),
                   nodes_.at(output_value_.node).output_shapes.at(output_value_.output));
    try {
      onnx::checker::check_model(model_);
    } catch (const std::exception& e) {
      QAT_CHECK(false, "the ONNX checker rejects the exported model: ", e.what());
    }
    // Python's check_model(full_check=True): strict type and shape inference, which also
    // checks the inferred output shape against the declared one.
    try {
      onnx::ModelProto inferred = model_;
      onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                         onnx::ShapeInferenceOptions(true, 1, false));
    } catch (const std::exception& e) {
      QAT_CHECK(false, "ONNX shape inference rejects the exported model: ", e.what());
    }
    std::string bytes;
    QAT_CHECK(model_.SerializeToString(&bytes), "cannot serialize the ONNX model (over 2 GB?)");
    return bytes;
  }

 private:
  std::string value_name(Value v) const {
    if (v.node == input_) return options_.input_name();
    if (v == output_value_) return options_.output_name();
    const NodeInfo& node = nodes_.at(v.node);
    return node.name + (node.output_shapes.size() > 1 ? ":" + std::to_string(v.output) : "");
  }

  void add_value_info(onnx::ValueInfoProto& info, const std::string& name, const Shape& shape) {
    info.set_name(name);
    onnx::TypeProto_Tensor* t = info.mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    onnx::TensorShapeProto* s = t->mutable_shape();
    for (size_t d = 0; d < shape.size(); ++d) {
      onnx::TensorShapeProto_Dimension* dim = s->add_dim();
      if (d == 0 && !options_.batch_dim().empty()) {
        dim->set_dim_param(options_.batch_dim());
      } else {
        dim->set_dim_value(shape[d]);
      }
    }
  }

  OnnxExportOptions options_;
  std::vector<NodeInfo> nodes_;
  int input_;
  Value output_value_;
  onnx::ModelProto model_;
  GraphBuilder b_;
  std::vector<bool> live_;
};

// ----- float graph -----

// `module` as a T when it is exactly a T: a subclass may compute something else in its
// forward_impl (fuse() matches the same way).
template <class T>
const T* exactly(const nn::Module& module) {
  return typeid(module) == typeid(T) ? static_cast<const T*>(&module) : nullptr;
}

// The functional op of a parameter-free float module call (convert.cc's forms), or "".
// Matches exact classes only, as exactly<> does.
std::string module_function(const nn::Module& module, OpAttrs& attrs) {
  if (exactly<nn::Identity>(module)) return "identity";
  std::optional<graph::FunctionalForm> form = graph::functional_form(module, /*exact_type=*/true);
  if (!form) return "";
  attrs = std::move(form->attrs);
  return form->op;
}

void emit_float_module(Exporter& e, int i, const graph::GraphNode& node) {
  const nn::Module& module = *node.module;
  QAT_CHECK(dynamic_cast<const quant::QatModule*>(&module) == nullptr &&
                dynamic_cast<const quant::FakeQuantize*>(&module) == nullptr,
            "the graph is prepared for QAT (a ", module.type_name(),
            "); export graph::convert() of the QuantizableModel instead");
  GraphBuilder& b = e.builder();
  if (exactly<nn::Conv2d>(module) || exactly<nn::Linear>(module)) {
    emit_float_layer(b, e.call(i, node.op, "", {}), module, nullptr, graph::Activation::kNone);
  } else if (const auto* fused = exactly<graph::FusedConv2d>(module)) {
    emit_float_layer(b, e.call(i, node.op, "", {}), *fused->conv(), fused->bn().get(),
                     fused->activation());
  } else if (const auto* fused_linear = exactly<graph::FusedLinear>(module)) {
    emit_float_layer(b, e.call(i, node.op, "", {}), *fused_linear->linear(), nullptr,
                     fused_linear->activation());
  } else if (const auto* bn = exactly<nn::BatchNorm2d>(module)) {
    const Call c = e.call(i, node.op, "", {});
    emit_batch_norm(b, c.name, c.name, *bn, c.inputs.at(0), c.outputs.at(0));
  } else {
    OpAttrs attrs;
    const std::string op = module_function(module, attrs);
    QAT_CHECK(!op.empty(), "no ONNX export for module ", module.type_name());
    emit_function(b, e.call(i, node.op, op, attrs));
  }
}

}  // namespace

std::string to_onnx(const graph::Graph& graph, const OnnxExportOptions& options) {
  std::vector<NodeInfo> infos;
  for (const graph::GraphNode& node : graph.nodes)
    infos.push_back({node.name, node.inputs, node.output_shapes});
  Exporter e(options, std::move(infos), graph.input_node(), graph.output_node());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const graph::GraphNode& node = graph.nodes[i];
    if (!e.live(static_cast<int>(i)) || node.kind == graph::NodeKind::kInput ||
        node.kind == graph::NodeKind::kOutput)
      continue;
    try {
      if (node.kind == graph::NodeKind::kModule) {
        emit_float_module(e, static_cast<int>(i), node);
      } else {
        emit_function(e.builder(), e.call(static_cast<int>(i), node.op, node.op, node.attrs));
      }
    } catch (const Error& err) {
      throw Error("ONNX export: node '" + node.name + "' (" + node.op + "): " + err.what());
    }
  }
  return e.finish("qat float model, eval semantics (BatchNormalization on running statistics)");
}

std::string to_onnx(const graph::IntModel& model, const OnnxExportOptions& options) {
  QAT_CHECK(graph::runs_qdq(model.target), "ONNX export: the IntModel's target is '",
            quant::target_name(model.target),
            "'; the ONNX Q/DQ export is for 'tensorrt' and the PyTorch presets (fbgemm, qnnpack, "
            "qnnpack_perchannel) (HINT: tnn models go to export_tnn)");
  std::vector<NodeInfo> infos;
  int input = -1, output = -1;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const graph::IntNode& node = model.nodes[i];
    infos.push_back({node.name, node.inputs, node.output_shapes});
    if (node.op == "input" && input < 0) input = static_cast<int>(i);
    if (node.op == "output" && output < 0) output = static_cast<int>(i);
  }
  QAT_CHECK(input >= 0 && output >= 0, "ONNX export: the IntModel has no input or output node");
  Exporter e(options, std::move(infos), input, output);
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const graph::IntNode& node = model.nodes[i];
    if (!e.live(static_cast<int>(i)) || node.op == "input" || node.op == "output") continue;
    try {
      const Call c = e.call(static_cast<int>(i), node.op, node.op, node.attrs);
      if (node.op == "quantize") {
        QAT_CHECK(node.qparams.has_value(), "a quantize node without qparams");
        emit_quantize(e.builder(), model.target, c.name, *node.qparams, c.inputs.at(0),
                      c.outputs.at(0));
      } else if (node.layer) {
        emit_int_layer(e.builder(), model.target, c, *node.layer);
      } else {
        emit_function(e.builder(), c);
      }
    } catch (const Error& err) {
      throw Error("ONNX export: node '" + node.name + "' (" + node.op + "): " + err.what());
    }
  }
  if (model.target == quant::Target::kTensorRT) {
    return e.finish(
        "qat QAT model for TensorRT: Q/DQ (int8, zero point 0), per-channel int8 weights "
        "(axis 0), BN folded");
  }
  return e.finish(std::string("qat QAT model, PyTorch preset '") +
                  quant::target_name(model.target) +
                  "': Q/DQ as torch.onnx exports fake quants (uint8 activations with zero "
                  "points, int8 weights), BN folded");
}

void export_onnx(const graph::Graph& graph, const std::string& path,
                 const OnnxExportOptions& options) {
  write_file_atomically(path, to_onnx(graph, options));
}

void export_onnx(const graph::IntModel& model, const std::string& path,
                 const OnnxExportOptions& options) {
  write_file_atomically(path, to_onnx(model, options));
}

void export_onnx(nn::Module& model, const Shape& input_shape, const std::string& path,
                 const OnnxExportOptions& options) {
  export_onnx(graph::trace(model, input_shape), path, options);
}

}  // namespace qat::exporters
