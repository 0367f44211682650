#include "graph/fuse.h"

#include <memory>
#include <optional>
#include <typeinfo>
#include <utility>
#include <vector>

#include "graph/fused_modules.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"

namespace qat::graph {
namespace {

// A conv or linear node and the nodes fused into it (-1: none).
struct Match {
  int anchor = -1;
  int bn = -1;
  int activation_node = -1;
  Activation activation = Activation::kNone;

  // The node whose output the fused node produces.
  int last() const { return activation_node >= 0 ? activation_node : bn >= 0 ? bn : anchor; }
};

// The module of `node` when it is a call of exactly an M (not a subclass), else nullptr.
template <class M>
std::shared_ptr<M> module_as(const GraphNode& node) {
  if (node.kind != NodeKind::kModule || typeid(*node.module) != typeid(M)) return nullptr;
  return std::static_pointer_cast<M>(node.module);
}

// The one node reading the output of node `index`, or -1 when none or several inputs read it.
int sole_user(const Graph& graph, int index) {
  const std::vector<int> users = graph.users({index, 0});
  return users.size() == 1 ? users[0] : -1;
}

bool is_foldable_bn(const GraphNode& node, const nn::Conv2d& conv) {
  const std::shared_ptr<nn::BatchNorm2d> bn = module_as<nn::BatchNorm2d>(node);
  return bn && bn->num_features == conv.out_channels && bn->options.affine() &&
         bn->options.track_running_stats();
}

std::optional<Activation> activation_of(const GraphNode& node) {
  if (module_as<nn::ReLU>(node)) return Activation::kReLU;
  if (module_as<nn::ReLU6>(node)) return Activation::kReLU6;
  if (node.kind != NodeKind::kFunction) return std::nullopt;
  if (node.op == "relu") return Activation::kReLU;
  if (node.op == "relu6") return Activation::kReLU6;
  if (node.op == "clamp" && node.attrs.get_double("min") == 0.0 &&
      node.attrs.get_double("max") == 6.0) {
    return Activation::kClamp0To6;
  }
  return std::nullopt;
}

// The fusion anchored at node `index`, or nullopt when nothing fuses into it.
std::optional<Match> match_at(const Graph& graph, int index) {
  const GraphNode& node = graph.nodes[index];
  const std::shared_ptr<nn::Conv2d> conv = module_as<nn::Conv2d>(node);
  if (!conv && !module_as<nn::Linear>(node)) return std::nullopt;
  Match match;
  match.anchor = index;
  if (conv) {
    const int next = sole_user(graph, index);
    if (next >= 0 && is_foldable_bn(graph.nodes[next], *conv)) match.bn = next;
  }
  const int next = sole_user(graph, match.last());
  if (next >= 0) {
    if (const std::optional<Activation> activation = activation_of(graph.nodes[next])) {
      match.activation_node = next;
      match.activation = *activation;
    }
  }
  if (match.last() == index) return std::nullopt;
  return match;
}

// The fused node for `match`, its inputs still in the numbering of `graph`.
GraphNode fused_node(const Graph& graph, const Match& match) {
  GraphNode node = graph.nodes[match.anchor];
  if (const std::shared_ptr<nn::Conv2d> conv = module_as<nn::Conv2d>(node)) {
    const std::shared_ptr<nn::BatchNorm2d> bn =
        match.bn >= 0 ? module_as<nn::BatchNorm2d>(graph.nodes[match.bn]) : nullptr;
    node.module = std::make_shared<FusedConv2d>(conv, bn, match.activation);
  } else {
    node.module = std::make_shared<FusedLinear>(module_as<nn::Linear>(node), match.activation);
  }
  node.op = node.module->type_name();
  node.output_shapes = graph.nodes[match.last()].output_shapes;
  std::string absorbed;
  for (const int k : {match.bn, match.activation_node})
    if (k >= 0) absorbed += (absorbed.empty() ? "fused " : ", ") + graph.nodes[k].name;
  node.annotations.push_back(absorbed);
  return node;
}

}  // namespace

Graph fuse(const Graph& graph) {
  const int n = static_cast<int>(graph.nodes.size());
  // fused_into[k]: the anchor that absorbs node k, or -1.
  std::vector<int> fused_into(n, -1);
  std::vector<std::optional<Match>> matches(n);
  for (int i = 0; i < n; ++i) {
    matches[i] = match_at(graph, i);
    if (!matches[i]) continue;
    for (const int k : {matches[i]->bn, matches[i]->activation_node})
      if (k >= 0) fused_into[k] = i;
  }
  // The fused node sits where the anchor was: its inputs come earlier, and every reader of the
  // absorbed nodes' output comes after them.
  Graph out;
  std::vector<int> new_index(n, -1);
  for (int i = 0; i < n; ++i) {
    if (fused_into[i] >= 0) {
      new_index[i] = new_index[fused_into[i]];  // the absorbed node's output is the fused one's
      continue;
    }
    GraphNode node = matches[i] ? fused_node(graph, *matches[i]) : graph.nodes[i];
    for (Value& v : node.inputs) v.node = new_index[v.node];
    new_index[i] = out.add_node(std::move(node));
  }
  return out;
}

}  // namespace qat::graph
