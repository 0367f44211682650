#include "exporters/tnn_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels/pool.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/ops/shape_ops.h"
#include "graph/executor.h"

namespace qat::exporters {
namespace {

using graph::Value;

bool quantized(const TnnLayer& l) { return l.type.rfind("Quantized", 0) == 0; }

std::string layer_error(const TnnLayer& l, const std::string& what) {
  return "tnn reader: layer '" + l.name + "' (" + l.type + "): " + what;
}

// Parameter k of a layer line; `fallback` when the line ends before it (TNN's
// GET_*_OR_DEFAULT), an error when there is none.
int64_t param_int(const TnnLayer& l, size_t k, std::optional<int64_t> fallback = std::nullopt) {
  if (k >= l.params.size()) {
    QAT_CHECK(fallback.has_value(),
              layer_error(l, "parameter " + std::to_string(k) + " is missing"));
    return *fallback;
  }
  try {
    size_t used = 0;
    const long long v = std::stoll(l.params[k], &used);
    if (used == l.params[k].size()) return v;
  } catch (const std::exception&) {
  }
  QAT_CHECK(false, layer_error(l, "parameter " + std::to_string(k) + " '" + l.params[k] +
                                      "' is not an integer"));
  return 0;
}

double param_double(const TnnLayer& l, size_t k) {
  QAT_CHECK(k < l.params.size(), layer_error(l, "parameter " + std::to_string(k) + " is missing"));
  try {
    return std::stod(l.params[k]);
  } catch (const std::exception&) {
  }
  QAT_CHECK(false, layer_error(l, "parameter '" + l.params[k] + "' is not a number"));
  return 0;
}

// A layer as a graph op: its IntModel op, attrs and (conv / FC) activation.
struct OpForm {
  std::string op;
  OpAttrs attrs;
  quant::FusedActivation activation = quant::FusedActivation::kNone;
  bool has_bias = false;
};

std::vector<int64_t> pair(int64_t a, int64_t b) { return {a, b}; }

quant::FusedActivation activation_of(const TnnLayer& l, int64_t type) {
  switch (type) {
    case 0:
      return quant::FusedActivation::kNone;
    case 1:
      return quant::FusedActivation::kReLU;
    case 2:
      return quant::FusedActivation::kReLU6;
    default:
      QAT_CHECK(false, layer_error(l, "activation_type " + std::to_string(type) +
                                          " is not supported (0, 1 ReLU, 2 ReLU6)"));
  }
  return quant::FusedActivation::kNone;
}

OpForm pooling_form(const TnnLayer& l) {
  const int64_t type = param_int(l, 0);
  const int64_t kh = param_int(l, 1), kw = param_int(l, 2), sh = param_int(l, 3),
                sw = param_int(l, 4), ph = param_int(l, 5), pw = param_int(l, 6);
  QAT_CHECK(param_int(l, 9, -1) == -1, layer_error(l, "only explicit pads (pad_type -1) are read"));
  const bool ceil_mode = param_int(l, 10, 1) != 0;  // TNN's default is ceil
  QAT_CHECK(param_int(l, 11, 0) == 0, layer_error(l, "adaptive pooling is not read"));
  QAT_CHECK(type == 0 || type == 1, layer_error(l, "pool_type must be 0 (max) or 1 (average)"));
  OpForm f;
  if (kh == 0 && kw == 0) {
    QAT_CHECK(type == 1, layer_error(l, "global max pooling has no graph op"));
    f.op = "adaptive_avg_pool2d";
    f.attrs = {{"output_size", pair(1, 1)}};
  } else if (type == 0) {
    f.op = "max_pool2d";
    f.attrs = {{"kernel", pair(kh, kw)},
               {"stride", pair(sh, sw)},
               {"padding", pair(ph, pw)},
               {"dilation", pair(1, 1)},
               {"ceil_mode", ceil_mode}};
  } else {
    f.op = "avg_pool2d";
    f.attrs = {{"kernel", pair(kh, kw)},
               {"stride", pair(sh, sw)},
               {"padding", pair(ph, pw)},
               {"ceil_mode", ceil_mode},
               {"count_include_pad", true}};
  }
  return f;
}

OpForm op_form(const TnnLayer& l, const std::vector<Shape>& in) {
  const std::string base = quantized(l) ? l.type.substr(9) : l.type;
  OpForm f;
  if (base == "Convolution") {
    QAT_CHECK(param_int(l, 10) == -1, layer_error(l, "only explicit pads (pad_type -1) are read"));
    f.op = "conv2d";
    f.attrs = {{"stride", pair(param_int(l, 5), param_int(l, 6))},
               {"padding", pair(param_int(l, 7), param_int(l, 8))},
               {"dilation", pair(param_int(l, 11, 1), param_int(l, 12, 1))},
               {"groups", param_int(l, 0)}};
    f.has_bias = param_int(l, 9) != 0;
    f.activation = activation_of(l, param_int(l, 13, 0));
  } else if (base == "InnerProduct") {
    QAT_CHECK(param_int(l, 2, 0) == 0 && param_int(l, 3, 1) == 1,
              layer_error(l, "only transpose 0 and axis 1 are read"));
    f.op = "linear";
    f.has_bias = param_int(l, 1) != 0;
  } else if (base == "Pooling") {
    f = pooling_form(l);
  } else if (base == "ReLU" || base == "Relu") {
    f.op = "relu";
  } else if (base == "ReLU6" || base == "Relu6") {
    f.op = "relu6";
  } else if (base == "Clip") {
    f.op = "clamp";
    f.attrs = {{"min", param_double(l, 0)}, {"max", param_double(l, 1)}};
  } else if (base == "Add") {
    QAT_CHECK(l.inputs.size() == 2, layer_error(l, "only an add of two blobs is read"));
    f.op = "add";
  } else if (base == "Concat") {
    f.op = "cat";
    f.attrs = {{"dim", normalize_dim(param_int(l, 0, 1), static_cast<int64_t>(in.at(0).size()))}};
  } else if (base == "ShuffleChannel") {
    f.op = "channel_shuffle";
    f.attrs = {{"groups", param_int(l, 0, 1)}};
  } else if (base == "SplitV") {
    const int64_t dim = normalize_dim(param_int(l, 0), static_cast<int64_t>(in.at(0).size()));
    const int64_t count = param_int(l, 1);
    QAT_CHECK(count == static_cast<int64_t>(l.outputs.size()),
              layer_error(l, "the piece count differs from the output count"));
    std::vector<int64_t> sizes;
    for (int64_t k = 0; k < count; ++k) sizes.push_back(param_int(l, 2 + k));
    const bool equal =
        std::all_of(sizes.begin(), sizes.end(), [&](int64_t s) { return s == sizes[0]; });
    f.op = equal ? "chunk" : "split";
    f.attrs =
        equal ? OpAttrs{{"chunks", count}, {"dim", dim}} : OpAttrs{{"sizes", sizes}, {"dim", dim}};
  } else if (base == "Flatten") {
    const Shape& s = in.at(0);
    const int64_t axis = normalize_dim(param_int(l, 0, 1), static_cast<int64_t>(s.size()));
    if (axis == 1) {
      f.op = "flatten";
      f.attrs = {{"start_dim", int64_t{1}}, {"end_dim", int64_t{-1}}};
    } else {  // TNN's Flatten is ONNX's: [prod(dims < axis), prod(dims >= axis)]
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= s[d];
      f.op = "reshape";
      f.attrs = {{"shape", std::vector<int64_t>{outer, shape_numel(s) / outer}}};
    }
  } else if (base == "Reshape") {
    QAT_CHECK(param_int(l, 0) == 0 && param_int(l, 1) == -1,
              layer_error(l, "only axis 0, num_axes -1 (the whole shape) is read"));
    const int64_t ndims = param_int(l, 2);
    std::vector<int64_t> shape;
    for (int64_t d = 0; d < ndims; ++d) {
      const int64_t v = param_int(l, 3 + d);
      shape.push_back(v == 0 ? in.at(0).at(d) : v);  // 0 copies the input dim
    }
    QAT_CHECK(param_int(l, 3 + ndims, 0) == 0, layer_error(l, "only reshape_type 0 is read"));
    f.op = "reshape";
    f.attrs = {{"shape", shape}};
  } else if (base == "ReduceMean") {
    std::vector<int64_t> dims;
    for (size_t k = 1; k < l.params.size(); ++k) dims.push_back(param_int(l, k));
    f.op = "mean";
    f.attrs = {{"dims", dims}, {"keepdim", param_int(l, 0) != 0}};
  } else if (base == "BatchNormCxx" && !quantized(l)) {
    f.op = "batch_norm_cxx";
  } else {
    QAT_CHECK(false, layer_error(l, "this layer type is not read"));
  }
  return f;
}

// The pool output size, as PyTorch (and the tracer) computes it.
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  return kernels::pool2d_output_size(in, k, s, p, /*dilation=*/1, ceil_mode);
}

// The output shapes of `f` on inputs of shapes `in`; `weight` is a conv / FC weight.
std::vector<Shape> infer_shapes(const OpForm& f, const std::vector<Shape>& in,
                                const Shape& weight) {
  const Shape& x = in.at(0);
  const std::string& op = f.op;
  const bool spatial = op == "conv2d" || op == "max_pool2d" || op == "avg_pool2d" ||
                       op == "adaptive_avg_pool2d" || op == "batch_norm_cxx";
  QAT_CHECK(!spatial || x.size() == 4, op, " needs a [N, C, H, W] input, got ", shape_str(x));
  QAT_CHECK(op != "linear" || x.size() >= 2, "linear needs a [N, ...] input, got ", shape_str(x));
  QAT_CHECK(op != "add" || in.size() == 2, "add needs two inputs");
  if (op == "cat" || op == "chunk" || op == "split") {
    const int64_t dim = f.attrs.get_int("dim");
    QAT_CHECK(dim >= 0 && dim < static_cast<int64_t>(x.size()), op, ": dim ", dim,
              " out of range for ", shape_str(x));
    for (const Shape& s : in) QAT_CHECK(s.size() == x.size(), op, ": inputs of different ranks");
  }
  if (op == "conv2d") {
    const std::vector<int64_t>& s = f.attrs.get_ints("stride");
    const std::vector<int64_t>& p = f.attrs.get_ints("padding");
    const std::vector<int64_t>& d = f.attrs.get_ints("dilation");
    return {{x[0], weight[0], (x[2] + 2 * p[0] - d[0] * (weight[2] - 1) - 1) / s[0] + 1,
             (x[3] + 2 * p[1] - d[1] * (weight[3] - 1) - 1) / s[1] + 1}};
  }
  if (op == "linear") return {{x[0], weight[0]}};
  if (op == "max_pool2d" || op == "avg_pool2d") {
    const std::vector<int64_t>& k = f.attrs.get_ints("kernel");
    const std::vector<int64_t>& s = f.attrs.get_ints("stride");
    const std::vector<int64_t>& p = f.attrs.get_ints("padding");
    const bool ceil_mode = f.attrs.get_bool("ceil_mode");
    return {{x[0], x[1], pool_out(x[2], k[0], s[0], p[0], ceil_mode),
             pool_out(x[3], k[1], s[1], p[1], ceil_mode)}};
  }
  if (op == "adaptive_avg_pool2d") return {{x[0], x[1], 1, 1}};
  if (op == "add") {
    Shape out = x;
    for (size_t d = 0; d < out.size() && d < in.at(1).size(); ++d)
      out[d] = std::max(out[d], in[1][d]);
    return {out};
  }
  if (op == "cat") {
    Shape out = x;
    const int64_t dim = f.attrs.get_int("dim");
    out[dim] = 0;
    for (const Shape& s : in) out[dim] += s.at(dim);
    return {out};
  }
  if (op == "chunk" || op == "split") {
    const int64_t dim = f.attrs.get_int("dim");
    std::vector<Shape> out;
    const std::vector<int64_t> sizes =
        op == "split"
            ? f.attrs.get_ints("sizes")
            : std::vector<int64_t>(f.attrs.get_int("chunks"), x[dim] / f.attrs.get_int("chunks"));
    for (const int64_t size : sizes) {
      Shape s = x;
      s[dim] = size;
      out.push_back(s);
    }
    return out;
  }
  if (op == "flatten") return {{x[0], shape_numel(x) / x[0]}};
  if (op == "reshape") {
    Shape out = f.attrs.get_ints("shape");
    int64_t known = 1;
    for (const int64_t d : out)
      if (d != -1) known *= d;
    for (int64_t& d : out)
      if (d == -1) d = shape_numel(x) / known;
    return {out};
  }
  if (op == "mean") {
    const auto rank = static_cast<int64_t>(x.size());
    std::set<int64_t> dims;
    for (const int64_t d : f.attrs.get_ints("dims")) dims.insert(normalize_dim(d, rank));
    Shape out;
    for (int64_t d = 0; d < rank; ++d) {
      if (!dims.count(d)) {
        out.push_back(x[d]);
      } else if (f.attrs.get_bool("keepdim")) {
        out.push_back(1);
      }
    }
    return {out};
  }
  return {x};  // relu, relu6, clamp, channel_shuffle, batch_norm_cxx
}

quant::QParams per_tensor(float scale) {
  quant::QParams q;
  q.scale = Tensor::from_vector<float>({scale}, {1});
  q.zero_point = Tensor::from_vector<int32_t>({0}, {1});
  q.rounding = RoundingMode::kHalfAway;
  return q;
}

std::map<std::string, const TnnResource*> resources_by_name(const TnnNet& net) {
  std::map<std::string, const TnnResource*> out;
  for (const TnnResource& r : net.resources) {
    QAT_CHECK(out.emplace(r.name, &r).second, "tnn reader: two resources are called '", r.name,
              "'");
  }
  return out;
}

void check_zero_points(const Tensor& zero_point, const std::string& what) {
  if (!zero_point.defined()) return;
  for (const int8_t zp : zero_point.to_vector<int8_t>())
    QAT_CHECK(zp == 0, "tnn reader: ", what, " has zero point ", static_cast<int>(zp),
              "; only symmetric int8 is read (TNN's X86 backend ignores zero points)");
}

// The blob scales: "<blob>_scale_data_" resources, per tensor.
std::map<std::string, float> blob_scales(const TnnNet& net) {
  static const std::string kSuffix = "_scale_data_";
  std::map<std::string, float> out;
  for (const TnnResource& r : net.resources) {
    if (r.type != "BlobScale" && r.layer_type != 600) continue;
    QAT_CHECK(r.name.size() > kSuffix.size() &&
                  r.name.compare(r.name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0,
              "tnn reader: blob scale '", r.name, "' does not end in ", kSuffix);
    const std::string blob = r.name.substr(0, r.name.size() - kSuffix.size());
    check_zero_points(r.buffers.at(0), "blob '" + blob + "'");
    const Tensor& scale = r.buffers.at(1);
    QAT_CHECK(scale.dtype() == DType::kFloat32 && scale.numel() == 1, "tnn reader: blob '", blob,
              "' has ", scale.numel(), " scales; only per-tensor blob scales are read");
    out[blob] = scale.to_vector<float>()[0];
  }
  return out;
}

// The weight scale s_w whose float32 product with s_in is the stored scale `acc`, if there is
// one next to acc / s_in.
float weight_scale(float acc, float s_in) {
  const float w = acc / s_in;
  for (const float c : {w, std::nextafter(w, std::numeric_limits<float>::infinity()),
                        std::nextafter(w, -std::numeric_limits<float>::infinity())}) {
    if (s_in * c == acc) return c;
  }
  return w;
}

// The IntLayer of an int8 Convolution / InnerProduct resource.
graph::IntLayer int_layer(const TnnLayer& l, const OpForm& f, const TnnResource& r, float s_in,
                          float s_out) {
  const bool conv = f.op == "conv2d";
  QAT_CHECK(r.buffers.size() >= 3, layer_error(l, "the resource has too few buffers"));
  Tensor weight = r.buffers[0];
  QAT_CHECK(weight.dtype() == DType::kInt8, layer_error(l, "the weight is not int8"));
  const int64_t channels = conv ? param_int(l, 2) : param_int(l, 0);
  Shape shape = conv ? Shape{channels, param_int(l, 1), param_int(l, 3), param_int(l, 4)}
                     : Shape{channels, weight.numel() / channels};
  QAT_CHECK(shape_numel(shape) == weight.numel(),
            layer_error(l, "the weight has " + std::to_string(weight.numel()) +
                               " elements, the parameters say " + shape_str(shape)));
  weight = weight.view(shape).clone();
  const size_t k = conv && !r.has_bias ? 1 : 2;  // the zero point's position
  const Tensor bias = conv ? (r.has_bias ? r.buffers[1] : Tensor()) : r.buffers[1];
  QAT_CHECK(r.buffers.size() == k + 2, layer_error(l, "unexpected resource buffers"));
  check_zero_points(r.buffers[k], "layer '" + l.name + "'");
  std::vector<float> acc = r.buffers[k + 1].to_vector<float>();
  if (acc.size() == 1) acc.assign(channels, acc[0]);
  QAT_CHECK(static_cast<int64_t>(acc.size()) == channels,
            layer_error(l, "the scale has " + std::to_string(acc.size()) + " values for " +
                               std::to_string(channels) + " output channels"));
  graph::IntLayer layer;
  layer.weight = weight;
  std::vector<float> s_w;
  for (const float a : acc) s_w.push_back(weight_scale(a, s_in));
  layer.weight_qparams.scale = Tensor::from_vector(s_w, {channels});
  layer.weight_qparams.zero_point = Tensor::zeros({channels}, DType::kInt32);
  layer.weight_qparams.axis = 0;
  layer.weight_qparams.quant_min = -127;
  layer.weight_qparams.quant_max = 127;
  layer.weight_qparams.rounding = RoundingMode::kHalfAway;
  layer.accumulator_scale = Tensor::from_vector(acc, {channels});
  if (bias.defined() && bias.numel() > 0) {
    QAT_CHECK(bias.dtype() == DType::kInt32 && bias.numel() == channels,
              layer_error(l, "the bias must be int32 [" + std::to_string(channels) + "]"));
    layer.bias_int32 = bias.view({channels}).clone();
    std::vector<float> b;
    const std::vector<int32_t> q = layer.bias_int32.to_vector<int32_t>();
    for (int64_t c = 0; c < channels; ++c) b.push_back(static_cast<float>(q[c]) * acc[c]);
    layer.bias = Tensor::from_vector(b, {channels});
  }
  layer.activation = f.activation;
  layer.output = per_tensor(s_out);
  return layer;
}

// Builds the IntModel of tnn_int_model().
class IntModelReader {
 public:
  explicit IntModelReader(const TnnNet& net)
      : net_(net), resources_(resources_by_name(net)), scales_(blob_scales(net)) {}

  graph::IntModel read();

 private:
  int add_node(graph::IntNode node) {
    model_.nodes.push_back(std::move(node));
    return static_cast<int>(model_.nodes.size()) - 1;
  }
  float scale_of(const std::string& blob, const TnnLayer& l) const {
    auto it = scales_.find(blob);
    QAT_CHECK(it != scales_.end(), layer_error(l, "int8 blob '" + blob + "' has no BlobScale"));
    return it->second;
  }
  // A quantize node of `value` (blob `blob`) named `name`, right here.
  Value add_quantizer(const std::string& name, Value value, float scale) {
    graph::IntNode q;
    q.name = name;
    q.op = "quantize";
    q.inputs = {value};
    q.output_shapes = {model_.nodes[value.node].output_shapes.at(value.output)};
    q.qparams = per_tensor(scale);
    q.output_scales = {scale};
    return {add_node(std::move(q)), 0};
  }
  void add_layer(const TnnLayer& l,
                 quant::FusedActivation fc_activation = quant::FusedActivation::kNone);
  std::optional<TnnLayer> fc_with_activation(size_t j, quant::FusedActivation& activation) const;

  const TnnNet& net_;
  const std::map<std::string, const TnnResource*> resources_;
  const std::map<std::string, float> scales_;
  std::set<std::string> int8_blobs_;        // written by Quantized* layers
  std::set<std::string> quantized_reads_;   // read by Quantized* layers
  std::map<std::string, Value> value_;      // what float layers (and int8 ones, if int8) read
  std::map<std::string, Value> quantized_;  // a float blob's quantize node
  graph::IntModel model_;
};

void IntModelReader::add_layer(const TnnLayer& l, quant::FusedActivation fc_activation) {
  const bool int8 = quantized(l);
  std::vector<Shape> in_shapes;
  graph::IntNode node;
  node.name = l.name;
  for (const std::string& b : l.inputs) {
    auto it = value_.find(b);
    QAT_CHECK(it != value_.end(), layer_error(l, "reads blob '" + b +
                                                     "', which no earlier layer "
                                                     "writes"));
    Value v = it->second;
    if (int8 && !int8_blobs_.count(b)) v = quantized_.at(b);
    node.inputs.push_back(v);
    in_shapes.push_back(model_.nodes[v.node].output_shapes.at(v.output));
    if (int8) node.input_scales.push_back(scale_of(b, l));
  }
  OpForm f = op_form(l, in_shapes);
  if (f.op == "linear") f.activation = fc_activation;
  node.op = f.op;
  node.attrs = f.attrs;
  const TnnResource* resource = nullptr;
  if (f.op == "conv2d" || f.op == "linear") {
    auto it = resources_.find(l.name);
    QAT_CHECK(it != resources_.end(), layer_error(l, "has no resource in the .tnnmodel"));
    resource = it->second;
  }
  QAT_CHECK(!int8 || f.op == "conv2d" || f.op == "linear" || f.op == "add" || f.op == "cat" ||
                f.op == "relu" || f.op == "max_pool2d" || f.op == "avg_pool2d" ||
                f.op == "adaptive_avg_pool2d",
            layer_error(l, "has no int8 form in the integer model"));
  QAT_CHECK(f.op != "batch_norm_cxx", layer_error(l,
                                                  "float BatchNormCxx has no integer-model "
                                                  "form (read float nets with run_tnn_float)"));
  const Shape weight_shape = resource ? Shape{f.op == "conv2d" ? param_int(l, 2) : param_int(l, 0),
                                              f.op == "conv2d" ? param_int(l, 1) : 0,
                                              f.op == "conv2d" ? param_int(l, 3) : 0,
                                              f.op == "conv2d" ? param_int(l, 4) : 0}
                                      : Shape{};
  try {
    node.output_shapes = infer_shapes(f, in_shapes, weight_shape);
  } catch (const Error& e) {
    throw Error(layer_error(l, e.what()));
  }
  QAT_CHECK(node.output_shapes.size() == l.outputs.size(),
            layer_error(l, "has " + std::to_string(l.outputs.size()) + " outputs, its op " +
                               std::to_string(node.output_shapes.size())));
  node.output_scales.assign(l.outputs.size(), std::nullopt);
  if (int8) {
    const float s_out = scale_of(l.outputs[0], l);
    node.output_scales[0] = s_out;
    if (resource) {
      QAT_CHECK(!f.has_bias || resource->buffers.size() >= 2, layer_error(l, "bias missing"));
      node.layer = int_layer(l, f, *resource, node.input_scales.at(0), s_out);
      node.input_scales.clear();
    } else if (f.op != "add" && f.op != "cat") {
      node.input_scales.clear();
    }
  } else {
    QAT_CHECK(resource == nullptr, layer_error(l,
                                               "a float conv / FC has no integer-model form "
                                               "(read float nets with run_tnn_float)"));
  }
  const int index = add_node(std::move(node));
  for (size_t k = 0; k < l.outputs.size(); ++k) {
    const std::string& b = l.outputs[k];
    value_[b] = {index, static_cast<int>(k)};
    if (int8) int8_blobs_.insert(b);
  }
  const std::string& name = model_.nodes[index].name;
  if (int8 && (f.op == "add" || f.op == "cat")) {
    // The requantizer of the add / cat output (identity: the same scale), read by all.
    value_[l.outputs[0]] =
        add_quantizer(name + ".activation_post_process", {index, 0}, scale_of(l.outputs[0], l));
  }
  if (int8) return;
  for (size_t k = 0; k < l.outputs.size(); ++k) {
    const std::string& b = l.outputs[k];
    if (!quantized_reads_.count(b)) continue;
    const std::string suffix = l.outputs.size() == 1 ? "" : "_" + std::to_string(k);
    quantized_[b] = add_quantizer(name + ".activation_post_process" + suffix,
                                  {index, static_cast<int>(k)}, scale_of(b, l));
  }
}

// InnerProduct has no activation parameter, so the exporter writes a fused one as a ReLU /
// ReLU6 layer right after it. Layer j and the next as one FC with that activation (its
// output blobs taken over), when the next reads only j's output, nothing else reads that and
// (int8) both blobs have one scale: max(0, float2int8(v)) == float2int8(max(v, 0)).
std::optional<TnnLayer> IntModelReader::fc_with_activation(
    size_t j, quant::FusedActivation& activation) const {
  if (j + 1 >= net_.layers.size()) return std::nullopt;
  const TnnLayer& fc = net_.layers[j];
  const TnnLayer& act = net_.layers[j + 1];
  const std::string fc_base = quantized(fc) ? fc.type.substr(9) : fc.type;
  const std::string act_base = quantized(act) ? act.type.substr(9) : act.type;
  if (fc_base != "InnerProduct" || quantized(fc) != quantized(act)) return std::nullopt;
  if (act_base == "ReLU" || act_base == "Relu") {
    activation = quant::FusedActivation::kReLU;
  } else if (!quantized(act) && (act_base == "ReLU6" || act_base == "Relu6")) {
    activation = quant::FusedActivation::kReLU6;
  } else {
    return std::nullopt;
  }
  if (fc.outputs.size() != 1 || act.inputs != fc.outputs) return std::nullopt;
  int readers = 0;
  for (const TnnLayer& l : net_.layers)
    readers += static_cast<int>(std::count(l.inputs.begin(), l.inputs.end(), fc.outputs[0]));
  for (const std::string& out : net_.outputs) readers += out == fc.outputs[0];
  if (readers != 1) return std::nullopt;
  if (quantized(fc)) {
    auto a = scales_.find(fc.outputs[0]), b = scales_.find(act.outputs.at(0));
    if (a == scales_.end() || b == scales_.end() || a->second != b->second) return std::nullopt;
  }
  TnnLayer fused = fc;
  fused.outputs = act.outputs;
  return fused;
}

graph::IntModel IntModelReader::read() {
  model_.target = quant::Target::kTNN;
  QAT_CHECK(net_.inputs.size() == 1, "tnn reader: the integer model has one input, the net ",
            net_.inputs.size());
  QAT_CHECK(net_.outputs.size() == 1, "tnn reader: the integer model has one output, the net ",
            net_.outputs.size());
  for (const TnnLayer& l : net_.layers) {
    if (!quantized(l)) continue;
    for (const std::string& b : l.inputs) quantized_reads_.insert(b);
  }
  const TnnInput& in = net_.inputs[0];
  graph::IntNode input;
  input.name = in.name;
  input.op = "input";
  input.output_shapes = {in.dims};
  input.output_scales = {std::nullopt};
  value_[in.name] = {add_node(std::move(input)), 0};
  if (quantized_reads_.count(in.name)) {
    auto it = scales_.find(in.name);
    QAT_CHECK(it != scales_.end(), "tnn reader: the input '", in.name,
              "' feeds int8 layers but has no BlobScale");
    quantized_[in.name] = add_quantizer(in.name + ".activation_post_process", {0, 0}, it->second);
  }
  for (size_t j = 0; j < net_.layers.size(); ++j) {
    quant::FusedActivation activation = quant::FusedActivation::kNone;
    if (const std::optional<TnnLayer> fc = fc_with_activation(j, activation)) {
      add_layer(*fc, activation);
      ++j;
    } else {
      add_layer(net_.layers[j]);
    }
  }
  auto it = value_.find(net_.outputs[0]);
  QAT_CHECK(it != value_.end(), "tnn reader: no layer writes the output '", net_.outputs[0], "'");
  graph::IntNode output;
  output.name = "output";
  output.op = "output";
  output.inputs = {it->second};
  add_node(std::move(output));
  return std::move(model_);
}

// ----- the float runner -----

Tensor activation(const Tensor& x, quant::FusedActivation a) {
  switch (a) {
    case quant::FusedActivation::kNone:
      return x;
    case quant::FusedActivation::kReLU:
      return ops::relu(x);
    case quant::FusedActivation::kReLU6:
      return ops::relu6(x);
  }
  return x;
}

// y[n, c, ...] = k[c] * x[n, c, ...] + b[c] (a single k / b is shared).
Tensor batch_norm_cxx(const Tensor& x, const TnnResource& r) {
  const std::vector<float> k = r.buffers.at(0).to_vector<float>();
  const std::vector<float> b = r.buffers.at(1).to_vector<float>();
  const int64_t channels = x.size(1), inner = x.numel() / (x.size(0) * channels);
  Tensor y = Tensor::empty(x.shape());
  const float* in = x.data<float>();
  float* out = y.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = k.size() == 1 ? 0 : (i / inner) % channels;
    out[i] = in[i] * k[c] + b[b.size() == 1 ? 0 : c];
  }
  return y;
}

std::vector<Tensor> run_float_layer(const TnnLayer& l, const std::vector<Tensor>& in,
                                    const std::map<std::string, const TnnResource*>& resources) {
  QAT_CHECK(!quantized(l), layer_error(l,
                                       "is int8: read int8 nets with tnn_int_model() and "
                                       "graph::simulate()"));
  std::vector<Shape> shapes;
  for (const Tensor& t : in) shapes.push_back(t.shape());
  const OpForm f = op_form(l, shapes);
  if (f.op != "conv2d" && f.op != "linear" && f.op != "batch_norm_cxx")
    return graph::run_function(f.op, in, f.attrs);
  auto it = resources.find(l.name);
  QAT_CHECK(it != resources.end(), layer_error(l, "has no resource in the .tnnmodel"));
  const TnnResource& r = *it->second;
  if (f.op == "batch_norm_cxx") return {batch_norm_cxx(in.at(0), r)};
  const Tensor& w = r.buffers.at(0);
  QAT_CHECK(w.dtype() == DType::kFloat32, layer_error(l, "a float layer needs a float weight"));
  const Tensor bias = r.buffers.size() > 1 && r.buffers[1].numel() > 0 ? r.buffers[1] : Tensor();
  if (f.op == "linear") {
    const int64_t channels = param_int(l, 0);
    const Tensor x = ops::reshape(in.at(0), {in.at(0).size(0), -1});
    return {ops::linear(x, w.view({channels, w.numel() / channels}), bias)};
  }
  ops::Conv2dParams p;
  const std::vector<int64_t>& stride = f.attrs.get_ints("stride");
  const std::vector<int64_t>& padding = f.attrs.get_ints("padding");
  const std::vector<int64_t>& dilation = f.attrs.get_ints("dilation");
  p.stride = {stride[0], stride[1]};
  p.padding = {padding[0], padding[1]};
  p.dilation = {dilation[0], dilation[1]};
  p.groups = f.attrs.get_int("groups");
  const Shape shape = {param_int(l, 2), param_int(l, 1), param_int(l, 3), param_int(l, 4)};
  return {activation(ops::conv2d(in.at(0), w.view(shape), bias, p), f.activation)};
}

}  // namespace

TnnNet read_tnn(const std::string& prefix) {
  return parse_tnn(read_file_bytes(prefix + ".tnnproto"), read_file_bytes(prefix + ".tnnmodel"));
}

graph::IntModel tnn_int_model(const TnnNet& net) { return IntModelReader(net).read(); }

Tensor run_tnn_float(const TnnNet& net, const Tensor& input) {
  NoGradGuard no_grad;
  QAT_CHECK(net.inputs.size() == 1 && !net.outputs.empty(),
            "tnn reader: run_tnn_float runs nets with one input");
  const std::map<std::string, const TnnResource*> resources = resources_by_name(net);
  std::map<std::string, Tensor> blobs = {{net.inputs[0].name, input}};
  for (const TnnLayer& l : net.layers) {
    std::vector<Tensor> in;
    for (const std::string& b : l.inputs) {
      auto it = blobs.find(b);
      QAT_CHECK(it != blobs.end(), layer_error(l, "reads blob '" + b +
                                                      "', which no earlier "
                                                      "layer writes"));
      in.push_back(it->second);
    }
    std::vector<Tensor> out;
    try {
      out = run_float_layer(l, in, resources);
    } catch (const Error& e) {
      throw Error("tnn reader: layer '" + l.name + "': " + e.what());
    }
    QAT_CHECK(out.size() == l.outputs.size(), layer_error(l, "output count mismatch"));
    for (size_t k = 0; k < out.size(); ++k) blobs[l.outputs[k]] = out[k];
  }
  auto it = blobs.find(net.outputs[0]);
  QAT_CHECK(it != blobs.end(), "tnn reader: no layer writes the output '", net.outputs[0], "'");
  return it->second;
}

}  // namespace qat::exporters
