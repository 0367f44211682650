#pragma once

#include <string>
#include <vector>

#include "exporters/tnn_net.h"
#include "graph/graph.h"
#include "graph/int_model.h"

// Writes Tencent TNN models (.tnnproto + .tnnmodel) as shared/specs/tnn_format.md describes
// them: the int8 model of an IntModel converted for the "tnn" target, or a float model.
//   graph::IntModel int8 = graph::convert(*qm);
//   exporters::export_tnn(int8, "out/resnet18_qat");    // out/resnet18_qat.tnnproto, .tnnmodel
//   exporters::export_tnn_float(graph::trace(*model, {1, 3, 224, 224}), "out/resnet18");
namespace qat::exporters {

// The TNN net of an IntModel with target tnn (§3, checklist §7):
//   * conv2d / linear become QuantizedConvolution / QuantizedInnerProduct with the int8 OIHW
//     weight, the int32 bias (zeros for a layer without one, as §7 asks), zero points 0 and the
//     stored scale s_in * s_w[c] (accumulator_scale); a fused ReLU / ReLU6 is the conv's
//     activation_type 1 / 2; InnerProduct has no activation, so a fused ReLU becomes a
//     QuantizedReLU layer "<name>~act" after it (its inner blob "<blob>~fc"; an int8 ReLU6
//     there has no TNN form and throws);
//   * int8 add, cat, relu, max / average pools become QuantizedAdd, QuantizedConcat,
//     QuantizedReLU, QuantizedPooling; every other op is a float layer (ShuffleChannel,
//     SplitV, Flatten, Reshape, ReduceMean, ReLU6, Clip, ...);
//   * "quantize" nodes are no layers: TNN quantizes a float blob that an int8 layer reads with
//     the blob's BlobScale (the Reformat it inserts at load, §3.2), and a requantizer of an
//     int8 add / cat output with the same scale is the identity; dropout is left out;
//   * every blob an int8 layer reads or writes gets a BlobScale "<blob>_scale_data_" (zero
//     point 0, scale, bias 0).
// Layers keep the model's node order (TNN runs them in file order); nodes whose values reach no
// output are left out. Layer and blob names are the node names made safe (tnn_names()); a blob
// of output k of a multi-output node is "<name>_<k>"; the blobs of a layer line that would pass
// TNN's 4095-character token limit get short names "~b<id>". Throws qat::Error naming the node for
// anything TNN cannot run as the IntModel says: an op with no TNN layer, a per-channel or
// asymmetric activation scale, a requantizer that changes the scale, an int8 ReLU / pool whose
// output scale differs from its input's, or a node order under which TNN's load-time fusions
// (§3.5) would differ from simulate()'s.
TnnNet tnn_net(const graph::IntModel& model);

// The float TNN net of a float graph (trace() of a model in eval mode, fused or not): the graph
// is fused first (graph::fuse), BN folded into the conv before it (W' = W * g / sigma,
// b' = beta + (b - mu) * g / sigma, running statistics), a BN with no conv to fold into becomes
// BatchNormCxx (k = g / sigma, b = beta - mu * k). Prepared (QAT) graphs are rejected: convert
// them and export the IntModel.
TnnNet tnn_net_float(const graph::Graph& graph);

// Writes <prefix>.tnnproto and <prefix>.tnnmodel, each atomically (temporary file, fsync,
// rename).
void write_tnn(const TnnNet& net, const std::string& prefix);

// write_tnn(tnn_net(model), prefix) and write_tnn(tnn_net_float(graph), prefix).
void export_tnn(const graph::IntModel& model, const std::string& prefix);
void export_tnn_float(const graph::Graph& graph, const std::string& prefix);

// TNN-safe, unique names for `names` (in order; deterministic): characters TNN's parser splits
// on or drops (',', '"', ':', whitespace, control and non-ASCII bytes) and '~' become '_', an
// empty name becomes "_", names ending in TNN's generated suffixes "_scale_data_" /
// "_int8_reformat" get a trailing '_', names over 200 characters are cut to 191 plus '~' and 8
// hex digits of their hash, and a name already taken gets "~2", "~3", ...
std::vector<std::string> tnn_names(const std::vector<std::string>& names);

}  // namespace qat::exporters
