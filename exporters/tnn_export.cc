#include "exporters/tnn_export.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/kernels/pool.h"
#include "core/serialize.h"
#include "graph/executor.h"
#include "graph/fuse.h"
#include "graph/fused_modules.h"
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

// TNN's ActivationType (layer_param.h) in a Convolution's last parameter.
constexpr int kActNone = 0;
constexpr int kActReLU = 1;
constexpr int kActReLU6 = 2;

constexpr size_t kMaxNameLength = 200;

// One node as the exporter sees it, from an IntNode (int8) or a float graph node.
struct ExportNode {
  std::string name;
  std::string op;
  std::vector<Value> inputs;
  OpAttrs attrs;
  std::vector<Shape> output_shapes;
  // int8 export: the int8 blob scale of each output (IntNode::output_scales), the blob scales
  // an int8 add / cat reads, the scale of a "quantize".
  std::vector<std::optional<float>> output_scales;
  std::vector<float> input_scales;
  std::optional<float> quantize_scale;
  // conv2d / linear: int8 weight, int32 bias, float accumulator scale (int8), or float weight
  // and bias; batch_norm: k in weight, b in bias. bias undefined when there is none.
  Tensor weight;
  Tensor bias;
  Tensor scale;
  int activation = kActNone;  // conv2d: TNN activation_type; linear: a ReLU / ReLU6 after it
  bool int8 = false;          // runs as a Quantized* layer

  int num_outputs() const { return static_cast<int>(output_shapes.size()); }
};

struct ExportModel {
  std::vector<ExportNode> nodes;
  // int8: graph::tnn_load_fusions() of the IntModel (-1 where none), else empty.
  std::vector<int> fused_conv;
};

bool dissolved(const std::string& op) {
  return op == "quantize" || op == "dropout" || op == "identity";
}

std::string node_error(const ExportNode& n, const std::string& what) {
  return "tnn export: node '" + n.name + "' (" + n.op + "): " + what;
}

std::string fmt_double(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", v);
  return buffer;
}

// ----- the IntModel side -----

float per_tensor_scale(const quant::QParams& q, const std::string& what) {
  QAT_CHECK(!q.per_channel() && q.scale.numel() == 1, what,
            " must be per tensor (TNN's blob scales from QAT are), got ", q.scale.numel(),
            " scales");
  const int32_t zero_point = q.zero_point.to_vector<int32_t>().at(0);
  QAT_CHECK(zero_point == 0, what,
            " must be symmetric: TNN's X86 backend ignores zero points (tnn_format.md §3.3), "
            "got zero point ",
            zero_point);
  return q.scale.to_vector<float>()[0];
}

ExportNode from_int_node(const graph::IntNode& n) {
  ExportNode e;
  e.name = n.name;
  e.op = n.op;
  e.inputs = n.inputs;
  e.attrs = n.attrs;
  e.output_shapes = n.output_shapes;
  e.output_scales = n.output_scales;
  e.input_scales = n.input_scales;
  e.output_scales.resize(n.output_shapes.size());
  if (n.op == "quantize") {
    QAT_CHECK(n.qparams.has_value(), "a quantize node without qparams");
    e.quantize_scale = per_tensor_scale(*n.qparams, "its scale");
  }
  if (!n.layer) return e;
  const graph::IntLayer& l = *n.layer;
  QAT_CHECK(l.weight.dtype() == DType::kInt8, "the weight must be int8 codes, got ",
            dtype_name(l.weight.dtype()));
  const int64_t channels = l.weight.size(0);
  for (const int32_t zp : l.weight_qparams.zero_point.to_vector<int32_t>())
    QAT_CHECK(zp == 0, "the weight zero points must be 0 (symmetric), got ", zp);
  QAT_CHECK(l.accumulator_scale.defined() && l.accumulator_scale.numel() == channels,
            "it has no accumulator scale s_in * s_w per output channel (HINT: convert for the "
            "'tnn' target)");
  QAT_CHECK(l.output.has_value(),
            "TNN requantizes a conv / FC output to int8, but the layer has "
            "no output quantizer");
  per_tensor_scale(*l.output, "its output scale");
  QAT_CHECK(!l.bias.defined() || l.bias_int32.defined(),
            "it has a float bias but no int32 bias (HINT: convert for the 'tnn' target)");
  e.weight = l.weight;
  // tnn_format.md §7: an int8 conv / FC always carries its int32 bias (zeros when it has none).
  e.bias = l.bias_int32.defined() ? l.bias_int32 : Tensor::zeros({channels}, DType::kInt32);
  e.scale = l.accumulator_scale.to(DType::kFloat32);
  switch (l.activation) {
    case quant::FusedActivation::kNone:
      e.activation = kActNone;
      break;
    case quant::FusedActivation::kReLU:
      e.activation = kActReLU;
      break;
    case quant::FusedActivation::kReLU6:
      e.activation = kActReLU6;
      break;
  }
  e.int8 = true;
  return e;
}

ExportModel from_int_model(const graph::IntModel& model) {
  QAT_CHECK(model.target == quant::Target::kTNN, "tnn export: the IntModel was converted for '",
            quant::target_name(model.target), "' (HINT: prepare with QConfig::preset(\"tnn\"))");
  ExportModel out;
  for (const graph::IntNode& n : model.nodes) {
    try {
      out.nodes.push_back(from_int_node(n));
    } catch (const Error& e) {
      throw Error("tnn export: node '" + n.name + "' (" + n.op + "): " + e.what());
    }
  }
  for (ExportNode& e : out.nodes) {
    if (e.op == "input" || e.op == "output" || e.op == "quantize" || e.int8) continue;
    e.int8 = !e.output_scales.empty() && e.output_scales[0].has_value();
  }
  out.fused_conv = graph::tnn_load_fusions(model);
  return out;
}

// ----- the float graph side -----

std::vector<float> floats(const Tensor& t) { return t.to_vector<float>(); }

// k = gamma / sqrt(var + eps) and b = beta - mean * k of an eval-mode BN, in double.
void batch_norm_affine(const nn::BatchNorm2d& bn, std::vector<double>& k, std::vector<double>& b) {
  QAT_CHECK(bn.running_mean.defined() && bn.running_var.defined(),
            "a BatchNorm2d without running statistics normalizes with batch statistics even in "
            "eval mode; TNN has no form for it");
  const int64_t c = bn.num_features;
  const std::vector<float> mean = floats(bn.running_mean), var = floats(bn.running_var);
  const std::vector<float> gamma =
      bn.weight.defined() ? floats(bn.weight) : std::vector<float>(c, 1.0f);
  const std::vector<float> beta = bn.bias.defined() ? floats(bn.bias) : std::vector<float>(c, 0.0f);
  k.resize(c);
  b.resize(c);
  for (int64_t i = 0; i < c; ++i) {
    k[i] = gamma[i] / std::sqrt(static_cast<double>(var[i]) + bn.options.eps());
    b[i] = beta[i] - mean[i] * k[i];
  }
}

// W' = W * k[c], b' = (b - mu) * k + beta (BN folded; Jacob et al. 2018, sec. 3.2).
void set_conv(ExportNode& e, const nn::Conv2d& conv, const nn::BatchNorm2d* bn) {
  const ops::Conv2dParams p = conv.conv_params();
  e.op = "conv2d";
  e.attrs = {
      {"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation}, {"groups", p.groups}};
  const int64_t channels = conv.weight.size(0);
  std::vector<float> w = floats(conv.weight);
  std::vector<float> bias =
      conv.bias.defined() ? floats(conv.bias) : std::vector<float>(channels, 0.0f);
  if (bn != nullptr) {
    std::vector<double> k, b;
    batch_norm_affine(*bn, k, b);
    const int64_t inner = conv.weight.numel() / channels;
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t i = c * inner; i < (c + 1) * inner; ++i) w[i] = static_cast<float>(w[i] * k[c]);
      bias[c] = static_cast<float>(bias[c] * k[c] + b[c]);
    }
  }
  e.weight = Tensor::from_vector(w, conv.weight.shape());
  if (conv.bias.defined() || bn != nullptr) e.bias = Tensor::from_vector(bias, {channels});
}

int activation_type(graph::Activation a) {
  switch (a) {
    case graph::Activation::kNone:
      return kActNone;
    case graph::Activation::kReLU:
      return kActReLU;
    case graph::Activation::kReLU6:
    case graph::Activation::kClamp0To6:
      return kActReLU6;
  }
  return kActNone;
}

// A float module call as its functional op (the executor's attrs); false if there is none.
bool set_float_module(ExportNode& e, const nn::Module& module) {
  if (const auto* conv = dynamic_cast<const nn::Conv2d*>(&module)) {
    set_conv(e, *conv, nullptr);
  } else if (const auto* fused = dynamic_cast<const graph::FusedConv2d*>(&module)) {
    set_conv(e, *fused->conv(), fused->bn().get());
    e.activation = activation_type(fused->activation());
  } else if (const auto* linear = dynamic_cast<const nn::Linear*>(&module)) {
    e.op = "linear";
    e.weight = linear->weight.detach().clone();
    if (linear->bias.defined()) e.bias = linear->bias.detach().clone();
  } else if (const auto* fused_linear = dynamic_cast<const graph::FusedLinear*>(&module)) {
    set_float_module(e, *fused_linear->linear());
    e.activation = activation_type(fused_linear->activation());
  } else if (const auto* bn = dynamic_cast<const nn::BatchNorm2d*>(&module)) {
    std::vector<double> k, b;
    batch_norm_affine(*bn, k, b);
    e.op = "batch_norm";
    e.weight = Tensor::from_vector(std::vector<float>(k.begin(), k.end()), {bn->num_features});
    e.bias = Tensor::from_vector(std::vector<float>(b.begin(), b.end()), {bn->num_features});
  } else if (dynamic_cast<const nn::Identity*>(&module)) {
    e.op = "identity";
  } else if (std::optional<graph::FunctionalForm> form = graph::functional_form(module)) {
    // ReLU, ReLU6, the pools, Flatten, Dropout. Its eval dropout (training=false) is what TNN
    // runs: the exporter dissolves a dropout node into its input.
    e.op = std::move(form->op);
    e.attrs = std::move(form->attrs);
  } else {
    return false;
  }
  return true;
}

ExportNode from_graph_node(const graph::GraphNode& node) {
  ExportNode e;
  e.name = node.name;
  e.inputs = node.inputs;
  e.output_shapes = node.output_shapes;
  e.output_scales.assign(node.output_shapes.size(), std::nullopt);
  switch (node.kind) {
    case graph::NodeKind::kInput:
      e.op = "input";
      return e;
    case graph::NodeKind::kOutput:
      e.op = "output";
      return e;
    case graph::NodeKind::kFunction:
      QAT_CHECK(node.op != "conv2d" && node.op != "linear" && node.op != "batch_norm",
                "a functional ", node.op,
                " reads its parameters as graph values; TNN needs "
                "them as layer resources (use the nn module)");
      e.op = node.op;
      e.attrs = node.attrs;
      return e;
    case graph::NodeKind::kModule:
      break;
  }
  QAT_CHECK(node.module != nullptr, "a module node without a module");
  QAT_CHECK(dynamic_cast<const quant::FakeQuantize*>(node.module.get()) == nullptr &&
                dynamic_cast<const quant::QatModule*>(node.module.get()) == nullptr,
            "the graph is prepared for QAT (", node.module->type_name(),
            "); export the int8 model instead (HINT: graph::convert() it, then export_tnn())");
  QAT_CHECK(set_float_module(e, *node.module), "no TNN layer for the module ",
            node.module->type_name());
  return e;
}

ExportModel from_float_graph(const graph::Graph& graph) {
  const graph::Graph fused = graph::fuse(graph);
  ExportModel out;
  for (const graph::GraphNode& node : fused.nodes) {
    try {
      out.nodes.push_back(from_graph_node(node));
    } catch (const Error& e) {
      throw Error("tnn export: node '" + node.name + "' (" + node.op + "): " + e.what());
    }
  }
  return out;
}

// ----- the net -----

// A layer whose blobs are still ids into Builder::blob_names_.
struct PendingLayer {
  std::string type;
  int node = -1;
  bool activation_only = false;  // the ReLU / ReLU6 after an InnerProduct ("<name>~act")
  std::vector<int> inputs;
  std::vector<int> outputs;
  std::vector<std::string> params;
};

class Builder {
 public:
  explicit Builder(const ExportModel& model) : model_(model), nodes_(model.nodes) {}

  TnnNet build();

 private:
  void mark_live();
  Value resolve(Value v) const;
  std::optional<float> int8_scale(Value blob) const;
  void collect_blob_scales();
  void check_int8_inputs(int i) const;
  void assign_names();
  int blob(Value v) const { return blob_of_.at({v.node, v.output}); }
  void check_int8_scales(int i) const;
  void emit(int i);
  void fit_token_limit();
  void check_load_fusions() const;
  TnnNet finish();
  std::string layer_name(const PendingLayer& l) const;
  std::string layer_token(const PendingLayer& l) const;
  std::optional<float> blob_scale(int blob_id) const;

  const ExportModel& model_;
  const std::vector<ExportNode>& nodes_;
  std::vector<bool> live_;
  int output_node_ = -1;
  std::map<std::pair<int, int>, int> blob_of_;  // (node, output) of a blob's producer -> id
  std::vector<Value> blob_values_;              // id -> producer value
  std::vector<std::string> blob_names_;
  std::vector<std::string> layer_names_;                    // by node index
  std::map<std::pair<int, int>, float> float_blob_scales_;  // float blobs int8 layers read
  std::vector<PendingLayer> layers_;
};

void Builder::mark_live() {
  live_.assign(nodes_.size(), false);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].op != "output") continue;
    QAT_CHECK(output_node_ < 0, "tnn export: the model has more than one output node");
    output_node_ = static_cast<int>(i);
  }
  QAT_CHECK(output_node_ >= 0, "tnn export: the model has no output node");
  live_[output_node_] = true;
  for (int i = output_node_; i >= 0; --i) {
    if (!live_[i]) continue;
    for (const Value& v : nodes_[i].inputs) {
      QAT_CHECK(v.node >= 0 && v.node < i, node_error(nodes_[i], "reads a later node"));
      live_[v.node] = true;
    }
  }
}

Value Builder::resolve(Value v) const {
  while (dissolved(nodes_[v.node].op)) v = nodes_[v.node].inputs.at(0);
  return v;
}

std::optional<float> Builder::int8_scale(Value blob) const {
  const ExportNode& n = nodes_[blob.node];
  if (n.op == "input") return std::nullopt;
  return n.output_scales.at(blob.output);
}

// A quantize of a float value gives that blob its BlobScale; a quantize of an int8 value must
// keep its scale (TNN has no requantizing layer).
void Builder::collect_blob_scales() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const ExportNode& n = nodes_[i];
    if (!live_[i] || n.op != "quantize") continue;
    const Value src = resolve(n.inputs.at(0));
    if (const std::optional<float> s = int8_scale(src)) {
      QAT_CHECK(*s == *n.quantize_scale,
                node_error(n, "requantizes an int8 blob from scale " + fmt_double(*s) + " to " +
                                  fmt_double(*n.quantize_scale) +
                                  "; TNN has no requantizing layer (only the identity one "
                                  "after an add / cat is left out)"));
      continue;
    }
    auto [it, inserted] =
        float_blob_scales_.emplace(std::make_pair(src.node, src.output), *n.quantize_scale);
    QAT_CHECK(inserted || it->second == *n.quantize_scale,
              node_error(n, "quantizes '" + nodes_[src.node].name +
                                "' with a second scale; a TNN blob has one"));
    // Its readers must be int8 layers (or the same quantizer again): TNN keeps the blob float.
    for (size_t j = i + 1; j < nodes_.size(); ++j) {
      if (!live_[j]) continue;
      for (const Value& v : nodes_[j].inputs) {
        if (v.node != static_cast<int>(i)) continue;
        QAT_CHECK(nodes_[j].int8 || nodes_[j].op == "quantize",
                  node_error(nodes_[j], "reads the quantized value '" + n.name +
                                            "' in float; the TNN blob there is the float '" +
                                            nodes_[src.node].name + "'"));
      }
    }
  }
}

// An int8 layer reads int8 blobs, or float ones through a quantize (TNN's Reformat).
void Builder::check_int8_inputs(int i) const {
  const ExportNode& n = nodes_[i];
  for (const Value& v : n.inputs) {
    const Value src = resolve(v);
    if (int8_scale(src)) continue;
    Value q = v;
    bool through_quantize = false;
    while (dissolved(nodes_[q.node].op)) {
      through_quantize = through_quantize || nodes_[q.node].op == "quantize";
      q = nodes_[q.node].inputs.at(0);
    }
    QAT_CHECK(through_quantize, node_error(n, "runs in int8 but reads the float value '" +
                                                  nodes_[src.node].name + "' unquantized"));
  }
}

void Builder::assign_names() {
  std::vector<std::string> layer_names, blob_names;
  std::vector<int> layer_nodes;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const ExportNode& n = nodes_[i];
    if (!live_[i] || dissolved(n.op) || n.op == "output") continue;
    if (n.op != "input") {
      layer_names.push_back(n.name);
      layer_nodes.push_back(static_cast<int>(i));
    }
    for (int k = 0; k < n.num_outputs(); ++k) {
      blob_of_[{static_cast<int>(i), k}] = static_cast<int>(blob_values_.size());
      blob_values_.push_back({static_cast<int>(i), k});
      blob_names.push_back(n.num_outputs() == 1 ? n.name : n.name + "_" + std::to_string(k));
    }
  }
  blob_names_ = tnn_names(blob_names);
  const std::vector<std::string> safe = tnn_names(layer_names);
  layer_names_.assign(nodes_.size(), "");
  for (size_t k = 0; k < layer_nodes.size(); ++k) layer_names_[layer_nodes[k]] = safe[k];
}

std::string int_param(int64_t v) { return std::to_string(v); }

// ----- one writer per op: the layer type and parameters (tnn_format.md §1.4) -----

// Writes the type and params of `l` for node `n`, whose input 0 has shape `in`.
using LayerWriter = void (*)(const ExportNode& n, const Shape& in, PendingLayer& l);

void write_conv(const ExportNode& n, const Shape&, PendingLayer& l) {
  QAT_CHECK(n.weight.dim() == 4, node_error(n, "the weight must be [OC, IC / groups, KH, KW]"));
  const auto [stride_h, stride_w] = pair_attr(n.attrs, "stride");
  const auto [pad_h, pad_w] = pair_attr(n.attrs, "padding");
  const auto [dilation_h, dilation_w] = pair_attr(n.attrs, "dilation");
  const Shape& w = n.weight.shape();
  l.type = n.int8 ? "QuantizedConvolution" : "Convolution";
  // group input_channel(per group) output_channel kernel_h kernel_w stride_h stride_w pad_h
  // pad_w bias pad_type(-1: explicit pads) dilation_h dilation_w activation_type
  l.params = {int_param(n.attrs.get_int("groups")),
              int_param(w[1]),
              int_param(w[0]),
              int_param(w[2]),
              int_param(w[3]),
              int_param(stride_h),
              int_param(stride_w),
              int_param(pad_h),
              int_param(pad_w),
              n.bias.defined() ? "1" : "0",
              "-1",
              int_param(dilation_h),
              int_param(dilation_w),
              int_param(n.activation)};
}

void write_linear(const ExportNode& n, const Shape&, PendingLayer& l) {
  QAT_CHECK(n.weight.dim() == 2, node_error(n, "the weight must be [OC, IC]"));
  l.type = n.int8 ? "QuantizedInnerProduct" : "InnerProduct";
  // num_output has_bias transpose axis
  l.params = {int_param(n.weight.size(0)), n.bias.defined() ? "1" : "0", "0", "1"};
}

void write_batch_norm(const ExportNode&, const Shape&, PendingLayer& l) {
  l.type = "BatchNormCxx";  // k and b are its resource
}

// Output size of a pool window along one axis, PyTorch's rule (floor or ceil; with ceil the
// last window must start inside the input or the left padding).
// The pool output size, as PyTorch (and the tracer) computes it.
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  return kernels::pool2d_output_size(in, k, s, p, /*dilation=*/1, ceil_mode);
}

// max_pool2d, avg_pool2d, adaptive_avg_pool2d.
void write_pool(const ExportNode& n, const Shape& in, PendingLayer& l) {
  l.type = n.int8 ? "QuantizedPooling" : "Pooling";
  QAT_CHECK(in.size() == 4, node_error(n, "pools a [N, C, H, W] input only"));
  int64_t type = 1, kh = 0, kw = 0, sh = 1, sw = 1, ph = 0, pw = 0;
  bool ceil_mode = false;
  if (n.op == "adaptive_avg_pool2d") {
    const auto [oh, ow] = pair_attr(n.attrs, "output_size");
    if (oh != 1 || ow != 1) {  // kernel 0 0 is TNN's global pool; others must tile exactly
      QAT_CHECK(in[2] % oh == 0 && in[3] % ow == 0,
                node_error(n, "TNN's Pooling has no adaptive form for output " +
                                  shape_str({oh, ow}) + " of input " + shape_str(in)));
      kh = sh = in[2] / oh;
      kw = sw = in[3] / ow;
    }
  } else {
    type = n.op == "max_pool2d" ? 0 : 1;
    const auto kernel = pair_attr(n.attrs, "kernel");
    const auto stride = pair_attr(n.attrs, "stride");
    const auto padding = pair_attr(n.attrs, "padding");
    kh = kernel[0], kw = kernel[1], sh = stride[0], sw = stride[1], ph = padding[0],
    pw = padding[1];
    ceil_mode = n.attrs.get_bool("ceil_mode");
    if (type == 0) {
      QAT_CHECK(pair_attr(n.attrs, "dilation") == (std::array<int64_t, 2>{1, 1}),
                node_error(n, "TNN's Pooling has no dilation"));
    } else {
      // What TNN divides by for a window cut by padding or by the ceil rule is not in the
      // spec: export only full windows.
      QAT_CHECK(ph == 0 && pw == 0, node_error(n, "average pooling with padding is not exported"));
      QAT_CHECK(pool_out(in[2], kh, sh, 0, ceil_mode) == pool_out(in[2], kh, sh, 0, false) &&
                    pool_out(in[3], kw, sw, 0, ceil_mode) == pool_out(in[3], kw, sw, 0, false),
                node_error(n,
                           "average pooling with a partial window (ceil_mode) is not "
                           "exported"));
    }
  }
  // pool_type kernel_h kernel_w stride_h stride_w pad_h pad_w kernel_index_h kernel_index_w
  // pad_type ceil_mode is_adaptive_pool output_h output_w
  l.params = {int_param(type),
              int_param(kh),
              int_param(kw),
              int_param(sh),
              int_param(sw),
              int_param(ph),
              int_param(pw),
              "-1",
              "-1",
              "-1",
              ceil_mode ? "1" : "0",
              "0",
              "0",
              "0"};
}

void write_relu(const ExportNode& n, const Shape&, PendingLayer& l) {
  l.type = n.int8 ? "QuantizedReLU" : "ReLU";
}

void write_relu6(const ExportNode&, const Shape&, PendingLayer& l) { l.type = "ReLU6"; }

void write_clamp(const ExportNode& n, const Shape&, PendingLayer& l) {
  l.type = "Clip";  // min max
  l.params = {fmt_double(n.attrs.get_double("min")), fmt_double(n.attrs.get_double("max"))};
}

void write_add(const ExportNode& n, const Shape&, PendingLayer& l) {
  QAT_CHECK(n.inputs.size() == 2,
            node_error(n,
                       "an add of a constant is not exported (TNN keeps the constant as a "
                       "resource)"));
  // weight_input_index: unused with two blob inputs; TNN's quantization tool writes 1 and
  // onnx2tnn -1.
  l.type = n.int8 ? "QuantizedAdd" : "Add";
  l.params = {n.int8 ? "1" : "-1"};
}

void write_cat(const ExportNode& n, const Shape&, PendingLayer& l) {
  l.type = n.int8 ? "QuantizedConcat" : "Concat";  // axis
  l.params = {int_param(n.attrs.get_int("dim"))};
}

void write_channel_shuffle(const ExportNode& n, const Shape&, PendingLayer& l) {
  l.type = "ShuffleChannel";  // group
  l.params = {int_param(n.attrs.get_int("groups"))};
}

// chunk, split: SplitV axis count size_1 .. size_count.
void write_split(const ExportNode& n, const Shape&, PendingLayer& l) {
  const int64_t dim = n.attrs.get_int("dim");
  l.type = "SplitV";
  l.params = {int_param(dim), int_param(n.num_outputs())};
  for (const Shape& s : n.output_shapes) l.params.push_back(int_param(s.at(dim)));
}

// flatten, reshape.
void write_reshape(const ExportNode& n, const Shape& in, PendingLayer& l) {
  const auto rank = static_cast<int64_t>(in.size());
  if (n.op == "flatten" && normalize_dim(n.attrs.get_int("start_dim"), rank) == 1 &&
      normalize_dim(n.attrs.get_int("end_dim"), rank) == rank - 1) {
    // TNN's Flatten(axis) gives [prod(dims < axis), prod(dims >= axis)]: flatten(x, 1).
    l.type = "Flatten";
    l.params = {"1"};
    return;
  }
  // axis num_axes ndims dims reshape_type: the whole shape, NCHW order.
  const Shape shape = n.op == "reshape" ? n.attrs.get_ints("shape") : n.output_shapes.at(0);
  QAT_CHECK(std::find(shape.begin(), shape.end(), 0) == shape.end(),
            node_error(n, "a 0 in a TNN Reshape copies the input dim"));
  l.type = "Reshape";
  l.params = {"0", "-1", int_param(static_cast<int64_t>(shape.size()))};
  for (const int64_t d : shape) l.params.push_back(int_param(d));
  l.params.push_back("0");
}

void write_mean(const ExportNode& n, const Shape&, PendingLayer& l) {
  l.type = "ReduceMean";  // keep_dims axis_1 .. axis_n
  l.params = {n.attrs.get_bool("keepdim") ? "1" : "0"};
  for (const int64_t d : n.attrs.get_ints("dims")) l.params.push_back(int_param(d));
}

// Every op with a TNN layer. Quantize, dropout and identity have none (dissolved()).
const std::map<std::string, LayerWriter> kTnnWriters = {
    {"adaptive_avg_pool2d", write_pool},
    {"add", write_add},
    {"avg_pool2d", write_pool},
    {"batch_norm", write_batch_norm},
    {"cat", write_cat},
    {"channel_shuffle", write_channel_shuffle},
    {"chunk", write_split},
    {"clamp", write_clamp},
    {"conv2d", write_conv},
    {"flatten", write_reshape},
    {"linear", write_linear},
    {"max_pool2d", write_pool},
    {"mean", write_mean},
    {"relu", write_relu},
    {"relu6", write_relu6},
    {"reshape", write_reshape},
    {"split", write_split},
};

// The ops with a Quantized* layer (tnn_format.md §1.4).
const std::set<std::string> kInt8Ops = {
    "adaptive_avg_pool2d", "add", "avg_pool2d", "cat", "conv2d", "linear", "max_pool2d", "relu"};

// TNN's int8 ReLU and pools do not rescale (§3.4); an int8 add / cat reads its inputs' blob
// scales.
void Builder::check_int8_scales(int i) const {
  const ExportNode& n = nodes_[i];
  const std::string& op = n.op;
  if (op == "relu" || op == "max_pool2d" || op == "avg_pool2d" || op == "adaptive_avg_pool2d") {
    QAT_CHECK(blob_scale(blob(resolve(n.inputs[0]))) == n.output_scales[0],
              node_error(n, "TNN's int8 " + op +
                                " keeps its input's scale, but the output scale differs"));
  }
  if (op == "add" || op == "cat") {
    QAT_CHECK(n.input_scales.size() == n.inputs.size(),
              node_error(n, "an int8 add / cat needs one input scale per input"));
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      QAT_CHECK(blob_scale(blob(resolve(n.inputs[k]))) == n.input_scales[k],
                node_error(n, "input scale " + std::to_string(k) + " differs from its blob's"));
    }
  }
}

void Builder::emit(int i) {
  const ExportNode& n = nodes_[i];
  auto writer = kTnnWriters.find(n.op);
  QAT_CHECK(writer != kTnnWriters.end(), node_error(n, "no TNN layer for op '" + n.op + "'"));
  if (n.int8) {
    QAT_CHECK(kInt8Ops.count(n.op), node_error(n, "TNN has no int8 layer for '" + n.op + "'"));
    check_int8_inputs(i);
    check_int8_scales(i);
  }
  PendingLayer l;
  l.node = i;
  for (const Value& v : n.inputs) l.inputs.push_back(blob(resolve(v)));
  for (int k = 0; k < n.num_outputs(); ++k) l.outputs.push_back(blob({i, k}));
  const Shape in =
      n.inputs.empty() ? Shape{} : nodes_[n.inputs[0].node].output_shapes.at(n.inputs[0].output);
  writer->second(n, in, l);
  if (n.op != "linear" || n.activation == kActNone) {
    layers_.push_back(l);
    return;
  }
  // InnerProduct has no activation: a ReLU layer follows it. In int8 that ReLU keeps the
  // scale, so max(0, float2int8(v)) equals the fused float2int8(max(v, 0)); a ReLU6 would run
  // in float on the dequantized output instead of clamping the codes.
  QAT_CHECK(!n.int8 || n.activation == kActReLU,
            node_error(n, "TNN has no int8 ReLU6 to put after an int8 InnerProduct"));
  const int inner = static_cast<int>(blob_names_.size());
  blob_values_.push_back({i, 0});
  blob_names_.push_back(blob_names_[l.outputs[0]] + "~fc");
  PendingLayer act;
  act.node = i;
  act.activation_only = true;
  act.type = n.int8 ? "QuantizedReLU" : (n.activation == kActReLU ? "ReLU" : "ReLU6");
  act.inputs = {inner};
  act.outputs = l.outputs;
  l.outputs = {inner};
  layers_.push_back(l);
  layers_.push_back(act);
}

std::optional<float> Builder::blob_scale(int blob_id) const {
  const Value v = blob_values_.at(blob_id);
  if (const std::optional<float> s = int8_scale(v)) return s;
  auto it = float_blob_scales_.find({v.node, v.output});
  if (it == float_blob_scales_.end()) return std::nullopt;
  return it->second;
}

std::string Builder::layer_name(const PendingLayer& l) const {
  return layer_names_[l.node] + (l.activation_only ? "~act" : "");
}

std::string Builder::layer_token(const PendingLayer& l) const {
  std::string token = l.type + " " + layer_name(l) + " " + std::to_string(l.inputs.size()) + " " +
                      std::to_string(l.outputs.size());
  for (const int b : l.inputs) token += " " + blob_names_[b];
  for (const int b : l.outputs) token += " " + blob_names_[b];
  for (const std::string& p : l.params) token += " " + p;
  return token;
}

// A layer line over TNN's 4095-character token limit loses its tail silently (§1.1): its
// blobs get short generated names ("~b<id>"; '~' never survives tnn_names) until it fits.
void Builder::fit_token_limit() {
  for (const PendingLayer& l : layers_) {
    if (layer_token(l).size() <= kTnnMaxTokenLength) continue;
    std::vector<int> blobs = l.inputs;
    blobs.insert(blobs.end(), l.outputs.begin(), l.outputs.end());
    for (const int b : blobs) {
      const std::string short_name = "~b" + std::to_string(b);
      if (blob_names_[b].size() > short_name.size()) blob_names_[b] = short_name;
    }
    QAT_CHECK(layer_token(l).size() <= kTnnMaxTokenLength, "tnn export: node '",
              nodes_[l.node].name, "' has a layer line of ", layer_token(l).size(),
              " characters even with short blob names; TNN reads at most ", kTnnMaxTokenLength);
  }
}

// TNN fuses a 1x1 int8 conv into the int8 add listed right after it when it loads the model
// (§3.5); simulate() models that from the IntModel's node order. Dropping the quantize nodes
// can only bring a conv and an add together, so the exported order must not fuse where the
// IntModel does not (and vice versa). A float ReLU / ReLU6 right after an int8 conv would be
// fused into it too, with different arithmetic.
void Builder::check_load_fusions() const {
  if (model_.fused_conv.empty()) return;
  std::map<int, int> readers;  // blob id -> number of layer inputs and outputs reading it
  for (const PendingLayer& l : layers_)
    for (const int b : l.inputs) ++readers[b];
  for (const Value& v : nodes_[output_node_].inputs) ++readers[blob(resolve(v))];
  for (size_t j = 1; j < layers_.size(); ++j) {
    const PendingLayer& prev = layers_[j - 1];
    const PendingLayer& cur = layers_[j];
    const ExportNode& conv = nodes_[prev.node];
    const ExportNode& next = nodes_[cur.node];
    if (conv.op != "conv2d" || !conv.int8 || readers[prev.outputs[0]] != 1) continue;
    const bool reads_conv =
        std::find(cur.inputs.begin(), cur.inputs.end(), prev.outputs[0]) != cur.inputs.end();
    if (!reads_conv) continue;
    QAT_CHECK(next.int8 || (next.op != "relu" && next.op != "relu6" && next.op != "clamp"),
              node_error(next, "TNN would fuse this float activation into the int8 conv '" +
                                   conv.name + "' before it (tnn_format.md §3.5)"));
    if (next.op != "add" || !next.int8) continue;
    const Shape& w = conv.weight.shape();
    const bool pointwise = w[2] == 1 && w[3] == 1 && conv.attrs.get_int("groups") == 1 &&
                           pair_attr(conv.attrs, "stride") == std::array<int64_t, 2>{1, 1} &&
                           pair_attr(conv.attrs, "padding") == std::array<int64_t, 2>{0, 0} &&
                           conv.activation == kActNone;
    const bool tnn_fuses = pointwise;
    const bool simulated = model_.fused_conv.at(cur.node) == prev.node;
    QAT_CHECK(tnn_fuses == simulated,
              node_error(next, std::string("TNN ") + (tnn_fuses ? "fuses" : "does not fuse") +
                                   " the 1x1 conv '" + conv.name +
                                   "' into this add at load (tnn_format.md §3.5), but the "
                                   "IntModel's node order says otherwise (a node sits between "
                                   "them); reorder the graph"));
  }
  for (size_t i = 0; i < model_.fused_conv.size(); ++i) {
    const int conv = model_.fused_conv[i];
    if (conv < 0 || !live_[i]) continue;
    bool adjacent = false;
    for (size_t j = 1; j < layers_.size(); ++j)
      adjacent =
          adjacent || (layers_[j].node == static_cast<int>(i) && layers_[j - 1].node == conv);
    QAT_CHECK(adjacent, node_error(nodes_[i], "simulate() fuses the conv '" + nodes_[conv].name +
                                                  "' into this add, but TNN would not"));
  }
}

TnnResource blob_scale_resource(const std::string& blob_name, float scale) {
  TnnResource r;
  r.layer_type = 600;
  r.type = "BlobScale";
  r.name = blob_name + "_scale_data_";
  r.buffers = {Tensor::zeros({1}, DType::kInt8), Tensor::from_vector<float>({scale}, {1}),
               Tensor::zeros({1}, DType::kInt32)};
  return r;
}

TnnNet Builder::finish() {
  TnnNet net;
  const ExportNode& input = nodes_.at(0);
  QAT_CHECK(input.op == "input", "tnn export: the first node must be the input");
  net.inputs.push_back({blob_names_[blob({0, 0})], input.output_shapes.at(0), 0});
  for (const Value& v : nodes_[output_node_].inputs)
    net.outputs.push_back(blob_names_[blob(resolve(v))]);
  std::set<int> scaled;  // blobs whose BlobScale is written
  auto add_blob_scale = [&](int b, const PendingLayer& l) {
    if (!scaled.insert(b).second) return;
    const std::optional<float> s = blob_scale(b);
    QAT_CHECK(s.has_value(), node_error(nodes_[l.node], "the blob '" + blob_names_[b] +
                                                            "' of this int8 layer has no scale"));
    net.resources.push_back(blob_scale_resource(blob_names_[b], *s));
  };
  for (const PendingLayer& l : layers_) {
    TnnLayer out;
    out.type = l.type;
    out.params = l.params;
    for (const int b : l.inputs) out.inputs.push_back(blob_names_[b]);
    for (const int b : l.outputs) out.outputs.push_back(blob_names_[b]);
    out.name = layer_name(l);
    net.layers.push_back(out);
    const ExportNode& n = nodes_[l.node];
    if (n.int8)
      for (const int b : l.inputs) add_blob_scale(b, l);
    if (!l.activation_only && (n.op == "conv2d" || n.op == "linear" || n.op == "batch_norm")) {
      TnnResource r;
      r.name = out.name;
      if (n.op == "batch_norm") {
        r.layer_type = 2;
        r.type = "BatchNormCxx";
        r.buffers = {n.weight, n.bias};
      } else {
        // TNN's quantization tool keeps the float type string in the resource header.
        r.layer_type = n.op == "conv2d" ? 1 : 19;
        r.type = n.op == "conv2d" ? "Convolution" : "InnerProduct";
        r.has_bias = n.bias.defined();
        r.buffers = {n.weight};
        if (n.bias.defined() || n.op == "linear") r.buffers.push_back(n.bias);
        if (n.int8) {
          r.buffers.push_back(Tensor::zeros({n.weight.size(0)}, DType::kInt8));
          r.buffers.push_back(n.scale);
        }
      }
      net.resources.push_back(r);
    }
    if (n.int8)
      for (const int b : l.outputs) add_blob_scale(b, l);
  }
  std::set<std::string> seen;
  net.blobs.push_back(net.inputs[0].name);
  seen.insert(net.inputs[0].name);
  for (const TnnLayer& l : net.layers)
    for (const std::string& b : l.outputs)
      if (seen.insert(b).second) net.blobs.push_back(b);
  return net;
}

TnnNet Builder::build() {
  mark_live();
  collect_blob_scales();
  assign_names();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const ExportNode& n = nodes_[i];
    if (!live_[i] || dissolved(n.op) || n.op == "input" || n.op == "output") continue;
    emit(static_cast<int>(i));
  }
  fit_token_limit();
  check_load_fusions();
  return finish();
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (const unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> tnn_names(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  std::set<std::string> taken;
  for (const std::string& name : names) {
    std::string s;
    for (const char ch : name) {
      const auto c = static_cast<unsigned char>(ch);
      const bool bad = c <= 0x20 || c >= 0x7f || c == ',' || c == '"' || c == ':' || c == '~';
      s += bad ? '_' : ch;
    }
    if (s.empty()) s = "_";
    if (ends_with(s, "_scale_data_") || ends_with(s, "_int8_reformat")) s += "_";
    if (s.size() > kMaxNameLength) {
      char hash[16];
      std::snprintf(hash, sizeof(hash), "~%08x", fnv1a(name));
      s = s.substr(0, kMaxNameLength - 9) + hash;
    }
    std::string unique = s;
    for (int k = 2; taken.count(unique); ++k) unique = s + "~" + std::to_string(k);
    taken.insert(unique);
    out.push_back(unique);
  }
  return out;
}

TnnNet tnn_net(const graph::IntModel& model) {
  const ExportModel m = from_int_model(model);
  return Builder(m).build();
}

TnnNet tnn_net_float(const graph::Graph& graph) {
  const ExportModel m = from_float_graph(graph);
  return Builder(m).build();
}

void write_tnn(const TnnNet& net, const std::string& prefix) {
  write_file_atomically(prefix + ".tnnmodel", tnn_model_bytes(net));
  write_file_atomically(prefix + ".tnnproto", tnn_proto_text(net));
}

void export_tnn(const graph::IntModel& model, const std::string& prefix) {
  write_tnn(tnn_net(model), prefix);
}

void export_tnn_float(const graph::Graph& graph, const std::string& prefix) {
  write_tnn(tnn_net_float(graph), prefix);
}

}  // namespace qat::exporters
