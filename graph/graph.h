#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/trace_hook.h"
#include "nn/module.h"

// The graph IR: what tracing produces, what the passes (fuse, prepare) transform, what the
// executor runs and what exporters read. See DESIGN.md "Graph".
namespace qat::graph {

// One value flowing between nodes: output `output` of node `node` (chunk/split have several).
struct Value {
  int node = -1;
  int output = 0;

  bool operator==(const Value& other) const { return node == other.node && output == other.output; }
  bool operator!=(const Value& other) const { return !(*this == other); }
};

enum class NodeKind {
  kInput,     // the graph input; no inputs, one output
  kModule,    // a call of `module` (a leaf: Conv2d, BatchNorm2d, ReLU, ...); one input, one output
  kFunction,  // a functional op from core/ops ("add", "cat", ...), run by the executor's table
  kOutput,    // the graph output; one input, no outputs
};

// "input", "module", "function", "output"
const char* kind_name(NodeKind kind);

struct GraphNode {
  // Unique in the graph. Module calls: the module path ("layer1.0.conv1"), with "_1", "_2", ...
  // for repeated calls ("layer1.0.relu_1"). Functional ops: "<enclosing module path>.<op>"
  // ("layer1.0.add", "inception3a.cat"; top level: "flatten"), with the same suffixes.
  std::string name;
  NodeKind kind = NodeKind::kFunction;
  // kModule: the module's type_name() ("Conv2d"); kFunction: the op name ("add");
  // kInput / kOutput: "input" / "output".
  std::string op;
  std::vector<Value> inputs;
  // kModule only: the original module, shared with the model (never copied), so its parameters
  // are the model's tensors.
  std::shared_ptr<nn::Module> module;
  // kFunction: the op's arguments as it reported them (core/trace_hook.h); passes may also use
  // them for module nodes.
  OpAttrs attrs;
  // One shape per output, as traced.
  std::vector<Shape> output_shapes;
  // Free-form notes printed at the end of the node's to_string() line (passes add quant state
  // here, e.g. "weight: int8 per-channel").
  std::vector<std::string> annotations;

  int num_outputs() const { return static_cast<int>(output_shapes.size()); }
};

// A dataflow graph in topological order: every input of a node refers to an earlier node.
// A traced graph has one kInput node first and one kOutput node last. Nodes whose values reach
// no output (GoogLeNet's aux heads traced in training mode) stay: they run, in order, like the
// model ran them (BatchNorm statistics, the dropout random stream).
struct Graph {
  std::vector<GraphNode> nodes;

  // Appends `node` after checking it (unique non-empty name, inputs that name outputs of earlier
  // nodes, the arity of its kind); returns its index.
  int add_node(GraphNode node);
  // Index of the node called `name`, or -1.
  int find(const std::string& name) const;
  // The node called `name`; a missing name throws qat::Error.
  const GraphNode& node(const std::string& name) const;
  // Indices of the kInput / kOutput node (the first of each); throws if there is none.
  int input_node() const;
  int output_node() const;
  // Indices of the nodes that read `value`, in order, once per reading input.
  std::vector<int> users(Value value) const;
  // Number of inputs, over all nodes, that read `value`.
  int use_count(Value value) const { return static_cast<int>(users(value).size()); }
  // How a node input prints: the producer's name, plus ":<k>" when it has several outputs.
  std::string value_name(Value value) const;
  // Rechecks every node as add_node does, and that there is exactly one kInput and one kOutput.
  void validate() const;

  // One line per node:
  //   <name>: <op>(<inputs>) -> <shape>[, <shape>...]  {<attrs>}  # <annotation>; <annotation>
  // e.g. "layer1.0.add: add(layer1.0.bn2, maxpool) -> [1, 64, 16, 16]",
  //      "stage2.1.chunk: chunk(stage2.0.channel_shuffle) -> [1, 24, 8, 8], [1, 24, 8, 8]  "
  //      "{chunks=2, dim=1}" (one line), "stage2.1.cat: cat(stage2.1.chunk:0, ...".
  std::string to_string() const;
};

}  // namespace qat::graph
