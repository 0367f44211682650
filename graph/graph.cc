#include "graph/graph.h"

#include <sstream>

#include "core/check.h"

namespace qat::graph {
namespace {

// Checks `node` as the next node of a graph whose first `count` nodes are `nodes[0, count)`.
void check_node(const std::vector<GraphNode>& nodes, size_t count, const GraphNode& node) {
  QAT_CHECK(!node.name.empty(), "Graph: node ", count, " (", node.op, ") has an empty name");
  for (size_t i = 0; i < count; ++i) {
    QAT_CHECK(nodes[i].name != node.name, "Graph: node name '", node.name, "' is used twice");
  }
  for (size_t k = 0; k < node.inputs.size(); ++k) {
    const Value v = node.inputs[k];
    QAT_CHECK(v.node >= 0 && static_cast<size_t>(v.node) < count, "Graph: input ", k, " of node '",
              node.name, "' refers to node ", v.node,
              ", which is not an earlier node (nodes must be in topological order)");
    QAT_CHECK(v.output >= 0 && v.output < nodes[v.node].num_outputs(), "Graph: input ", k,
              " of node '", node.name, "' reads output ", v.output, " of '", nodes[v.node].name,
              "', which has ", nodes[v.node].num_outputs(), " output(s)");
  }
  const size_t n_in = node.inputs.size();
  const int n_out = node.num_outputs();
  switch (node.kind) {
    case NodeKind::kInput:
      QAT_CHECK(n_in == 0 && n_out == 1, "Graph: input node '", node.name,
                "' must have no inputs and one output, got ", n_in, " and ", n_out);
      break;
    case NodeKind::kModule:
      QAT_CHECK(node.module != nullptr, "Graph: module node '", node.name, "' has no module");
      QAT_CHECK(n_in == 1 && n_out == 1, "Graph: module node '", node.name,
                "' must have one input and one output, got ", n_in, " and ", n_out);
      break;
    case NodeKind::kFunction:
      QAT_CHECK(n_out >= 1, "Graph: function node '", node.name, "' has no outputs");
      break;
    case NodeKind::kOutput:
      QAT_CHECK(n_in == 1 && n_out == 0, "Graph: output node '", node.name,
                "' must have one input and no outputs, got ", n_in, " and ", n_out);
      break;
  }
}

int find_kind(const Graph& graph, NodeKind kind) {
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    if (graph.nodes[i].kind == kind) return static_cast<int>(i);
  QAT_CHECK(false, "Graph: no ", kind_name(kind), " node");
  return -1;
}

}  // namespace

const char* kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::kInput:
      return "input";
    case NodeKind::kModule:
      return "module";
    case NodeKind::kFunction:
      return "function";
    case NodeKind::kOutput:
      return "output";
  }
  return "?";
}

int Graph::add_node(GraphNode node) {
  check_node(nodes, nodes.size(), node);
  nodes.push_back(std::move(node));
  return static_cast<int>(nodes.size()) - 1;
}

int Graph::find(const std::string& name) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == name) return static_cast<int>(i);
  return -1;
}

const GraphNode& Graph::node(const std::string& name) const {
  const int index = find(name);
  QAT_CHECK(index >= 0, "Graph: no node called '", name, "'");
  return nodes[index];
}

int Graph::input_node() const { return find_kind(*this, NodeKind::kInput); }

int Graph::output_node() const { return find_kind(*this, NodeKind::kOutput); }

std::vector<int> Graph::users(Value value) const {
  std::vector<int> out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const Value& v : nodes[i].inputs)
      if (v == value) out.push_back(static_cast<int>(i));
  }
  return out;
}

std::string Graph::value_name(Value value) const {
  QAT_CHECK(value.node >= 0 && static_cast<size_t>(value.node) < nodes.size(),
            "Graph: value of node ", value.node, " is out of range (", nodes.size(), " nodes)");
  const GraphNode& producer = nodes[value.node];
  if (producer.num_outputs() <= 1) return producer.name;
  return producer.name + ":" + std::to_string(value.output);
}

void Graph::validate() const {
  int inputs = 0, outputs = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    check_node(nodes, i, nodes[i]);
    inputs += nodes[i].kind == NodeKind::kInput;
    outputs += nodes[i].kind == NodeKind::kOutput;
  }
  QAT_CHECK(inputs == 1 && outputs == 1, "Graph: expected one input and one output node, got ",
            inputs, " and ", outputs);
}

std::string Graph::to_string() const {
  std::ostringstream os;
  for (const GraphNode& node : nodes) {
    os << node.name << ": " << node.op;
    if (node.kind != NodeKind::kInput) {
      os << "(";
      for (size_t k = 0; k < node.inputs.size(); ++k)
        os << (k ? ", " : "") << value_name(node.inputs[k]);
      os << ")";
    }
    for (size_t k = 0; k < node.output_shapes.size(); ++k)
      os << (k ? ", " : " -> ") << shape_str(node.output_shapes[k]);
    if (!node.attrs.empty()) os << "  {" << node.attrs.to_string() << "}";
    for (size_t k = 0; k < node.annotations.size(); ++k)
      os << (k ? "; " : "  # ") << node.annotations[k];
    os << "\n";
  }
  return os.str();
}

}  // namespace qat::graph
