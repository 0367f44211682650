#pragma once

#include "graph/int_model.h"
#include "graph/quantizable_model.h"

namespace qat::graph {

// Turns a prepared QuantizableModel into an IntModel (DESIGN.md, "Convert and the integer
// model"), reading the graph in eval semantics (BN with its running statistics, dropout off):
//   * a QAT conv / linear node becomes "conv2d" / "linear" with fold()'s W' and b' (BN folded
//     in): W' quantized to int8 with the frozen scales of its weight_fake_quant (the same
//     rounding and range), the float b', the int32 bias round(b' / (s_in * s_w)) when its input
//     is quantized, the fused activation and, if the module has one, the output quantizer;
//   * a FakeQuantize node becomes "quantize" with its frozen per-tensor scale and zero point;
//   * the float ops keep their op and attrs; float module calls (ReLU, ReLU6, MaxPool2d,
//     AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout) become their functional ops.
// Node names and the dataflow are the graph's. Run it with simulate(); freeze the observers
// (quant::disable_observer) before converting, or the next forward moves the scales again.
// "tnn" (tnn_format.md §3) also records every int8 blob's scale (IntNode::output_scales; add /
// cat also their input_scales) and gives each conv / linear its accumulator scale s_in * s_w[c]
// (float32) and bias_int32 = round(b' / (s_in * s_w[c])) rounded half away from zero (TNN's
// float2int8 rule, the tnn qconfig's rounding; TNN's own tool truncates), s_in being its input
// blob's scale; black-listed and float-island ops stay float ops that simulate() feeds
// dequantized values.
// "fbgemm", "qnnpack", "qnnpack_perchannel" (onnx_qdq.md §8): as tensorrt, plus the placement of
// prepare_qat.h (conv / linear output quantizers become IntLayer::output, add / cat observers
// "quantize" nodes) with PyTorch's grids: quint8 activations with their zero points on [0, 255]
// (fbgemm's reduce_range: [0, 127]), qint8 symmetric weights on [-128, 127], per channel
// (qnnpack: per tensor, kept per tensor in weight_qparams), weight codes rounded as PyTorch's
// fake quant does (zp + rint(w * (1 / s))), so the codes are the trained weights exactly.
// Throws qat::Error naming the node for what it cannot
// convert: an unprepared model, a float conv / linear / BN (black-listed or not prepared), a
// quantizer that never observed data or whose fake quant is disabled, a weight grid that is not
// int8 with zero points 0, an op the integer model has no form for; for tnn, a conv / linear
// whose input is float.
IntModel convert(const QuantizableModel& model);

}  // namespace qat::graph
