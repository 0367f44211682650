#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"
#include "core/trace_hook.h"
#include "graph/graph.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"
#include "quant/qparams.h"

// The integer model convert() makes from a QAT graph and the exporters write (DESIGN.md,
// "Convert and the integer model"): the graph's dataflow with every quantizer frozen into a
// per-blob scale and every conv / linear reduced to int8 weights with their scales.
namespace qat::graph {

// A conv or linear layer with BN folded in and its weight quantized.
struct IntLayer {
  // int8 codes of the folded weight W' ([OC, IC / groups, KH, KW] or [OC, IC]), in
  // [weight_qparams.quant_min, weight_qparams.quant_max].
  Tensor weight;
  // The frozen weight scales: per channel along axis 0 ([OC]), zero point 0.
  quant::QParams weight_qparams;
  // The folded bias b' (float32 [OC]); undefined when the layer has none. TensorRT adds it in
  // float.
  Tensor bias;
  // round(b' / (s_in * s_w[c])) (int32 [OC], float32 arithmetic, the target's rounding): the
  // integer bias of integer runtimes. Undefined without a bias or a quantized input.
  Tensor bias_int32;
  quant::FusedActivation activation = quant::FusedActivation::kNone;
  // The requantized output (tnn's conv / FC); nullopt: the output stays float (tensorrt).
  std::optional<quant::QParams> output;

  // weight * scale per output channel (float32): the weight a Q/DQ graph's DequantizeLinear
  // gives the conv, equal bit for bit to the training forward's fake-quantized W'.
  Tensor dequantized_weight() const;
};

// One node of an IntModel. op is one of
//   "input", "output"      the model's input and output
//   "quantize"             a quantizer of one blob (qparams); a Q/DQ pair for tensorrt
//   "conv2d", "linear"     a weighted layer (layer; conv2d attrs: stride, padding, dilation,
//                          groups); one input, the activation
//   any other op           a float op run by graph::run_function() with attrs ("add", "relu",
//                          "max_pool2d", "flatten", ...; nn module calls become their
//                          functional form, dropout runs with training=false)
struct IntNode {
  std::string name;  // the graph node's name
  std::string op;
  std::vector<Value> inputs;  // as in the graph; node indices are the graph's
  OpAttrs attrs;
  std::vector<Shape> output_shapes;       // as traced
  std::optional<quant::QParams> qparams;  // "quantize" only: per tensor
  std::optional<IntLayer> layer;          // "conv2d" / "linear" only
};

// Nodes in the graph's (topological) order; node i is the graph's node i.
struct IntModel {
  quant::Target target = quant::Target::kTensorRT;
  std::vector<IntNode> nodes;

  // Index of the node called `name`, or -1.
  int find(const std::string& name) const;
  // The node called `name`; a missing name throws qat::Error.
  const IntNode& node(const std::string& name) const;
};

// Runs `model` on `input` (float32 [N, ...]) as the target's runtime does, without autograd.
// tensorrt: the ONNX Q/DQ graph as ONNX Runtime computes it with optimizations off -- each
// quantizer is QuantizeLinear (x / s, half to even, saturated) then DequantizeLinear (q * s),
// conv / linear run in float32 on dequantized_weight() plus the float bias, the other ops in
// float32. Other targets throw qat::Error. An error names the node it happened in.
Tensor simulate(const IntModel& model, const Tensor& input);

}  // namespace qat::graph
