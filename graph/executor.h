#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "graph/graph.h"
#include "nn/module.h"

namespace qat::graph {

// The 2-element int attribute `name` of `attrs` ("kernel", "stride", "padding", "dilation",
// "output_size") as {H, W}; a missing name or another length throws qat::Error naming it.
// run() reads conv / pool attrs this way, and so do int_model.cc and the exporters.
std::array<int64_t, 2> pair_attr(const OpAttrs& attrs, const std::string& name);

// Whether run() can execute the functional op `op` ("add", "cat", ...).
bool has_function(const std::string& op);

// Runs the functional op `op` on `inputs` with `attrs` exactly as run() runs a kFunction node
// (the one table of executor.cc); an unknown op or a wrong input count throws qat::Error.
std::vector<Tensor> run_function(const std::string& op, const std::vector<Tensor>& inputs,
                                 const OpAttrs& attrs);

// A float module call as the functional op run_function() runs (op name and attrs), in eval
// semantics (dropout: training=false): ReLU, ReLU6, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
// Flatten, Dropout; std::nullopt for any other module. convert, prepare_qat and the exporters
// use it. A subclass of these modules matches too, unless `exact_type`: then only the class
// itself does (a subclass may compute something else in its forward_impl; the ONNX exporter of
// float graphs matches that way, as fuse() does).
struct FunctionalForm {
  std::string op;
  OpAttrs attrs;
};
std::optional<FunctionalForm> functional_form(const nn::Module& module, bool exact_type = false);

// Runs `graph` on `input`, recording autograd history as any forward does. kModule nodes call
// node.module->forward(): the original modules, so their train/eval mode applies and gradients
// reach the model's own parameters. kFunction nodes call the qat::ops function named by
// node.op with node.attrs (one table in executor.cc). Every node runs, in order; the result is
// the kOutput node's input. Functional dropout draws from default_generator(). An error names
// the node it happened in.
Tensor run(const Graph& graph, const Tensor& input);

// A traced graph that trains like any Module: forward() is run(graph(), input).
// state_dict(), parameters() and buffers start with the original model's, under the original
// keys (torchvision's for the zoo) and in its order: the model's own parameters, buffers and
// children are registered here under the same names, sharing the tensors. Then come the node
// modules with state the model does not hold -- the QAT modules and FakeQuantizes prepare_qat()
// puts in the graph -- attached under their node names (nn::Module::attach_module), in graph
// order: "layer1.0.conv1.weight_fake_quant.scale",
// "layer1.0.relu_1.activation_post_process.activation_post_process.min_val". Stateless node
// modules (fuse()'s float modules) are not attached. train()/eval() set the model, every
// attached module and every node module.
class GraphModule : public nn::Module {
 public:
  // Checks `graph` with Graph::validate(); it is normally trace(*model, shape), or a pass's
  // output for it.
  GraphModule(std::shared_ptr<nn::Module> model, Graph graph);

  const Graph& graph() const { return graph_; }
  const std::shared_ptr<nn::Module>& model() const { return model_; }
  std::string type_name() const override { return "GraphModule"; }
  void train(bool on = true) override;

 protected:
  Tensor forward_impl(const Tensor& input) override;
  // Replaces the graph (a pass's output for the current one) and attaches its new node modules
  // with state; they take the current train/eval mode. State only grows: every node module
  // attached so far must still be a node module of `graph`, under the same name.
  void set_graph(Graph graph);

 private:
  // Attaches the node modules of graph_ with state that are neither in the model nor attached.
  void attach_node_modules();

  std::shared_ptr<nn::Module> model_;
  Graph graph_;
  nn::NamedModules attached_nodes_;  // (node name, module), in attach order
};

}  // namespace qat::graph
