#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"
#include "core/trace_hook.h"
#include "graph/graph.h"
#include "quant/int8_arithmetic.h"
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
  // The frozen weight qparams, zero point 0: per channel along axis 0 ([OC]), or per tensor
  // ([1], qnnpack's per_tensor_symmetric weights).
  quant::QParams weight_qparams;
  // The folded bias b' (float32 [OC]); undefined when the layer has none. TensorRT adds it in
  // float.
  Tensor bias;
  // round(b' / (s_in * s_w[c])) (int32 [OC], float32 arithmetic, the target's rounding): the
  // integer bias of integer runtimes. Undefined without a bias or a quantized input.
  Tensor bias_int32;
  // tnn: s_in * s_w[c] (float32 [OC]), the scale TNN stores with the int8 weight: it turns the
  // int32 accumulator into float. Undefined for tensorrt.
  Tensor accumulator_scale;
  quant::FusedActivation activation = quant::FusedActivation::kNone;
  // The requantized output (tnn's conv / FC; the PyTorch presets' activation_post_process inside
  // the QAT module, after the fused activation: a Q/DQ pair); nullopt: the output stays float
  // (tensorrt).
  std::optional<quant::QParams> output;

  // weight * scale per output channel (float32): the weight a Q/DQ graph's DequantizeLinear
  // gives the conv, equal bit for bit to the training forward's fake-quantized W'.
  Tensor dequantized_weight() const;
};

// One node of an IntModel. op is one of
//   "input", "output"      the model's input and output
//   "quantize"             a quantizer of one blob (qparams); a Q/DQ pair for tensorrt and the
//                          PyTorch presets (uint8 zero point on [0, 255] or fbgemm's reduce_range
//                          [0, 127] for quint8 activations); for tnn
//                          float2int8(x / s) of a float input, a requantization
//                          float2int8(q * s_in / s) of an int8 one
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
  std::optional<quant::QParams> qparams;  // "quantize" only: per tensor, with its zero point
  std::optional<IntLayer> layer;          // "conv2d" / "linear" only
  // tnn: the blob scale of each output (float ~ q * s) when that output is int8, nullopt when it
  // is float. Int8 are the outputs of "quantize", conv / linear (the layer's output scale), a
  // two-input add and a cat (requantized to the scale of the quantizer that reads them), and of
  // relu / max_pool2d / avg_pool2d / adaptive_avg_pool2d with an int8 input (its scale). Empty
  // for tensorrt.
  std::vector<std::optional<float>> output_scales;
  // tnn int8 add / cat: the blob scale of each input (their producers' output_scales).
  std::vector<float> input_scales;
};

// Whether simulate() runs a model of `target` as an ONNX Q/DQ graph: tensorrt and the PyTorch
// presets (fbgemm, qnnpack, qnnpack_perchannel); tnn runs on int8 blobs.
bool runs_qdq(quant::Target target);

// Nodes in the graph's (topological) order; node i is the graph's node i.
struct IntModel {
  quant::Target target = quant::Target::kTensorRT;
  std::vector<IntNode> nodes;

  // Index of the node called `name`, or -1.
  int find(const std::string& name) const;
  // The node called `name`; a missing name throws qat::Error.
  const IntNode& node(const std::string& name) const;
};

// TNN's float2int8 (quant/int8_arithmetic.h), for the simulator's users.
using quant::float2int8;

// The float32 summation order of the tensorrt simulate() (conv / linear, averaging reductions).
enum class Accumulation {
  // oneDNN / Eigen, as the training forward does: simulate() equals the fake-quant eval forward.
  kOneDnn,
  // ONNX Runtime's order (core/kernels/mlas_order_ref.h: its CPU provider, MLAS on x86-64, one
  // intra-op thread, graph optimizations disabled), for conv / linear and for the averaging
  // reductions (adaptive_avg_pool2d to 1x1, mean over H and W): simulate() equals the exported
  // Q/DQ model run in ONNX Runtime bit for bit. Plain loops, slower than kOneDnn.
  kOnnxRuntime,
};

struct SimulateOptions {
  // tnn: apply the fusion TNN makes when it loads a model (tnn_format.md §3.5), which changes
  // the rounding: a 1x1 conv (groups 1, stride 1, padding 0, no fused activation) whose only
  // reader is the int8 add that is the next node computes, per element,
  //   q = float2int8(acc * (s_acc[c] / s_add) + other * (s_other / s_add))
  // skipping its own output scale. A relu after the add is unaffected (max(0, q) commutes with
  // the rounding). Off: every layer rounds separately, as the fake-quant graph does.
  bool apply_tnn_load_fusions = true;
  // tensorrt: the float32 summation order (see Accumulation). Float sums in
  // another order differ in the last bits, and a value that close to a rounding boundary of the
  // next quantizer flips one int8 code, which then spreads through the later layers.
  Accumulation accumulation = Accumulation::kOneDnn;
  // tensorrt and the PyTorch presets: the rounding of every quantizer of activations. Unset:
  // QuantizeLinear's rint(x / s), what ONNX Runtime and TensorRT compute. Set to the preset's
  // training rounding (RoundingMode::kHalfEvenMul, PyTorch's rint(x * (1 / s))), simulate()
  // with kOneDnn equals the fake-quant eval forward bit for bit: for measuring what the
  // export's rounding rule changes.
  std::optional<RoundingMode> rounding;
  // tnn: compute the int32 accumulators of conv / linear with the plain integer loops (the
  // reference twin) instead of the fast path, a float32 oneDNN conv / Eigen GEMM on the codes
  // that is exact while max|x_q| * sum|w_q| <= 2^24 (else the layer runs the loops anyway).
  // Both give the same bits; for testing the fast path.
  bool reference_kernels = false;
};

// Runs `model` on `input` (float32 [N, ...]) as the target's runtime does, without autograd.
// tensorrt and the PyTorch presets (fbgemm, qnnpack, qnnpack_perchannel): the ONNX Q/DQ graph
// as ONNX Runtime computes it with optimizations off -- each quantizer is QuantizeLinear
// (rint(x / s) + zp, half to even, saturated to [quant_min, quant_max]; fbgemm's [0, 127] is
// torch.onnx's QuantizeLinear -> Clip(max 127) -> DequantizeLinear) then DequantizeLinear
// ((q - zp) * s). The PyTorch presets train with PyTorch's zp + rint(x * (1 / s)), which
// differs from x / s when x * (1 / s) lands on the other side of a rounding boundary (rarely:
// measured in graph/convert_pytorch_test.cc), so simulate() equals the exported model in ONNX
// Runtime, not the fake-quant forward, bit for bit;
// conv / linear run in float32 on dequantized_weight() plus the float bias (summed as
// options.accumulation says), the other ops in float32.
// tnn: the int8 kernels of tnn_format.md §3.4 on int8 blobs (output_scales):
//   conv / linear   acc = sum x_q * w_q (int32, zero padding) + bias_int32;
//                   v = acc * (s_acc[c] / s_out) in float32; relu: float2int8(max(v, 0));
//                   relu6: max(0, min(float2int8(v), float2int8(6 / s_out))); else float2int8(v)
//   add             float2int8((a * s_a + b * s_b) / s_out)
//   cat             each input float2int8(x * s_in / s_out)
//   relu, max pool  max(0, q), the window's max q
//   average pools   trunc(sum q / count) (integer division toward zero)
//   quantize        float2int8(x / s) (float input) or float2int8(q * s_in / s) (int8 input)
// Float ops (tnn's float islands) read int8 inputs dequantized (q * s) and run in float32; the
// output is dequantized. options: see SimulateOptions. Other targets throw qat::Error. An error
// names the node it happened in.
Tensor simulate(const IntModel& model, const Tensor& input,
                const SimulateOptions& options = SimulateOptions());

// One step of the tensorrt simulate(): the outputs of node `index` given its inputs (in the
// order of nodes[index].inputs; `input` is the model input, read by the "input" node). For
// checking each node on given inputs, e.g. a runtime's own.
std::vector<Tensor> simulate_tensorrt_node(const IntModel& model, int index,
                                           const std::vector<Tensor>& inputs, const Tensor& input,
                                           const SimulateOptions& options = SimulateOptions());

// One step of the tnn simulate(): the outputs of node `index` from `values`, the outputs of the
// nodes before it (values[i][k]: int8 codes where nodes[i].output_scales[k] is set, else
// float32; a fused add reads its conv's input there). For checking each kernel on given inputs.
std::vector<Tensor> simulate_tnn_node(const IntModel& model, int index,
                                      const std::vector<std::vector<Tensor>>& values,
                                      const Tensor& input,
                                      const SimulateOptions& options = SimulateOptions());

// tnn: fused_conv[i] is the conv node TNN fuses into the int8 add node i when it loads the
// model (SimulateOptions::apply_tnn_load_fusions), -1 for every other node.
std::vector<int> tnn_load_fusions(const IntModel& model);

}  // namespace qat::graph
