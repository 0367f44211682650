#include "graph/convert.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/ops/conv.h"
#include "graph/executor.h"
#include "graph/int8_average_pool.h"
#include "nn/activation.h"
#include "nn/layers.h"
#include "nn/pooling.h"
#include "quant/conv_bn_relu.h"
#include "quant/conv_relu.h"
#include "quant/fake_quantize.h"
#include "quant/int8_arithmetic.h"
#include "quant/linear.h"

namespace qat::graph {
namespace {

// Whether the observer of `fq` has seen data (or a calibrator set its range): per tensor,
// min_val starts at +inf and max_val at -inf; per channel, both start empty.
bool observed(const quant::FakeQuantize& fq) {
  const std::vector<float> min_val = fq.activation_post_process()->min_val().to_vector<float>();
  const std::vector<float> max_val = fq.activation_post_process()->max_val().to_vector<float>();
  if (min_val.empty()) return false;
  for (size_t i = 0; i < min_val.size(); ++i)
    if (!(min_val[i] <= max_val[i])) return false;
  return true;
}

// The frozen qparams of the quantizer `fq` (`what` names it in errors).
quant::QParams frozen_qparams(const quant::FakeQuantize& fq, const std::string& what) {
  QAT_CHECK(fq.fake_quant_enabled(), what,
            " has fake quant disabled, so the trained model runs float there");
  QAT_CHECK(observed(fq), what,
            " never observed data, so its scale was never computed (HINT: run calibration "
            "forwards in train mode with the observers enabled before convert)");
  return fq.qparams();
}

// The conv attrs of a "conv2d" node (executor.cc's names).
OpAttrs conv_attrs(const nn::Conv2d& conv) {
  const ops::Conv2dParams p = conv.conv_params();
  return {
      {"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation}, {"groups", p.groups}};
}

// The frozen quantizer node feeding input 0 of graph node `node`, or nullptr when that input
// is float.
const quant::FakeQuantize* input_quantizer(const Graph& graph, const GraphNode& node) {
  const GraphNode& producer = graph.nodes[node.inputs.at(0).node];
  return producer.kind == NodeKind::kModule
             ? dynamic_cast<const quant::FakeQuantize*>(producer.module.get())
             : nullptr;
}

// A per-tensor weight quantizer (qnnpack's per_tensor_symmetric) as the equal per-channel one
// along axis 0 with `channels` copies of its scale and zero point; a per-channel one unchanged.
quant::QParams per_channel_weight_qparams(const quant::QParams& qparams, int64_t channels) {
  if (qparams.per_channel()) return qparams;
  quant::QParams out = qparams;
  out.axis = 0;
  out.scale = Tensor::from_vector(
      std::vector<float>(channels, qparams.scale.to(DType::kFloat32).to_vector<float>().at(0)),
      {channels});
  out.zero_point = Tensor::from_vector(
      std::vector<int32_t>(channels,
                           qparams.zero_point.to(DType::kInt32).to_vector<int32_t>().at(0)),
      {channels});
  return out;
}

// A QAT conv / linear node as a "conv2d" / "linear" IntNode (name, inputs, shapes already set).
void convert_layer(const Graph& graph, const GraphNode& node, const quant::QatModule& module,
                   IntNode& out) {
  if (const auto* conv_bn = dynamic_cast<const quant::ConvBn2d*>(&module)) {
    out.op = "conv2d";
    out.attrs = conv_attrs(*conv_bn->conv());
  } else if (const auto* conv = dynamic_cast<const quant::Conv2d*>(&module)) {
    out.op = "conv2d";
    out.attrs = conv_attrs(*conv->conv());
  } else {
    QAT_CHECK(dynamic_cast<const quant::Linear*>(&module) != nullptr,
              "convert has no integer form for the QAT module ", module.type_name());
    out.op = "linear";
  }
  const quant::FoldedWeights folded = module.fold();
  IntLayer layer;
  layer.weight_qparams = frozen_qparams(*module.weight_fake_quant(), "its weight quantizer");
  const quant::QParams per_channel =
      per_channel_weight_qparams(layer.weight_qparams, folded.weight.size(0));
  layer.weight = quant::quantize_weight(folded.weight, per_channel);
  layer.bias = folded.bias;
  const quant::FakeQuantize* input = input_quantizer(graph, node);
  if (layer.bias.defined() && input != nullptr) {
    const quant::QParams in = input->qparams();
    layer.bias_int32 = quant::int32_bias(layer.bias, in.scale.data<float>()[0], per_channel);
  }
  layer.activation = module.options().activation();
  if (module.activation_post_process()) {
    layer.output = frozen_qparams(*module.activation_post_process(), "its output quantizer");
  }
  out.layer = std::move(layer);
}

IntNode convert_node(const Graph& graph, const GraphNode& node) {
  IntNode out;
  out.name = node.name;
  out.inputs = node.inputs;
  out.output_shapes = node.output_shapes;
  switch (node.kind) {
    case NodeKind::kInput:
      out.op = "input";
      return out;
    case NodeKind::kOutput:
      out.op = "output";
      return out;
    case NodeKind::kFunction:
      QAT_CHECK(node.op != "conv2d" && node.op != "linear", "a functional ", node.op,
                " reads its weight as a graph value; convert quantizes only conv / linear "
                "modules (nn::Conv2d, nn::Linear)");
      QAT_CHECK(has_function(node.op), "convert has no integer-model form for op '", node.op, "'");
      out.op = node.op;
      out.attrs = node.attrs;
      if (out.op == "dropout") out.attrs.set("training", false);
      return out;
    case NodeKind::kModule:
      break;
  }
  if (const auto* fq = dynamic_cast<const quant::FakeQuantize*>(node.module.get())) {
    QAT_CHECK(!fq->is_per_channel(), "an activation quantizer must be per tensor");
    out.op = "quantize";
    out.qparams = frozen_qparams(*fq, "the quantizer");
  } else if (const auto* qat = dynamic_cast<const quant::QatModule*>(node.module.get())) {
    convert_layer(graph, node, *qat, out);
  } else {
    std::optional<FunctionalForm> form = functional_form(*node.module);
    // tnn's truncating average is the simulator's average pool.
    if (const auto* pool = dynamic_cast<const Int8AveragePool*>(node.module.get()))
      form = FunctionalForm{pool->op(), pool->attrs()};
    if (form) {
      out.op = form->op;
      out.attrs = form->attrs;
    }
    QAT_CHECK(form.has_value(), "the ", node.module->type_name(),
              " runs in float: convert has no integer-model form for it (conv, linear and "
              "batch norm need prepare_qat(); black-listed ones are not converted yet)");
  }
  return out;
}

// A graph node that TNN runs in int8 keeping its input's scale (tnn_format.md §3.4), as
// IntNode ops.
bool keeps_input_scale(const std::string& op) {
  return op == "relu" || op == "max_pool2d" || op == "avg_pool2d" || op == "adaptive_avg_pool2d";
}

bool black_listed(const GraphNode& node) {
  return std::find(node.annotations.begin(), node.annotations.end(), "float: black_list") !=
         node.annotations.end();
}

// The quantizer that reads output 0 of node `index` (the requantizer of a tnn add or cat), or
// nullptr.
const quant::FakeQuantize* output_quantizer(const Graph& graph, int index) {
  for (size_t i = index + 1; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    const auto* fq = dynamic_cast<const quant::FakeQuantize*>(node.module.get());
    if (fq != nullptr && node.inputs.at(0) == Value{index, 0}) return fq;
  }
  return nullptr;
}

float scalar_scale(const quant::QParams& qparams) { return qparams.scale.data<float>()[0]; }

// tnn: the blob scales of node `index` of `out` (whose earlier nodes have theirs) and, for a
// conv / linear, its accumulator scale s_in * s_w[c] and bias_int32 from the input blob's scale.
void assign_tnn_scales(const Graph& graph, int index, IntModel& out) {
  IntNode& node = out.nodes[index];
  std::vector<std::optional<float>> in_scales;
  for (const Value& v : node.inputs)
    in_scales.push_back(out.nodes[v.node].output_scales.at(v.output));
  const bool int8_inputs =
      std::all_of(in_scales.begin(), in_scales.end(), [](auto s) { return s.has_value(); });
  node.output_scales.assign(node.output_shapes.size(), std::nullopt);
  if (node.op == "output") {
    node.output_scales.clear();
  } else if (node.op == "quantize") {
    node.output_scales[0] = scalar_scale(*node.qparams);
  } else if (node.layer) {
    IntLayer& layer = *node.layer;
    QAT_CHECK(in_scales.at(0), "tnn runs ", node.op, " in int8, but its input is float");
    QAT_CHECK(layer.output, "a tnn ", node.op,
              " requantizes its output, but it has no output "
              "quantizer");
    layer.accumulator_scale = quant::tnn_accumulator_scale(*in_scales[0], layer.weight_qparams);
    if (layer.bias.defined()) {
      layer.bias_int32 = quant::int32_bias(layer.bias, *in_scales[0], layer.weight_qparams);
    }
    node.output_scales[0] = scalar_scale(*layer.output);
  } else if (black_listed(graph.nodes[index])) {
    // Float: TNN dequantizes its int8 inputs.
  } else if ((node.op == "add" && node.inputs.size() == 2) || node.op == "cat") {
    if (const quant::FakeQuantize* requantizer = output_quantizer(graph, index)) {
      QAT_CHECK(int8_inputs, "a tnn int8 ", node.op, " needs int8 inputs");
      for (const std::optional<float>& s : in_scales) node.input_scales.push_back(*s);
      node.output_scales[0] = scalar_scale(frozen_qparams(*requantizer, "its output quantizer"));
    }
  } else if (keeps_input_scale(node.op)) {
    node.output_scales[0] = in_scales.at(0);
  }
}

}  // namespace

IntModel convert(const QuantizableModel& model) {
  const std::optional<quant::QConfig>& qconfig = model.qconfig();
  const Graph& graph = model.graph();
  IntModel out;
  out.target = qconfig ? qconfig->target : quant::Target::kTensorRT;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    try {
      out.nodes.push_back(convert_node(graph, node));
      if (out.target == quant::Target::kTNN) assign_tnn_scales(graph, static_cast<int>(i), out);
    } catch (const Error& e) {
      throw Error("convert: node '" + node.name + "' (" + node.op + "): " + e.what());
    }
  }
  QAT_CHECK(model.is_prepared(),
            "convert: the model is not prepared for QAT (HINT: call prepare_qat() first)");
  return out;
}

}  // namespace qat::graph
