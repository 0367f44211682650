#include "graph/trace.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/random.h"
#include "core/trace_hook.h"
#include "graph/executor.h"

namespace qat::graph {
namespace {

// Sees module calls (ForwardHook) and op calls (OpTracer) and appends them to a Graph.
class Tracer : public nn::ForwardHook, public OpTracer {
 public:
  explicit Tracer(nn::Module& root) : root_(root) {
    for (auto& [path, module] : root.named_modules()) modules_.emplace(module.get(), path);
  }

  void start(const Tensor& input) {
    GraphNode node;
    node.name = unique_name("input");
    node.kind = NodeKind::kInput;
    node.op = "input";
    add(std::move(node), {input});
  }

  Graph finish(const Tensor& output) {
    GraphNode node;
    node.name = unique_name("output");
    node.kind = NodeKind::kOutput;
    node.op = "output";
    const Value* value = find(output);
    QAT_CHECK(value != nullptr, "trace: the model returned a tensor ", shape_str(output.shape()),
              " that no recorded call produced", kNowhereHint);
    node.inputs = {*value};
    add(std::move(node), {});
    return std::move(graph_);
  }

  void before_forward(nn::Module& module, const Tensor& /*input*/) override {
    if (leaf_depth_ > 0 || (&module != &root_ && is_leaf(module))) {
      ++leaf_depth_;  // everything a leaf does is part of its node
      return;
    }
    scopes_.push_back(&module == &root_ ? "" : path_of(module));
  }

  void after_forward(nn::Module& module, const Tensor& input, const Tensor& output) override {
    if (leaf_depth_ == 0) {
      scopes_.pop_back();
      return;
    }
    if (--leaf_depth_ > 0) return;
    GraphNode node;
    node.name = unique_name(path_of(module));
    node.kind = NodeKind::kModule;
    node.op = module.type_name();
    node.module = module.shared_from_this();
    node.inputs = {value_of(input, node, 0)};
    add(std::move(node), {output});
  }

  void on_op(const char* op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
             const OpAttrs& attrs) override {
    if (leaf_depth_ > 0) return;
    QAT_CHECK(!scopes_.empty(), "trace: op '", op, "' was called outside the model's forward");
    GraphNode node;
    const std::string& scope = scopes_.back();
    node.name = unique_name(scope.empty() ? op : scope + "." + op);
    node.kind = NodeKind::kFunction;
    node.op = op;
    node.attrs = attrs;
    QAT_CHECK(has_function(op), "trace: node '", node.name, "' calls op '", op,
              "', which the graph executor cannot run (HINT: call it through its module, e.g. "
              "nn::BatchNorm2d or quant::FakeQuantize, so that it is recorded as a module call)");
    for (size_t k = 0; k < inputs.size(); ++k) node.inputs.push_back(value_of(inputs[k], node, k));
    add(std::move(node), outputs);
  }

 private:
  static constexpr const char* kNowhereHint =
      " (HINT: a parameter, buffer or constant that a functional op reads must live in a leaf "
      "module such as nn::Conv2d; a tensor made by a Tensor method (view, clone) should be made "
      "with the qat::ops equivalent, e.g. ops::reshape)";

  // A traced tensor: the graph value it is, and a weak handle that tells whether the TensorImpl
  // at that address is still the one recorded (a freed address can be reused).
  struct Known {
    Value value;
    std::weak_ptr<TensorImpl> impl;
  };

  static bool is_leaf(const nn::Module& module) { return module.named_children().empty(); }

  const std::string& path_of(const nn::Module& module) const {
    auto it = modules_.find(&module);
    QAT_CHECK(it != modules_.end(), "trace: a ", module.type_name(),
              " module was called that is not registered in the traced model (HINT: "
              "register_module() it, so that its parameters are in the model's state_dict)");
    return it->second;
  }

  // `base`, or "<base>_1", "<base>_2", ... if taken: one node per call site.
  std::string unique_name(const std::string& base) {
    std::string name = base;
    for (int k = 1; names_.count(name); ++k) name = base + "_" + std::to_string(k);
    names_.insert(name);
    return name;
  }

  const Value* find(const Tensor& tensor) const {
    auto it = known_.find(tensor.impl_ptr().get());
    if (it == known_.end() || it->second.impl.lock() != tensor.impl_ptr()) return nullptr;
    return &it->second.value;
  }

  Value value_of(const Tensor& tensor, const GraphNode& node, size_t k) const {
    const Value* value = find(tensor);
    QAT_CHECK(value != nullptr, "trace: input ", k, " of node '", node.name, "' (", node.op,
              ") is a tensor ", shape_str(tensor.shape()),
              " that neither the traced input nor a recorded call produced", kNowhereHint);
    return *value;
  }

  void add(GraphNode node, const std::vector<Tensor>& outputs) {
    for (const Tensor& t : outputs) node.output_shapes.push_back(t.shape());
    const int index = graph_.add_node(std::move(node));
    for (size_t k = 0; k < outputs.size(); ++k) {
      known_[outputs[k].impl_ptr().get()] = {Value{index, static_cast<int>(k)},
                                             outputs[k].impl_ptr()};
    }
  }

  nn::Module& root_;
  std::unordered_map<const nn::Module*, std::string> modules_;  // module -> path
  std::vector<std::string> scopes_;  // paths of the containers whose forward is running
  int leaf_depth_ = 0;               // > 0 while a leaf module's forward is running
  std::unordered_map<const TensorImpl*, Known> known_;
  std::unordered_set<std::string> names_;
  Graph graph_;
};

// Restores the model's buffers and the default generator when tracing ends, however it ends:
// a traced forward in training mode updates BatchNorm statistics and draws dropout masks.
class ModelStateGuard {
 public:
  explicit ModelStateGuard(const nn::Module& model) : generator_(default_generator()) {
    for (const auto& [name, buffer] : model.named_buffers())
      buffers_.emplace_back(buffer, buffer.clone());
  }
  ~ModelStateGuard() {
    for (auto& [buffer, saved] : buffers_) buffer.resize_(saved.shape()).copy_(saved);
    default_generator() = generator_;
  }
  ModelStateGuard(const ModelStateGuard&) = delete;
  ModelStateGuard& operator=(const ModelStateGuard&) = delete;

 private:
  std::vector<std::pair<Tensor, Tensor>> buffers_;  // (the model's buffer, its saved copy)
  Generator generator_;
};

}  // namespace

Graph trace(nn::Module& model, const Shape& input_shape) {
  QAT_CHECK(shape_numel(input_shape) > 0, "trace: expected a non-empty input shape, got ",
            shape_str(input_shape));
  Tracer tracer(model);
  Tensor input = Tensor::empty(input_shape);
  Generator input_generator(0);  // not the default one: tracing must not move its stream
  normal_(input, 0.0, 1.0, input_generator);
  tracer.start(input);
  Tensor output;
  {
    ModelStateGuard restore_state(model);
    NoGradGuard no_grad;
    nn::ForwardHookGuard module_hook(tracer);
    OpTracerGuard op_hook(tracer);
    output = model.forward(input);
  }
  return tracer.finish(output);
}

}  // namespace qat::graph
