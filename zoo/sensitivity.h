#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "graph/quantizable_model.h"
#include "nn/data/data_loader.h"
#include "zoo/evaluate.h"
#include "zoo/qat_pipeline.h"

// Per-node quantization sensitivity (`qat sensitivity`): how much each quantized node costs,
// measured by switching fake quant per node, and which nodes to put in qat.black_list.
namespace qat::zoo {

// A quantizer and the nodes whose black-listing removes it.
struct OwnedQuantizer {
  Quantizer quantizer;
  // Fused-graph node names (black_list entries). One node for a QAT module's weight and output
  // quantizers and for a quantizer of a node's output (tnn's add, tensorrt's cat); for a
  // quantizer of a value that several nodes read quantized (tensorrt: the input of conv1 and
  // downsample.0), all of those readers: only black-listing them all removes it. Empty when no
  // black_list removes it (it then stays on in every measurement).
  std::vector<std::string> owners;
};

// One row of the table: a node black_list can leave float, with the quantizers it owns.
struct SensitivityNode {
  std::string name;                     // the black_list entry: "features.0", "layer1.0.add"
  std::string kind;                     // its op in the prepared graph: "ConvBnReLU2d", "add"
  std::vector<std::string> quantizers;  // names of the quantizers it owns, alone or jointly
};

// The quantizers of a prepared model grouped by the node black_list would leave float.
struct SensitivityPlan {
  std::vector<OwnedQuantizer> quantizers;  // in graph order
  std::vector<SensitivityNode> nodes;      // in graph order
  std::vector<std::string> black_list;     // the nodes the model was prepared float
};

// Finds the owners by preparing the model's fused graph again (graph::prepare_qat is pure)
// with each candidate added to the model's black_list and seeing which quantizers disappear,
// so the groups are exactly what a black_list entry does, for every target.
SensitivityPlan plan_sensitivity(const graph::QuantizableModel& model);

// Fake quant on for every quantizer of `plan` except those all of whose owners are in
// `float_nodes`: the model as prepared with those nodes added to black_list, but for the
// quantizers such a model would add at the border (the next node then reads a float input).
// The node itself then runs in float for every target: tnn's int8 kernel (QatModule with an
// input quantizer) and Int8AveragePool run only while their quantizers fake-quantize. A
// quantized tnn node whose input quantizer is off (its producer float) runs the fake-quant
// conv on its float input, since TNN's kernel needs input codes.
void leave_float(const SensitivityPlan& plan, const std::set<std::string>& float_nodes);

// Top-1 and the error of the logits against the float model's on the same images.
struct Measurement {
  EvalResult eval;
  // Signal-to-quantization-noise ratio of the logits, 10 log10(sum ref^2 / sum (y - ref)^2),
  // in dB; +inf when equal to the float logits.
  double sqnr_db = 0;
};

struct SensitivityRow {
  SensitivityNode node;
  Measurement only_quantized;  // every other node float
  Measurement only_float;      // every other node quantized
  double drop = 0;             // float top-1 - only_quantized top-1, percentage points
  double gain = 0;             // only_float top-1 - fully quantized top-1
};

struct SensitivityReport {
  Measurement float_model;  // every quantizer off
  Measurement quantized;    // every quantizer on
  // Largest drop first; on equal drops, the lower only-quantized SQNR first.
  std::vector<SensitivityRow> rows;
  // The greedy suggestion: nodes left float, in the order they were added, and the model
  // measured with them float.
  std::vector<std::string> suggested;
  Measurement with_suggested;
  bool within_budget = false;
  // plan.black_list followed by `suggested`: the qat.black_list to configure.
  std::vector<std::string> black_list;
};

struct SensitivityOptions {
  int64_t batches = 8;  // of the loader, the same images for every measurement
  double budget = 1.0;  // accepted top-1 below float, percentage points
  // stage "nodes" (done / total of the per-node measurements) or "black_list" (greedy trials).
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
};

// Measures `model` (prepared, QAT state loaded, observers off, eval): float and fully quantized,
// then per node of plan_sensitivity() only that node quantized and only that node float; then
// suggests nodes to leave float: in order of their only-float gain, each added when the model
// with the cumulative set float measures a higher top-1, until top-1 is within
// options.budget of float or the nodes run out. Leaves every quantizer on.
SensitivityReport analyze_sensitivity(graph::QuantizableModel& model, nn::data::DataLoader& loader,
                                      const SensitivityOptions& options);

}  // namespace qat::zoo
