#include "graph/executor.h"

#include <array>
#include <cstdint>
#include <map>
#include <typeinfo>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/ops/loss.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"
#include "nn/activation.h"
#include "nn/layers.h"
#include "nn/pooling.h"

namespace qat::graph {
namespace {

using Tensors = std::vector<Tensor>;

// How to run one functional op: its input count range and the call (inputs, attrs -> outputs).
struct Function {
  size_t min_inputs;
  size_t max_inputs;
  Tensors (*call)(const Tensors& in, const OpAttrs& a);
};

constexpr size_t kAny = SIZE_MAX;  // no upper bound (cat)

Tensor optional_input(const Tensors& in, size_t k) { return k < in.size() ? in[k] : Tensor(); }

// One function per op: inputs and the attributes core/ops report (core/trace_hook.h) -> outputs.
Tensors run_add(const Tensors& in, const OpAttrs& a) {  // scalar form: one input + "other"
  return {in.size() == 2 ? ops::add(in[0], in[1]) : ops::add(in[0], a.get_double("other"))};
}
Tensors run_sub(const Tensors& in, const OpAttrs&) { return {ops::sub(in[0], in[1])}; }
Tensors run_mul(const Tensors& in, const OpAttrs& a) {  // scalar form: one input + "other"
  return {in.size() == 2 ? ops::mul(in[0], in[1]) : ops::mul(in[0], a.get_double("other"))};
}
Tensors run_div(const Tensors& in, const OpAttrs&) { return {ops::div(in[0], in[1])}; }
Tensors run_neg(const Tensors& in, const OpAttrs&) { return {ops::neg(in[0])}; }
Tensors run_relu(const Tensors& in, const OpAttrs&) { return {ops::relu(in[0])}; }
Tensors run_relu6(const Tensors& in, const OpAttrs&) { return {ops::relu6(in[0])}; }
Tensors run_clamp(const Tensors& in, const OpAttrs& a) {
  return {ops::clamp(in[0], a.get_double("min"), a.get_double("max"))};
}
Tensors run_sum(const Tensors& in, const OpAttrs& a) {
  return {ops::sum(in[0], a.get_ints("dims"), a.get_bool("keepdim"))};
}
Tensors run_mean(const Tensors& in, const OpAttrs& a) {
  return {ops::mean(in[0], a.get_ints("dims"), a.get_bool("keepdim"))};
}
Tensors run_reshape(const Tensors& in, const OpAttrs& a) {
  return {ops::reshape(in[0], a.get_ints("shape"))};
}
Tensors run_flatten(const Tensors& in, const OpAttrs& a) {
  return {ops::flatten(in[0], a.get_int("start_dim"), a.get_int("end_dim"))};
}
Tensors run_transpose(const Tensors& in, const OpAttrs& a) {
  return {ops::transpose(in[0], a.get_int("dim0"), a.get_int("dim1"))};
}
Tensors run_permute(const Tensors& in, const OpAttrs& a) {
  return {ops::permute(in[0], a.get_ints("dims"))};
}
Tensors run_cat(const Tensors& in, const OpAttrs& a) { return {ops::cat(in, a.get_int("dim"))}; }
Tensors run_split(const Tensors& in, const OpAttrs& a) {
  return ops::split(in[0], a.get_ints("sizes"), a.get_int("dim"));
}
Tensors run_chunk(const Tensors& in, const OpAttrs& a) {
  return ops::chunk(in[0], a.get_int("chunks"), a.get_int("dim"));
}
Tensors run_channel_shuffle(const Tensors& in, const OpAttrs& a) {
  return {ops::channel_shuffle(in[0], a.get_int("groups"))};
}
Tensors run_max_pool2d(const Tensors& in, const OpAttrs& a) {
  return {ops::max_pool2d(in[0], pair_attr(a, "kernel"), pair_attr(a, "stride"),
                          pair_attr(a, "padding"), pair_attr(a, "dilation"),
                          a.get_bool("ceil_mode"))};
}
Tensors run_avg_pool2d(const Tensors& in, const OpAttrs& a) {
  return {ops::avg_pool2d(in[0], pair_attr(a, "kernel"), pair_attr(a, "stride"),
                          pair_attr(a, "padding"), a.get_bool("ceil_mode"),
                          a.get_bool("count_include_pad"))};
}
Tensors run_adaptive_avg_pool2d(const Tensors& in, const OpAttrs& a) {
  return {ops::adaptive_avg_pool2d(in[0], pair_attr(a, "output_size"))};
}
Tensors run_conv2d(const Tensors& in, const OpAttrs& a) {
  ops::Conv2dParams p;
  p.stride = pair_attr(a, "stride");
  p.padding = pair_attr(a, "padding");
  p.dilation = pair_attr(a, "dilation");
  p.groups = a.get_int("groups");
  return {ops::conv2d(in[0], in[1], optional_input(in, 2), p)};
}
Tensors run_linear(const Tensors& in, const OpAttrs&) {
  return {ops::linear(in[0], in[1], optional_input(in, 2))};
}
Tensors run_dropout(const Tensors& in, const OpAttrs& a) {
  return {ops::dropout(in[0], a.get_double("p"), a.get_bool("training"))};
}
Tensors run_log_softmax(const Tensors& in, const OpAttrs& a) {
  return {ops::log_softmax(in[0], a.get_int("dim"))};
}

// The functional ops a graph can hold. Not here: batch_norm and the fake-quant ops, whose
// parameters and buffers only a module (nn::BatchNorm2d, quant::FakeQuantize) can own.
const std::map<std::string, Function>& functions() {
  static const std::map<std::string, Function> kFunctions = {
      {"adaptive_avg_pool2d", {1, 1, run_adaptive_avg_pool2d}},
      {"add", {1, 2, run_add}},
      {"avg_pool2d", {1, 1, run_avg_pool2d}},
      {"cat", {1, kAny, run_cat}},
      {"channel_shuffle", {1, 1, run_channel_shuffle}},
      {"chunk", {1, 1, run_chunk}},
      {"clamp", {1, 1, run_clamp}},
      {"conv2d", {2, 3, run_conv2d}},
      {"div", {2, 2, run_div}},
      {"dropout", {1, 1, run_dropout}},
      {"flatten", {1, 1, run_flatten}},
      {"linear", {2, 3, run_linear}},
      {"log_softmax", {1, 1, run_log_softmax}},
      {"max_pool2d", {1, 1, run_max_pool2d}},
      {"mean", {1, 1, run_mean}},
      {"mul", {1, 2, run_mul}},
      {"neg", {1, 1, run_neg}},
      {"permute", {1, 1, run_permute}},
      {"relu", {1, 1, run_relu}},
      {"relu6", {1, 1, run_relu6}},
      {"reshape", {1, 1, run_reshape}},
      {"split", {1, 1, run_split}},
      {"sub", {2, 2, run_sub}},
      {"sum", {1, 1, run_sum}},
      {"transpose", {1, 1, run_transpose}},
  };
  return kFunctions;
}

std::string function_names() {
  std::string out;
  for (const auto& entry : functions()) out += (out.empty() ? "" : ", ") + entry.first;
  return out;
}

Tensors run_node(const GraphNode& node, const Tensors& in, const Tensor& input) {
  switch (node.kind) {
    case NodeKind::kInput:
      return {input};
    case NodeKind::kModule:
      QAT_CHECK(node.module != nullptr, "module node without a module");
      return {node.module->forward(in.at(0))};
    case NodeKind::kOutput:
      return {};
    case NodeKind::kFunction:
      break;
  }
  Tensors out = run_function(node.op, in, node.attrs);
  QAT_CHECK(static_cast<int>(out.size()) == node.num_outputs(), "op '", node.op, "' returned ",
            out.size(), " outputs, the graph expects ", node.num_outputs());
  return out;
}

// last_use[i]: the last node that reads an output of node i (i itself if none), so run() can
// drop activations that autograd does not hold once nothing else needs them.
std::vector<size_t> last_uses(const Graph& graph) {
  std::vector<size_t> last_use(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    last_use[i] = i;
    for (const Value& v : graph.nodes[i].inputs) {
      QAT_CHECK(v.node >= 0 && static_cast<size_t>(v.node) < i, "graph run: node '",
                graph.nodes[i].name, "' reads node ", v.node,
                ", which does not come before it (HINT: Graph::validate() explains)");
      last_use[v.node] = i;
    }
  }
  return last_use;
}

// `module` as a T: any subclass of T, or with `exact_type` only T itself.
template <class T>
const T* as(const nn::Module& module, bool exact_type) {
  if (exact_type) return typeid(module) == typeid(T) ? static_cast<const T*>(&module) : nullptr;
  return dynamic_cast<const T*>(&module);
}

}  // namespace

std::array<int64_t, 2> pair_attr(const OpAttrs& attrs, const std::string& name) {
  const std::vector<int64_t>& v = attrs.get_ints(name);
  QAT_CHECK(v.size() == 2, "attribute '", name, "' must have 2 values, got ", shape_str(v));
  return {v[0], v[1]};
}

bool has_function(const std::string& op) { return functions().count(op) > 0; }

std::vector<Tensor> run_function(const std::string& op, const std::vector<Tensor>& inputs,
                                 const OpAttrs& attrs) {
  auto it = functions().find(op);
  QAT_CHECK(it != functions().end(), "no executor function for op '", op,
            "' (the executor runs: ", function_names(), ")");
  const Function& fn = it->second;
  QAT_CHECK(inputs.size() >= fn.min_inputs && inputs.size() <= fn.max_inputs, "op '", op,
            "' takes ", fn.min_inputs, fn.max_inputs == kAny ? " or more" : " to ",
            fn.max_inputs == kAny ? "" : std::to_string(fn.max_inputs), " inputs, got ",
            inputs.size());
  return fn.call(inputs, attrs);
}

std::optional<FunctionalForm> functional_form(const nn::Module& module, bool exact_type) {
  if (as<nn::ReLU>(module, exact_type)) return FunctionalForm{"relu", {}};
  if (as<nn::ReLU6>(module, exact_type)) return FunctionalForm{"relu6", {}};
  if (const auto* pool = as<nn::MaxPool2d>(module, exact_type)) {
    return FunctionalForm{"max_pool2d",
                          {{"kernel", pool->kernel_size.array()},
                           {"stride", pool->stride.array()},
                           {"padding", pool->options.padding().array()},
                           {"dilation", pool->options.dilation().array()},
                           {"ceil_mode", pool->options.ceil_mode()}}};
  }
  if (const auto* avg = as<nn::AvgPool2d>(module, exact_type)) {
    return FunctionalForm{"avg_pool2d",
                          {{"kernel", avg->kernel_size.array()},
                           {"stride", avg->stride.array()},
                           {"padding", avg->options.padding().array()},
                           {"ceil_mode", avg->options.ceil_mode()},
                           {"count_include_pad", avg->options.count_include_pad()}}};
  }
  if (const auto* adaptive = as<nn::AdaptiveAvgPool2d>(module, exact_type)) {
    return FunctionalForm{"adaptive_avg_pool2d", {{"output_size", adaptive->output_size.array()}}};
  }
  if (const auto* flatten = as<nn::Flatten>(module, exact_type)) {
    return FunctionalForm{"flatten",
                          {{"start_dim", flatten->start_dim}, {"end_dim", flatten->end_dim}}};
  }
  if (const auto* dropout = as<nn::Dropout>(module, exact_type)) {
    return FunctionalForm{"dropout", {{"p", dropout->p}, {"training", false}}};
  }
  return std::nullopt;
}

Tensor run(const Graph& graph, const Tensor& input) {
  const std::vector<size_t> last_use = last_uses(graph);
  std::vector<Tensors> values(graph.nodes.size());
  const int output = graph.output_node();
  Tensor result;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const GraphNode& node = graph.nodes[i];
    Tensors in;
    for (const Value& v : node.inputs) {
      QAT_CHECK(v.output >= 0 && static_cast<size_t>(v.output) < values[v.node].size(),
                "graph run: node '", node.name, "' reads output ", v.output, " of '",
                graph.nodes[v.node].name, "', which has ", values[v.node].size(), " output(s)");
      in.push_back(values[v.node][v.output]);
    }
    if (static_cast<int>(i) == output) result = in.at(0);
    try {
      values[i] = run_node(node, in, input);
    } catch (const Error& e) {
      throw Error("graph run: node '" + node.name + "' (" + node.op + "): " + e.what());
    }
    for (const Value& v : node.inputs)
      if (last_use[v.node] == i) values[v.node].clear();
    if (last_use[i] == i) values[i].clear();  // nothing reads it (an aux head's logits)
  }
  return result;
}

GraphModule::GraphModule(std::shared_ptr<nn::Module> model, Graph graph)
    : model_(std::move(model)), graph_(std::move(graph)) {
  QAT_CHECK(model_ != nullptr, "GraphModule: got a null model");
  graph_.validate();
  // The same tensors and modules under the same names, in the model's order, so state_dict()
  // keys and order equal the model's. register_parameter marks a parameter as requiring grad;
  // keep the model's choice instead (a frozen parameter stays frozen).
  for (auto& [name, param] : model_->named_parameters(/*recurse=*/false)) {
    const bool requires_grad = param.requires_grad();
    register_parameter(name, param).requires_grad_(requires_grad);
  }
  for (const auto& [name, buffer] : model_->named_buffers(/*recurse=*/false))
    register_buffer(name, buffer);
  for (const auto& [name, child] : model_->named_children()) register_module(name, child);
  attach_node_modules();
  train(model_->is_training());
}

void GraphModule::set_graph(Graph graph) {
  graph.validate();
  for (const auto& [name, module] : attached_nodes_) {
    const int index = graph.find(name);
    QAT_CHECK(index >= 0 && graph.nodes[index].module == module,
              "GraphModule: the new graph drops the module of node '", name,
              "', whose state is in state_dict()");
  }
  graph_ = std::move(graph);
  attach_node_modules();
  train(is_training());
}

void GraphModule::attach_node_modules() {
  std::unordered_set<const nn::Module*> known;
  for (const auto& entry : model_->named_modules()) known.insert(entry.second.get());
  for (const auto& entry : attached_nodes_) known.insert(entry.second.get());
  for (const GraphNode& node : graph_.nodes) {
    if (!node.module || known.count(node.module.get()) || node.module->state_dict().empty())
      continue;
    attach_module(node.name, node.module);
    attached_nodes_.emplace_back(node.name, node.module);
    known.insert(node.module.get());
  }
}

void GraphModule::train(bool on) {
  Module::train(on);
  model_->train(on);
  for (const GraphNode& node : graph_.nodes)
    if (node.module) node.module->train(on);
}

Tensor GraphModule::forward_impl(const Tensor& input) { return run(graph_, input); }

}  // namespace qat::graph
