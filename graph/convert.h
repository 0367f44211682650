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
// Only the "tensorrt" target for now. Throws qat::Error naming the node for what it cannot
// convert: an unprepared model, a float conv / linear / BN (black-listed or not prepared), a
// quantizer that never observed data or whose fake quant is disabled, a weight grid that is not
// int8 with zero points 0, an op the integer model has no form for.
IntModel convert(const QuantizableModel& model);

}  // namespace qat::graph
