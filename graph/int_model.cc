#include "graph/int_model.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "graph/executor.h"

namespace qat::graph {
namespace {

using Tensors = std::vector<Tensor>;

std::array<int64_t, 2> pair_attr(const OpAttrs& attrs, const std::string& name) {
  const std::vector<int64_t>& v = attrs.get_ints(name);
  QAT_CHECK(v.size() == 2, "attribute '", name, "' must have 2 values, got ", shape_str(v));
  return {v[0], v[1]};
}

// QuantizeLinear then DequantizeLinear (ONNX opset 13): rint(x / s), saturated, times s.
Tensor quantize_dequantize(const Tensor& x, quant::QParams qparams) {
  qparams.rounding = RoundingMode::kHalfEvenDiv;
  return quant::fake_quantize(x, qparams);
}

Tensor apply_activation(const Tensor& x, quant::FusedActivation activation) {
  switch (activation) {
    case quant::FusedActivation::kNone:
      return x;
    case quant::FusedActivation::kReLU:
      return ops::relu(x);
    case quant::FusedActivation::kReLU6:
      return ops::relu6(x);
  }
  return x;
}

// A conv2d / linear node on its (dequantized) input, TensorRT's way: float32 on the
// dequantized int8 weight plus the float bias.
Tensor run_layer(const IntNode& node, const Tensor& x) {
  const IntLayer& layer = *node.layer;
  Tensor y;
  if (node.op == "conv2d") {
    ops::Conv2dParams params;
    params.stride = pair_attr(node.attrs, "stride");
    params.padding = pair_attr(node.attrs, "padding");
    params.dilation = pair_attr(node.attrs, "dilation");
    params.groups = node.attrs.get_int("groups");
    y = ops::conv2d(x, layer.dequantized_weight(), layer.bias, params);
  } else {
    y = ops::linear(x, layer.dequantized_weight(), layer.bias);
  }
  y = apply_activation(y, layer.activation);
  return layer.output ? quantize_dequantize(y, *layer.output) : y;
}

Tensors run_tensorrt_node(const IntNode& node, const Tensors& in, const Tensor& input) {
  if (node.op == "input") return {input};
  if (node.op == "output") return {};
  if (node.op == "quantize") return {quantize_dequantize(in.at(0), *node.qparams)};
  if (node.layer) return {run_layer(node, in.at(0))};
  return run_function(node.op, in, node.attrs);
}

}  // namespace

Tensor IntLayer::dequantized_weight() const {
  const int64_t channels = weight.size(0);
  const int64_t inner = weight.numel() / channels;
  QAT_CHECK(weight_qparams.scale.numel() == channels, "IntLayer: ", channels,
            " output channels but ", weight_qparams.scale.numel(), " weight scales");
  Tensor out = Tensor::empty(weight.shape());
  const int8_t* q = weight.data<int8_t>();
  const float* scale = weight_qparams.scale.data<float>();
  float* w = out.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = c * inner; i < (c + 1) * inner; ++i)
      w[i] = static_cast<float>(q[i]) * scale[c];
  }
  return out;
}

int IntModel::find(const std::string& name) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == name) return static_cast<int>(i);
  return -1;
}

const IntNode& IntModel::node(const std::string& name) const {
  const int index = find(name);
  QAT_CHECK(index >= 0, "IntModel: no node called '", name, "'");
  return nodes[index];
}

Tensor simulate(const IntModel& model, const Tensor& input) {
  QAT_CHECK(model.target == quant::Target::kTensorRT, "simulate: target '",
            quant::target_name(model.target), "' is not simulated yet (only 'tensorrt')");
  NoGradGuard no_grad;
  std::vector<Tensors> values(model.nodes.size());
  Tensor result;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const IntNode& node = model.nodes[i];
    Tensors in;
    for (const Value& v : node.inputs) in.push_back(values.at(v.node).at(v.output));
    if (node.op == "output") result = in.at(0);
    try {
      values[i] = run_tensorrt_node(node, in, input);
    } catch (const Error& e) {
      throw Error("simulate: node '" + node.name + "' (" + node.op + "): " + e.what());
    }
  }
  QAT_CHECK(result.defined(), "simulate: the model has no output node");
  return result;
}

}  // namespace qat::graph
