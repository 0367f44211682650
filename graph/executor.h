#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"
#include "graph/graph.h"
#include "nn/module.h"

namespace qat::graph {

// Whether run() can execute the functional op `op` ("add", "cat", ...).
bool has_function(const std::string& op);

// Runs `graph` on `input`, recording autograd history as any forward does. kModule nodes call
// node.module->forward(): the original modules, so their train/eval mode applies and gradients
// reach the model's own parameters. kFunction nodes call the qat::ops function named by
// node.op with node.attrs (one table in executor.cc). Every node runs, in order; the result is
// the kOutput node's input. Functional dropout draws from default_generator(). An error names
// the node it happened in.
Tensor run(const Graph& graph, const Tensor& input);

// A traced graph that trains like any Module: forward() is run(graph(), input).
// state_dict(), parameters() and buffers are the original model's, under the original keys
// (torchvision's for the zoo): the model's own parameters, buffers and children are registered
// here under the same names, sharing the tensors. train()/eval() also set the model's own flag.
class GraphModule : public nn::Module {
 public:
  // Checks `graph` with Graph::validate(); it is normally trace(*model, shape).
  GraphModule(std::shared_ptr<nn::Module> model, Graph graph);

  const Graph& graph() const { return graph_; }
  const std::shared_ptr<nn::Module>& model() const { return model_; }
  std::string type_name() const override { return "GraphModule"; }
  void train(bool on = true) override;

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  std::shared_ptr<nn::Module> model_;
  Graph graph_;
};

}  // namespace qat::graph
