#include "graph/prepare_qat.h"

#include <fnmatch.h>

#include <algorithm>
#include <memory>
#include <queue>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/kernels/fake_quant.h"
#include "graph/executor.h"
#include "graph/fused_modules.h"
#include "graph/int8_average_pool.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "quant/conv_bn_relu.h"
#include "quant/conv_relu.h"
#include "quant/fake_quantize.h"
#include "quant/linear.h"
#include "quant/qat_module.h"
#include "quant/qparams.h"

namespace qat::graph {
namespace {

// Where a target fake-quantizes activations in a graph.
struct Placement {
  // quantize_weighted_outputs: the QAT modules of conv / linear nodes fake-quantize their
  // outputs (tnn's requantizing conv / FC); tensorrt leaves them float.
  bool quantize_weighted_outputs = false;
  // quantized_input[i][k]: node i reads its input k fake-quantized.
  std::vector<std::vector<bool>> quantized_input;
  // quantized_output[i]: every reader of node i reads its (single) output fake-quantized
  // (tensorrt: a cat, whose inputs share one scale; tnn: a requantizing add or cat).
  std::vector<bool> quantized_output;
  // note[i]: how node i runs, appended to its annotations ("" for none).
  std::vector<std::string> note;
  // output_note[i]: appended to the annotations of the quantizer of a quantized_output node.
  std::vector<std::string> output_note;

  // No quantizers and no notes for the nodes of `graph`.
  explicit Placement(const Graph& graph)
      : quantized_output(graph.nodes.size(), false),
        note(graph.nodes.size()),
        output_note(graph.nodes.size()) {
    for (const GraphNode& node : graph.nodes) quantized_input.emplace_back(node.inputs.size());
  }
};

template <class M>
bool is_exactly(const GraphNode& node) {
  return node.kind == NodeKind::kModule && typeid(*node.module) == typeid(M);
}

bool is_weighted(const GraphNode& node) {
  return is_exactly<FusedConv2d>(node) || is_exactly<FusedLinear>(node) ||
         is_exactly<nn::Conv2d>(node) || is_exactly<nn::Linear>(node);
}

// A mean over H and W of an [N, C, H, W] input: a global average pool.
bool is_spatial_mean(const Graph& graph, const GraphNode& node) {
  if (node.kind != NodeKind::kFunction || node.op != "mean") return false;
  const Value in = node.inputs[0];
  const int64_t rank = static_cast<int64_t>(graph.nodes[in.node].output_shapes[in.output].size());
  std::vector<int64_t> dims = node.attrs.get_ints("dims");
  for (int64_t& d : dims) d = d < 0 ? d + rank : d;
  std::sort(dims.begin(), dims.end());
  return rank == 4 && dims == std::vector<int64_t>{2, 3};
}

bool is_average_pool(const Graph& graph, const GraphNode& node) {
  return is_exactly<nn::AvgPool2d>(node) || is_exactly<nn::AdaptiveAvgPool2d>(node) ||
         (node.kind == NodeKind::kFunction &&
          (node.op == "avg_pool2d" || node.op == "adaptive_avg_pool2d")) ||
         is_spatial_mean(graph, node);
}

// Shortest distance (in edges) from every ancestor of node `from` down to it; -1 elsewhere.
std::vector<int> distances_to(const Graph& graph, int from) {
  std::vector<int> distance(graph.nodes.size(), -1);
  std::queue<int> pending;
  distance[from] = 0;
  pending.push(from);
  while (!pending.empty()) {
    const int node = pending.front();
    pending.pop();
    for (const Value& v : graph.nodes[node].inputs) {
      if (distance[v.node] >= 0) continue;
      distance[v.node] = distance[node] + 1;
      pending.push(v.node);
    }
  }
  return distance;
}

// The identity input (0 or 1) of the two-input add `add`: the one closer to the lowest common
// ancestor of the two inputs (the common ancestor nearest to both), as TensorRT Model
// Optimizer's build_non_residual_input_map decides it. Ties pick input 1.
int identity_input(const Graph& graph, const GraphNode& add) {
  const std::vector<int> a = distances_to(graph, add.inputs[0].node);
  const std::vector<int> b = distances_to(graph, add.inputs[1].node);
  int ancestor = -1;
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    if (a[n] < 0 || b[n] < 0) continue;
    if (ancestor < 0 || a[n] + b[n] < a[ancestor] + b[ancestor]) ancestor = static_cast<int>(n);
  }
  // Every value descends from the graph input, so a common ancestor exists.
  QAT_CHECK(ancestor >= 0, "prepare_qat: the inputs of '", add.name, "' have no common ancestor");
  return a[ancestor] >= b[ancestor] ? 1 : 0;
}

// TensorRT's Q/DQ placement (see the header); nodes with is_float[i] get none.
Placement tensorrt_placement(const Graph& graph, const std::vector<bool>& is_float) {
  Placement placement(graph);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    if (is_float[i]) continue;
    if (is_weighted(node) || is_average_pool(graph, node)) {
      placement.quantized_input[i][0] = true;
    } else if (node.kind == NodeKind::kFunction && node.op == "add" && node.inputs.size() == 2) {
      placement.quantized_input[i][identity_input(graph, node)] = true;
    } else if (node.kind == NodeKind::kFunction && node.op == "cat") {
      placement.quantized_output[i] = true;
      placement.output_note[i] = "shared by the cat inputs";
    }
  }
  return placement;
}

bool is_tnn_average_pool(const GraphNode& node) {
  return is_exactly<nn::AvgPool2d>(node) || is_exactly<nn::AdaptiveAvgPool2d>(node) ||
         (node.kind == NodeKind::kFunction &&
          (node.op == "avg_pool2d" || node.op == "adaptive_avg_pool2d"));
}

// The ops tnn runs in int8 without a rescale (s_in = s_out, tnn_format.md §3.4): relu, max
// and average pools.
bool keeps_input_scale(const GraphNode& node) {
  return is_exactly<nn::ReLU>(node) || is_exactly<nn::MaxPool2d>(node) ||
         is_tnn_average_pool(node) ||
         (node.kind == NodeKind::kFunction && (node.op == "relu" || node.op == "max_pool2d"));
}

// TNN's int8 placement (see the header). Every value is int8 or float for all its readers,
// as a TNN blob is; int8[i][k] says which output k of node i is.
Placement tnn_placement(const Graph& graph, const std::vector<bool>& is_float) {
  Placement placement(graph);
  placement.quantize_weighted_outputs = true;
  std::vector<std::vector<bool>> int8(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    int8[i].assign(node.num_outputs(), false);
    if (is_float[i] || node.kind == NodeKind::kInput || node.kind == NodeKind::kOutput) continue;
    const bool is_add = node.kind == NodeKind::kFunction && node.op == "add";
    const bool is_cat = node.kind == NodeKind::kFunction && node.op == "cat";
    const bool requantizes = (is_add && node.inputs.size() == 2) || is_cat;
    if (is_weighted(node) || requantizes) {
      // Int8 inputs: a float one (the graph input, a float island's or a black-listed node's
      // output) is quantized for it.
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        const Value v = node.inputs[k];
        placement.quantized_input[i][k] = !int8[v.node][v.output];
      }
      int8[i][0] = true;
      if (requantizes) {
        placement.quantized_output[i] = true;
        placement.output_note[i] = "requantizes the " + node.op;
      }
    } else if (keeps_input_scale(node)) {
      const Value v = node.inputs[0];
      int8[i][0] = int8[v.node][v.output];
      if (!int8[i][0]) {
        placement.note[i] = "float: its input is float";
      } else if (is_tnn_average_pool(node)) {
        placement.note[i] = "int8, keeps input scale, truncates the average";
      } else {
        placement.note[i] = "int8, keeps input scale";
      }
    } else {
      // Float between a dequant and, where an int8 reader needs it, a quant.
      placement.note[i] =
          "float (tnn has no int8 " + node.op + (is_add ? " with a constant" : "") + ")";
    }
  }
  return placement;
}

bool is_function(const GraphNode& node, const char* op) {
  return node.kind == NodeKind::kFunction && node.op == op;
}

// The FloatFunctional ops PyTorch observes: add and mul of two tensors (not of a scalar), cat.
bool is_float_functional(const GraphNode& node) {
  return ((is_function(node, "add") || is_function(node, "mul")) && node.inputs.size() == 2) ||
         is_function(node, "cat");
}

// The relu that torchvision's FloatFunctional.add_relu fuses into the two-input add node
// `add` (the add's only reader, not black-listed); -1 for none.
int fused_relu(const Graph& graph, int add, const std::vector<bool>& is_float) {
  if (!is_function(graph.nodes[add], "add") || graph.nodes[add].inputs.size() != 2) return -1;
  const std::vector<int> users = graph.users({add, 0});
  if (users.size() != 1 || is_float[users[0]]) return -1;
  const GraphNode& user = graph.nodes[users[0]];
  return is_exactly<nn::ReLU>(user) || is_function(user, "relu") ? users[0] : -1;
}

// PyTorch eager QAT placement (see the header). quantized[i][k]: output k of node i is a
// quantized tensor (it carries qparams).
Placement pytorch_placement(const Graph& graph, const std::vector<bool>& is_float) {
  Placement placement(graph);
  placement.quantize_weighted_outputs = true;
  std::vector<std::vector<bool>> quantized(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    quantized[i].assign(node.num_outputs(), false);
    if (is_float[i] || node.kind == NodeKind::kInput || node.kind == NodeKind::kOutput) continue;
    // Every op runs quantized: a float input (the graph input, a black-listed node's output)
    // is quantized for it, as a QuantStub does.
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const Value v = node.inputs[k];
      placement.quantized_input[i][k] = !quantized[v.node][v.output];
    }
    quantized[i].assign(node.num_outputs(), true);
    const int relu = fused_relu(graph, static_cast<int>(i), is_float);
    if (relu >= 0) {
      placement.note[i] = "observed after " + graph.nodes[relu].name + " (add_relu)";
      placement.quantized_output[relu] = true;
      placement.output_note[relu] = "add_relu";
    } else if (is_float_functional(node)) {
      placement.quantized_output[i] = true;
      placement.output_note[i] = "observes the " + node.op;
    } else if (!is_weighted(node) && !placement.quantized_output[i]) {
      placement.note[i] = "qparams from its input";
    }
  }
  return placement;
}

bool matches(const std::string& name, const std::string& entry) {
  return name == entry || fnmatch(entry.c_str(), name.c_str(), 0) == 0;
}

// is_float[i]: node i matches a black_list entry. Every entry must match some node.
std::vector<bool> black_listed(const Graph& graph, const std::vector<std::string>& black_list) {
  std::vector<bool> is_float(graph.nodes.size(), false);
  for (const std::string& entry : black_list) {
    bool used = false;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (graph.nodes[i].kind != NodeKind::kModule && graph.nodes[i].kind != NodeKind::kFunction)
        continue;
      if (!matches(graph.nodes[i].name, entry)) continue;
      is_float[i] = true;
      used = true;
    }
    QAT_CHECK(used, "prepare_qat: black_list entry '", entry,
              "' matches no node (HINT: entries are node names or globs such as 'layer4.*'; a "
              "fused node has its conv's or linear's name, e.g. 'layer1.0.conv1', not "
              "'layer1.0.bn1')");
  }
  return is_float;
}

quant::FusedActivation qat_activation(Activation activation) {
  switch (activation) {
    case Activation::kNone:
      return quant::FusedActivation::kNone;
    case Activation::kReLU:
      return quant::FusedActivation::kReLU;
    case Activation::kReLU6:
    case Activation::kClamp0To6:  // equal values; the gradient differs only at exactly 0 and 6
      return quant::FusedActivation::kReLU6;
  }
  return quant::FusedActivation::kNone;
}

// The QAT module for the weighted node `node`, holding its original modules; it fake-quantizes
// its output when quantize_output is set.
std::shared_ptr<quant::QatModule> qat_module(const GraphNode& node, const quant::QConfig& qconfig,
                                             bool quantize_output) {
  const auto options = quant::QatModuleOptions().quantize_output(quantize_output);
  if (is_exactly<FusedConv2d>(node)) {
    const auto& fused = static_cast<const FusedConv2d&>(*node.module);
    const auto with_activation =
        quant::QatModuleOptions(options).activation(qat_activation(fused.activation()));
    if (fused.bn()) {
      return std::make_shared<quant::ConvBn2d>(fused.conv(), fused.bn(), qconfig, with_activation);
    }
    return std::make_shared<quant::Conv2d>(fused.conv(), qconfig, with_activation);
  }
  if (is_exactly<FusedLinear>(node)) {
    const auto& fused = static_cast<const FusedLinear&>(*node.module);
    return std::make_shared<quant::Linear>(
        fused.linear(), qconfig,
        quant::QatModuleOptions(options).activation(qat_activation(fused.activation())));
  }
  if (is_exactly<nn::Conv2d>(node)) {
    return std::make_shared<quant::Conv2d>(std::static_pointer_cast<nn::Conv2d>(node.module),
                                           qconfig, options);
  }
  return std::make_shared<quant::Linear>(std::static_pointer_cast<nn::Linear>(node.module), qconfig,
                                         options);
}

// A FakeQuantize node reading output `output` of node `producer` of `graph`.
GraphNode fake_quantize_node(const Graph& graph, int producer, int output,
                             const quant::QConfig& qconfig) {
  const GraphNode& source = graph.nodes[producer];
  const std::shared_ptr<quant::FakeQuantize> fq = qconfig.activation.make_fake_quantize();
  GraphNode node;
  node.name = source.name + ".activation_post_process" +
              (source.num_outputs() > 1 ? "_" + std::to_string(output) : "");
  node.kind = NodeKind::kModule;
  node.op = fq->type_name();
  node.module = fq;
  node.inputs = {{producer, output}};
  node.output_shapes = {source.output_shapes[output]};
  node.annotations = {"act: " + fq->scheme()};
  return node;
}

// read_quantized[i][k]: some node reads output k of node i fake-quantized.
std::vector<std::vector<bool>> read_quantized(const Graph& graph, const Placement& placement) {
  std::vector<std::vector<bool>> out(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    out[i].assign(graph.nodes[i].num_outputs(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (size_t k = 0; k < graph.nodes[i].inputs.size(); ++k) {
      const Value v = graph.nodes[i].inputs[k];
      if (placement.quantized_input[i][k]) out[v.node][v.output] = true;
    }
  }
  return out;
}

// `node` (node `index` of the graph `placement` is for) with its QAT module if it is a
// weighted node to quantize, annotated.
GraphNode qat_node(GraphNode node, int index, bool is_float, const Placement& placement,
                   const quant::QConfig& qconfig) {
  if (is_float) {
    node.annotations.push_back("float: black_list");
  } else if (is_weighted(node)) {
    const std::shared_ptr<quant::QatModule> module =
        qat_module(node, qconfig, placement.quantize_weighted_outputs);
    node.module = module;
    node.op = module->type_name();
    node.annotations.push_back("weight: " + module->weight_fake_quant()->scheme());
    if (module->activation_post_process()) {
      node.annotations.push_back("output: " + module->activation_post_process()->scheme());
    }
  }
  if (!placement.note[index].empty()) node.annotations.push_back(placement.note[index]);
  return node;
}

// The placement of `target` (see the header).
Placement target_placement(const Graph& graph, quant::Target target,
                           const std::vector<bool>& is_float) {
  switch (target) {
    case quant::Target::kTensorRT:
      return tensorrt_placement(graph, is_float);
    case quant::Target::kTNN:
      return tnn_placement(graph, is_float);
    case quant::Target::kFbgemm:
    case quant::Target::kQnnpack:
    case quant::Target::kQnnpackPerChannel:
      break;
  }
  return pytorch_placement(graph, is_float);
}

// The number of elements each window of average pool `node` averages, when they all average
// the same number (no padding, no partial window; adaptive bins that tile the input); else 0.
int64_t uniform_window(const Graph& graph, const GraphNode& node, const FunctionalForm& pool) {
  const Shape& in = graph.nodes[node.inputs[0].node].output_shapes.at(node.inputs[0].output);
  const Shape& out = node.output_shapes.at(0);
  if (in.size() != 4 || out.size() != 4) return 0;
  if (pool.op == "adaptive_avg_pool2d") {
    if (in[2] % out[2] != 0 || in[3] % out[3] != 0) return 0;
    return (in[2] / out[2]) * (in[3] / out[3]);
  }
  const std::vector<int64_t>& kernel = pool.attrs.get_ints("kernel");
  const std::vector<int64_t>& stride = pool.attrs.get_ints("stride");
  const std::vector<int64_t>& padding = pool.attrs.get_ints("padding");
  if (padding != std::vector<int64_t>{0, 0}) return 0;
  if ((out[2] - 1) * stride[0] + kernel[0] > in[2] || (out[3] - 1) * stride[1] + kernel[1] > in[3])
    return 0;
  return kernel[0] * kernel[1];
}

// tnn: links every int8 value of the prepared graph to the quantizer whose scale it has (a
// FakeQuantize node, a QAT module's output quantizer, passed on by relu and pools), then gives
// each QAT module its input's quantizer (QatModule::set_input_quantizer: TNN's int8 kernel in
// eval) and puts an Int8AveragePool (TNN's truncating average) in place of each int8 average
// pool. is_float[i]: node i of `graph` is black-listed.
void link_tnn_int8_arithmetic(Graph& graph, const std::vector<bool>& is_float) {
  std::vector<std::shared_ptr<quant::FakeQuantize>> scale_of(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    GraphNode& node = graph.nodes[i];
    if (is_float[i] || node.kind == NodeKind::kInput || node.kind == NodeKind::kOutput) continue;
    const Value in = node.inputs.at(0);
    const std::shared_ptr<quant::FakeQuantize> in_scale = in.output == 0 ? scale_of[in.node] : nullptr;
    if (auto fq = std::dynamic_pointer_cast<quant::FakeQuantize>(node.module)) {
      scale_of[i] = fq;
    } else if (auto layer = std::dynamic_pointer_cast<quant::QatModule>(node.module)) {
      layer->set_input_quantizer(in_scale);
      scale_of[i] = layer->activation_post_process();
    } else if (keeps_input_scale(node) && in_scale) {
      scale_of[i] = in_scale;
      if (!is_tnn_average_pool(node)) continue;
      const FunctionalForm pool = node.kind == NodeKind::kModule
                                      ? functional_form(*node.module).value()
                                      : FunctionalForm{node.op, node.attrs};
      const int64_t window = uniform_window(graph, node, pool);
      if (window == 0) continue;  // the simulator's average differs (convert says so)
      node.kind = NodeKind::kModule;
      node.op = "Int8AveragePool";
      node.module = std::make_shared<Int8AveragePool>(pool.op, pool.attrs, window, in_scale);
    }
  }
}

}  // namespace

Graph prepare_qat(const Graph& fused, const quant::QConfig& qconfig,
                  const std::vector<std::string>& black_list) {
  qconfig.validate();
  const std::vector<bool> is_float = black_listed(fused, black_list);
  const Placement placement = target_placement(fused, qconfig.target, is_float);
  const std::vector<std::vector<bool>> needs_quantizer = read_quantized(fused, placement);

  // Each old value's float and fake-quantized versions in the new graph. A quantizer follows
  // its producer directly.
  const size_t n = fused.nodes.size();
  std::vector<std::vector<Value>> float_value(n), quant_value(n);
  Graph out;
  std::vector<bool> out_is_float;  // per node of out: black-listed
  for (size_t i = 0; i < n; ++i) {
    GraphNode node = qat_node(fused.nodes[i], static_cast<int>(i), is_float[i], placement, qconfig);
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const Value v = node.inputs[k];
      node.inputs[k] = placement.quantized_input[i][k] ? quant_value[v.node][v.output]
                                                       : float_value[v.node][v.output];
    }
    const int index = out.add_node(std::move(node));
    out_is_float.push_back(is_float[i]);
    for (int k = 0; k < out.nodes[index].num_outputs(); ++k) {
      float_value[i].push_back({index, k});
      quant_value[i].push_back({});
      if (!needs_quantizer[i][k] && !placement.quantized_output[i]) continue;
      GraphNode fq = fake_quantize_node(out, index, k, qconfig);
      if (placement.quantized_output[i]) fq.annotations.push_back(placement.output_note[i]);
      quant_value[i][k] = {out.add_node(std::move(fq)), 0};
      out_is_float.push_back(false);
      if (placement.quantized_output[i]) float_value[i][k] = quant_value[i][k];
    }
  }
  if (qconfig.target == quant::Target::kTNN) link_tnn_int8_arithmetic(out, out_is_float);
  return out;
}

}  // namespace qat::graph
