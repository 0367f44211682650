#pragma once

#include <string>

#include "core/arg.h"
#include "core/shape.h"
#include "graph/graph.h"
#include "graph/int_model.h"
#include "nn/module.h"

// ONNX export (opset 13), written with the ONNX protobuf library and checked with
// onnx::checker::check_model before anything is written (onnx_qdq.md has the conventions):
//   float   a traced Graph in eval semantics: Conv (+ BatchNormalization with the running
//           statistics), Gemm, pools, shape ops, ...
//   QAT     a tensorrt IntModel (graph::convert) as a Q/DQ graph: every "quantize" node is a
//           QuantizeLinear -> DequantizeLinear pair (0-d float scale, 0-d int8 zero point 0),
//           every conv / linear reads its int8 weight through DequantizeLinear(axis=0) with
//           per-channel scales and adds the float BN-folded bias. ONNX Runtime runs it as
//           graph::simulate() does.
//           A PyTorch-preset IntModel (fbgemm, qnnpack, qnnpack_perchannel) exports as
//           torch.onnx (opset 13) writes a PyTorch 1.13 eager QAT model's fake quants: each
//           quantizer a QuantizeLinear -> DequantizeLinear pair with the observer's scale and
//           zero point, uint8 for quint8 activations ([0, 255]; fbgemm's reduce_range
//           [0, 127] adds torch.onnx's uint8 Clip(max 127) between them), int8 for [-128, 127];
//           int8 weights (zero point 0) per channel with axis=0, or per tensor (qnnpack); each
//           conv / linear output quantizer a Q/DQ pair after the conv (+ fused ReLU). Other
//           integer ranges throw, naming the node (torch.onnx raises for them too).
//           QuantizeLinear rounds x / s where PyTorch's fake quant rounds x * (1 / s): the two
//           differ on rare values next to a rounding boundary; graph::simulate() computes what
//           ONNX Runtime does (int_model.h).
// The graph input and output are named by the options, with a symbolic batch dimension; every
// ONNX node carries the qat node it came from in its doc_string. Nodes whose values reach no
// output (GoogLeNet's aux heads traced in training mode) are left out. An op with no ONNX form
// throws qat::Error naming the node.
namespace qat::exporters {

struct OnnxExportOptions {
  QAT_ARG(std::string, input_name) = "input";
  QAT_ARG(std::string, output_name) = "output";
  // dim_param of dimension 0 of the input and output; empty: the traced batch size, fixed.
  QAT_ARG(std::string, batch_dim) = "batch";
  QAT_ARG(std::string, graph_name) = "qat";
};

// The serialized, checked ModelProto of the float graph `graph` (trace(), optionally fuse()d).
// BatchNorm2d exports as BatchNormalization with the running statistics whatever the modules'
// train/eval mode; dropout as Identity. QAT modules are rejected: convert() the model and
// export the IntModel.
std::string to_onnx(const graph::Graph& graph, const OnnxExportOptions& options = {});

// The serialized, checked Q/DQ ModelProto of a tensorrt or PyTorch-preset IntModel.
std::string to_onnx(const graph::IntModel& model, const OnnxExportOptions& options = {});

// to_onnx(...) written to `path` atomically (a temporary file beside it, fsync, rename): on an
// error `path` is left as it was.
void export_onnx(const graph::Graph& graph, const std::string& path,
                 const OnnxExportOptions& options = {});
void export_onnx(const graph::IntModel& model, const std::string& path,
                 const OnnxExportOptions& options = {});

// export_onnx(trace(model, input_shape), path): the float model as it runs in eval mode.
void export_onnx(nn::Module& model, const Shape& input_shape, const std::string& path,
                 const OnnxExportOptions& options = {});

}  // namespace qat::exporters
