#pragma once

#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qat::nn {

class Module;

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;  // ordered, like PyTorch
using StateDict = NamedTensors;
using NamedModules = std::vector<std::pair<std::string, std::shared_ptr<Module>>>;

// What load_state_dict(sd, /*strict=*/false) skipped: PyTorch's _IncompatibleKeys.
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the model, not in the checkpoint
  std::vector<std::string> unexpected_keys;  // in the checkpoint, not in the model
};

// Base of every layer and model, as torch.nn.Module. Owns ordered, named parameters, buffers
// and children; every dotted name it reports ("layer1.0.conv1.weight") is the PyTorch name.
// Hold modules by std::shared_ptr (std::make_shared<Conv2d>(...)); they are not copyable.
class Module : public std::enable_shared_from_this<Module> {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Call sites use forward(); subclasses implement forward_impl(). The split keeps one choke
  // point for graph tracing and observers (PyTorch's __call__): forward() notifies the
  // ForwardHooks installed on this thread around forward_impl(). Keep it non-virtual.
  Tensor forward(const Tensor& input);

  // Shared tensors are reported once, under their first name (PyTorch's remove_duplicate).
  // recurse=false: this module's own entries only.
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  // Pre-order, this module first under the name "" (needs it to be held by a shared_ptr).
  NamedModules named_modules();
  NamedModules named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;

  // For each module: its parameters, then its buffers, then its children, recursively, in
  // registration order -- the order and names of torch.nn.Module.state_dict() -- then its
  // attached modules (attach_module). The tensors alias the model's own (no copies).
  StateDict state_dict() const;
  // Copies the checkpoint's values into the model's tensors in place, so handles held by layers
  // and optimizers stay valid. Shape mismatches always throw; strict=true also throws on
  // missing or unexpected keys, otherwise they are returned. Nothing is written unless
  // every check passes.
  LoadResult load_state_dict(const StateDict& state_dict, bool strict = true);

  // Sets training mode on this module and all descendants (BN statistics, dropout).
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Sets every parameter's grad to undefined (PyTorch's set_to_none=True).
  void zero_grad();

  // The class name, as PyTorch prints it ("Conv2d").
  virtual std::string type_name() const = 0;
  // The text between the parentheses of this module's repr, e.g.
  // "3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False". Default: "".
  virtual std::string extra_repr() const;
  // The module tree as PyTorch's repr(module) prints it.
  std::string to_string() const;

 protected:
  // Default throws: containers without a single-tensor forward.
  virtual Tensor forward_impl(const Tensor& input);

  // Registration order is state_dict order: register in the order of the PyTorch __init__.
  // A parameter is a leaf; it is marked requires_grad. Returns the registered handle.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  // A buffer whose shape depends on the data it has seen (per-channel observer state, [0] until
  // the first batch). load_state_dict resizes it to the checkpoint's shape instead of rejecting
  // the mismatch (PyTorch's observers do this in _load_from_state_dict).
  Tensor register_resizable_buffer(const std::string& name, Tensor value);
  // The same for a parameter (a per-channel learnable quantization scale).
  Tensor register_resizable_parameter(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    QAT_CHECK(module != nullptr, type_name(), ": register_module('", name, "') got a null module");
    check_new_name(name);
    children_.emplace_back(name, module);
    return module;
  }
  // Attaches `module` beside the registered tree under a dotted path ("layer1.0.conv1"), for
  // state that belongs to a place in the tree without being part of it: the quant modules of a
  // traced graph's nodes, keyed by node name (graph::GraphModule). PyTorch would nest it in
  // containers, which the registered children already occupy here. Its entries report as
  // "<path>.<key>" after this module's registered ones (params, buffers, children, then
  // attachments in attach order) in state_dict(), named_parameters(), named_buffers(),
  // named_modules() and load_state_dict(), and train() reaches it. It is not a child:
  // named_children(), children() and to_string() leave it out. The path may name a registered
  // module too (the float "conv1" and graph node "conv1"'s quant state), so named_modules() may
  // report one name twice; state_dict() keys stay unique: a key the module would add that
  // state_dict() already has is an error, as is an attached path used twice.
  void attach_module(const std::string& path, std::shared_ptr<Module> module);

 private:
  void check_new_name(const std::string& name) const;
  // Appends "<prefix><name>" for this module's entries (and descendants' when recurse).
  void collect_parameters(const std::string& prefix, bool recurse, NamedTensors& out) const;
  void collect_buffers(const std::string& prefix, bool recurse, NamedTensors& out) const;
  void collect_state(const std::string& prefix, StateDict& out) const;
  void collect_resizable(const std::string& prefix, std::set<std::string>& out) const;
  // children_, then attached_: every module whose entries this module reports.
  NamedModules submodules() const;

  NamedTensors params_;
  NamedTensors buffers_;
  std::set<std::string> resizable_;  // names of resizable parameters and buffers
  NamedModules children_;
  NamedModules attached_;  // attach_module(): dotted paths
  bool training_ = true;
};

std::ostream& operator<<(std::ostream& os, const Module& module);

// Sees every Module::forward() call made on this thread while a ForwardHookGuard installs it, as
// PyTorch's global register_module_forward_pre_hook / register_module_forward_hook. Tools such as
// the graph tracer and `qat summary` build on it. Names are not passed: map modules to their
// qualified names with the root's named_modules().
class ForwardHook {
 public:
  virtual ~ForwardHook() = default;
  // Called before module.forward_impl(input).
  virtual void before_forward(Module& /*module*/, const Tensor& /*input*/) {}
  // Called after forward_impl() returned `output`; skipped when it throws.
  virtual void after_forward(Module& /*module*/, const Tensor& /*input*/,
                             const Tensor& /*output*/) {}
};

// Installs a ForwardHook on the current thread for the guard's lifetime (the hook must outlive
// it). Guards nest; every installed hook is notified, in installation order. With no guard alive,
// forward() costs one check of an empty thread_local list.
class ForwardHookGuard {
 public:
  explicit ForwardHookGuard(ForwardHook& hook);
  ~ForwardHookGuard();
  ForwardHookGuard(const ForwardHookGuard&) = delete;
  ForwardHookGuard& operator=(const ForwardHookGuard&) = delete;

 private:
  ForwardHook* hook_;
};

// Formatting helpers for extra_repr(), printing values as Python does.
std::string py_bool(bool value);     // "True" / "False"
std::string py_float(double value);  // repr(float): "0.1", "1e-05", "1.0"

}  // namespace qat::nn
