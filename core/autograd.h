#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qat {

using Grads = std::vector<Tensor>;

// Where one input's gradient goes: into the producing node's output slot, or (for a leaf that
// requires grad) into the leaf's .grad.
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
  std::shared_ptr<TensorImpl> leaf;
  bool is_connected() const { return node != nullptr || leaf != nullptr; }
};

// The autograd record of one op call. `backward` receives one gradient per output (undefined
// for outputs that received none) and returns one gradient per input (undefined where the input
// needs none). It is dropped once run: a graph is backpropagated once (retain_graph=false).
class Node {
 public:
  using BackwardFn = std::function<Grads(const Grads& grad_outputs)>;

  Node(std::string name, std::vector<Edge> next_edges, int num_outputs, BackwardFn backward)
      : name_(std::move(name)),
        next_edges_(std::move(next_edges)),
        num_outputs_(num_outputs),
        backward_(std::move(backward)) {}
  // Frees long chains iteratively (a recursive shared_ptr teardown would overflow the stack).
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  int num_outputs() const { return num_outputs_; }
  Grads apply(const Grads& grad_outputs);
  // Drops the closure (and the tensors it saved) once backward has run, and hands the edges to
  // the engine.
  std::vector<Edge> release();

 private:
  std::string name_;
  std::vector<Edge> next_edges_;
  int num_outputs_;
  BackwardFn backward_;
};

// Grad mode is per thread, on by default.
bool is_grad_enabled();
void set_grad_enabled(bool enabled);

// Disables recording in a scope, as torch::NoGradGuard.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and some input requires grad: the op must record.
bool needs_record(const std::vector<Tensor>& inputs);

// Records `output = op(inputs)` with a backward that maps dy to one gradient per input.
// No-op when needs_record(inputs) is false. The closure must capture what it saves by value.
void record(Tensor& output, const std::string& name, const std::vector<Tensor>& inputs,
            std::function<Grads(const Tensor& grad_output)> backward);

// Multi-output form (split/chunk): backward gets one gradient per output, undefined for outputs
// that received none.
void record_multi(std::vector<Tensor>& outputs, const std::string& name,
                  const std::vector<Tensor>& inputs, Node::BackwardFn backward);

// Runs the backward pass from `root` (see Tensor::backward).
void run_backward(const Tensor& root, const Tensor& grad_root);

}  // namespace qat
