#pragma once

#include <string>

#include "core/tensor.h"
#include "exporters/tnn_net.h"
#include "graph/int_model.h"

// Reads TNN models back: the int8 ones into an IntModel that graph::simulate() runs with TNN's
// integer arithmetic, the float ones into a float runner. For checking exports (the re-read
// model must compute what the exported one did) and for inspecting TNN files.
//   const exporters::TnnNet net = exporters::read_tnn("out/resnet18_qat");
//   const Tensor y = graph::simulate(exporters::tnn_int_model(net), x);
namespace qat::exporters {

// parse_tnn() of <prefix>.tnnproto and <prefix>.tnnmodel.
TnnNet read_tnn(const std::string& prefix);

// The IntModel (target tnn) of an int8 TNN net, in the net's layer order:
//   * an "input" node per the input line and an "output" node named "output";
//   * one node per layer, named as the layer, with the IntModel op and attrs (Convolution ->
//     conv2d, Pooling -> max_pool2d / avg_pool2d / adaptive_avg_pool2d (global), SplitV ->
//     chunk when all pieces are equal else split, Flatten(1) -> flatten, ReduceMean -> mean,
//     ...) and output shapes inferred as the ops compute them;
//   * an InnerProduct followed by a ReLU (ReLU6, float) that only it feeds is one linear node
//     with that activation (the exporter's form of a fused FC activation);
//   * Quantized* layers are int8 with the BlobScale of each blob; a float blob an int8 layer
//     reads gets a "quantize" node right after its producer, named
//     "<producer>.activation_post_process" ("..._<k>" for output k of a SplitV), as
//     prepare_qat() names quantizers; an int8 add / concat output gets its (identity)
//     requantizer "<add>.activation_post_process", which all its readers read.
// What the TNN files do not hold comes back as it must have been: the weight scales s_w are the
// stored s_in * s_w divided by s_in (a float32 value whose product with s_in gives the stored
// scale back exactly), the float bias is bias_int32 * s_in * s_w, weight grids [-127, 127],
// activation grids [-128, 127], zero points 0, rounding half away from zero; dropout (left out
// by the exporter) is absent. Throws qat::Error for what it cannot represent: a layer type it
// does not know, a Quantized* blob without a BlobScale, per-channel blob scales, several
// inputs or outputs.
graph::IntModel tnn_int_model(const TnnNet& net);

// Runs a float TNN net (no Quantized* layers) on `input` in float32 with this project's ops:
// Convolution (+ its activation_type), InnerProduct, BatchNormCxx, and the layers
// tnn_int_model() maps to graph ops, run by graph::run_function(). Returns the first output.
Tensor run_tnn_float(const TnnNet& net, const Tensor& input);

}  // namespace qat::exporters
