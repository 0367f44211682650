#include "core/autograd.h"

#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace qat {
namespace {

thread_local bool grad_enabled = true;

Edge edge_for(const Tensor& input) {
  Edge e;
  if (!input.defined()) return e;
  const TensorImpl& impl = input.impl();
  if (impl.grad_fn) {
    e.node = impl.grad_fn;
    e.output_nr = impl.output_nr;
  } else if (impl.requires_grad) {
    e.leaf = input.impl_ptr();
  }
  return e;
}

// out-of-place a + b, so a gradient handed to two inputs (add's backward) is never mutated.
Tensor add_gradients(const Tensor& a, const Tensor& b) {
  QAT_CHECK(a.shape() == b.shape(), "autograd: gradient shapes ", shape_str(a.shape()), " and ",
            shape_str(b.shape()), " do not match");
  Tensor sum = a.clone();
  sum.add_(b);
  return sum;
}

void accumulate_into_leaf(TensorImpl& leaf, const Tensor& grad) {
  QAT_CHECK(grad.shape() == leaf.shape, "autograd: gradient of shape ", shape_str(grad.shape()),
            " for a leaf of shape ", shape_str(leaf.shape));
  QAT_CHECK(grad.dtype() == leaf.dtype, "autograd: ", dtype_name(grad.dtype()), " gradient for a ",
            dtype_name(leaf.dtype), " leaf");
  if (leaf.grad) {
    Tensor(leaf.grad).add_(grad);
    return;
  }
  // Steal the buffer when nobody else can see it; otherwise copy so later in-place
  // accumulation cannot write into another tensor.
  bool sole_owner = grad.impl_ptr().use_count() == 1 && grad.impl().storage.use_count() == 1;
  leaf.grad = (sole_owner ? grad.detach() : grad.clone()).impl_ptr();
}

// Nodes reachable from `root`, in an order where every node comes before the nodes it feeds
// gradients to (reverse post-order of an iterative DFS: no recursion depth limit).
// Holds the nodes by shared_ptr: release() cuts edges while the walk is still going.
std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> post_order;
  std::unordered_set<Node*> visited{root.get()};
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->next_edges().size()) {
      const std::shared_ptr<Node>& child = node->next_edges()[next++].node;
      if (child && visited.insert(child.get()).second) stack.push_back({child, 0});
    } else {
      post_order.push_back(node);
      stack.pop_back();
    }
  }
  return std::vector<std::shared_ptr<Node>>(post_order.rbegin(), post_order.rend());
}

}  // namespace

Node::~Node() {
  std::vector<std::shared_ptr<Node>> doomed;
  for (Edge& e : next_edges_)
    if (e.node) doomed.push_back(std::move(e.node));
  while (!doomed.empty()) {
    std::shared_ptr<Node> node = std::move(doomed.back());
    doomed.pop_back();
    if (node.use_count() == 1) {  // we hold the last reference: adopt its children first
      for (Edge& e : node->next_edges_)
        if (e.node) doomed.push_back(std::move(e.node));
    }
  }
}

std::vector<Edge> Node::release() {
  backward_ = nullptr;
  std::vector<Edge> edges;
  edges.swap(next_edges_);
  return edges;
}

Grads Node::apply(const Grads& grad_outputs) {
  QAT_CHECK(backward_ != nullptr, "autograd: backward through the graph of '", name_,
            "' a second time; its saved tensors were already freed");
  return backward_(grad_outputs);
}

bool is_grad_enabled() { return grad_enabled; }
void set_grad_enabled(bool enabled) { grad_enabled = enabled; }

bool needs_record(const std::vector<Tensor>& inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record_multi(std::vector<Tensor>& outputs, const std::string& name,
                  const std::vector<Tensor>& inputs, Node::BackwardFn backward) {
  if (!needs_record(inputs)) return;
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& t : inputs) edges.push_back(edge_for(t));
  auto node = std::make_shared<Node>(name, std::move(edges), static_cast<int>(outputs.size()),
                                     std::move(backward));
  for (size_t i = 0; i < outputs.size(); ++i) {
    QAT_CHECK(is_floating(outputs[i].dtype()), "autograd: op '", name,
              "' recorded a non-floating output");
    outputs[i].impl().grad_fn = node;
    outputs[i].impl().output_nr = static_cast<int>(i);
  }
}

void record(Tensor& output, const std::string& name, const std::vector<Tensor>& inputs,
            std::function<Grads(const Tensor& grad_output)> backward) {
  std::vector<Tensor> outputs{output};
  record_multi(outputs, name, inputs,
               [fn = std::move(backward)](const Grads& grad_outputs) -> Grads {
                 return fn(grad_outputs[0]);
               });
}

void run_backward(const Tensor& root, const Tensor& grad_root) {
  QAT_CHECK(root.requires_grad(),
            "backward: tensor does not require grad and has no grad_fn "
            "(HINT: set requires_grad_() on the parameters, and do not run under NoGradGuard)");
  Tensor grad = grad_root;
  if (!grad.defined()) {
    QAT_CHECK(root.numel() == 1,
              "backward: grad can be implicitly created only for a "
              "one-element output, got shape ",
              shape_str(root.shape()));
    grad = Tensor::ones(root.shape(), root.dtype());
  }
  QAT_CHECK(grad.shape() == root.shape(), "backward: gradient shape ", shape_str(grad.shape()),
            " does not match output shape ", shape_str(root.shape()));
  NoGradGuard no_grad;  // backward closures never record (no double backward)
  if (root.is_leaf()) {
    accumulate_into_leaf(root.impl(), grad);
    return;
  }
  Node* root_node = root.grad_fn().get();
  std::unordered_map<Node*, Grads> pending;
  pending[root_node] = Grads(root_node->num_outputs());
  pending[root_node][root.impl().output_nr] = grad;

  for (const std::shared_ptr<Node>& node_ptr : topological_order(root.grad_fn())) {
    Node* node = node_ptr.get();
    auto it = pending.find(node);
    if (it == pending.end()) continue;  // no gradient reached this node
    Grads grad_outputs = std::move(it->second);
    pending.erase(it);
    Grads grad_inputs = node->apply(grad_outputs);
    grad_outputs.clear();
    const std::vector<Edge> edges = node->release();
    QAT_CHECK(grad_inputs.size() == edges.size(), "autograd: backward of '", node->name(),
              "' returned ", grad_inputs.size(), " gradients for ", edges.size(), " inputs");
    for (size_t i = 0; i < edges.size(); ++i) {
      const Edge& e = edges[i];
      if (!grad_inputs[i].defined() || !e.is_connected()) continue;
      if (e.leaf) {
        accumulate_into_leaf(*e.leaf, grad_inputs[i]);
        continue;
      }
      Grads& slot = pending[e.node.get()];
      if (slot.empty()) slot.resize(e.node->num_outputs());
      Tensor& acc = slot[e.output_nr];
      acc = acc.defined() ? add_gradients(acc, grad_inputs[i]) : grad_inputs[i];
    }
  }
}

}  // namespace qat
