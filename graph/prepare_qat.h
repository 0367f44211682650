#pragma once

#include <string>
#include <vector>

#include "graph/graph.h"
#include "quant/qconfig.h"

namespace qat::graph {

// Makes a fused graph (fuse(trace(model, shape))) trainable with quantization-aware training
// for qconfig.target (PyTorch's prepare_qat, with the target's placement; DESIGN.md "Targets
// decide the numerics"):
//   * every conv / linear node (fused or not) gets the QAT module of quant/ that holds the same
//     original modules: ConvBn2d / ConvBnReLU2d / ConvBnReLU6 for conv-bn(-act), quant::Conv2d
//     for conv(-act), quant::Linear for linear(-act), so the model's state_dict keys are
//     unchanged. Its weight_fake_quant quantizes the weight.
//   * activations are fake-quantized by new FakeQuantize module nodes called
//     "<producer>.activation_post_process" ("..._<k>" for output k of a multi-output node such
//     as chunk), inserted after the producer; the nodes whose input the target quantizes read
//     it, the others still read the float value (as each edge of an ONNX Q/DQ graph).
// Placement for "tensorrt" (shared/specs/onnx_qdq.md §1-3): every input of a conv / linear;
// of a residual add, only the identity input (the one on the shorter path from the two
// inputs' lowest common ancestor; the longer one is the conv branch, which TensorRT fuses with
// the add; on a tie, input 1, torchvision's `out + identity`); the inputs of average pools
// (AvgPool2d, AdaptiveAvgPool2d, their functional forms and a mean over H and W); conv /
// linear outputs stay float, max pool and relu commute and get nothing; a cat's inputs share
// one scale: one FakeQuantize on its output, which every reader reads (fake-quantizing the
// output equals fake-quantizing each input with that scale).
// Placement for "tnn" (shared/specs/tnn_format.md §3): each value is int8 or float for all its
// readers, as a TNN blob is. Int8 are: conv / linear outputs, requantized inside the QAT module
// (its activation_post_process, after the fused ReLU / ReLU6); the outputs of a two-input add
// and of a cat, each requantized by its own FakeQuantize; the output of a relu, max pool or
// average pool (module or functional; not mean) whose input is int8 -- they keep their input's
// scale and get no quantizer ("int8, keeps input scale"; TNN's int8 average truncates, which
// the integer simulator reproduces). Conv, linear, add and cat need int8 inputs: a float one
// (the graph input, a black-listed node's output, or a float island's: channel_shuffle, chunk,
// split, flatten, reshape, mean, softmax, a standalone relu6 / clamp and every other op, which
// TNN runs in float between a dequant and a quant) gets a FakeQuantize, shared by all its int8
// readers, while its float readers still read it float.
// Placement for "fbgemm", "qnnpack" and "qnnpack_perchannel" (onnx_qdq.md §8): PyTorch 1.13
// eager prepare_qat of torchvision's quantizable models (fused, QuantStub / DeQuantStub around
// the model), where each value is a quantized tensor or float for all its readers. Quantized
// are: conv / linear outputs, observed inside the QAT module (its activation_post_process,
// after the fused ReLU / ReLU6); the outputs of FloatFunctional's ops -- add and mul of two
// tensors and cat -- each observed by its own FakeQuantize, except that an add whose only
// reader is a relu is observed after the relu (FloatFunctional.add_relu, torchvision's
// BasicBlock / Bottleneck); the output of every other op (relu, max / average pools, mean,
// flatten, reshape, chunk, channel_shuffle, add / mul of a scalar, ...), which takes its
// qparams from its input and gets no observer (PyTorch's quantized ops propagate them). A float
// input of a quantized op (the graph input: the QuantStub; a black-listed node's output) gets
// a FakeQuantize, shared by all its quantized readers. The output is read as it is (the
// DeQuantStub), after the last linear's observer.
//
// black_list: node names ("fc", "layer1.0.conv1": a fused node has its conv's name) or
// fnmatch globs ("layer4.*"); listed nodes stay float (their module unchanged; tensorrt: their
// inputs read float values; tnn and the PyTorch presets: an int8 input reaches them
// dequantized, as TNN inserts a dequant and a PyTorch user a DeQuantStub) -- the quant at the
// border is the fake quant of the next quantized input. An entry that matches no node is an
// error (likely a typo).
//
// Annotations name every quantizer: "weight: qint8 per_channel_symmetric(axis=0) [-127, 127]
// half_even_div" on QAT module nodes (tnn and the PyTorch presets: also "output: ..."), "act:
// ..." on FakeQuantize nodes, "float: black_list"; tnn also says how each other node runs
// ("int8, keeps input scale", "float (tnn has no int8 channel_shuffle)"), the PyTorch presets
// too ("qparams from its input", "observed after layer1.0.relu_1 (add_relu)").
// Pure: `fused` is not modified; the new graph shares the original float modules with it.
Graph prepare_qat(const Graph& fused, const quant::QConfig& qconfig,
                  const std::vector<std::string>& black_list = {});

}  // namespace qat::graph
