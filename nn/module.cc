#include "nn/module.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <sstream>
#include <unordered_set>

namespace qat::nn {
namespace {

// Indents every line but the first, as torch.nn.modules.module._addindent.
std::string add_indent(const std::string& text, int spaces) {
  const std::string pad(spaces, ' ');
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '\n') out += pad;
  }
  return out;
}

// "a", "b", "c" -- keys quoted like PyTorch's load_state_dict errors.
std::string quoted_list(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", \"" : "\"") + keys[i] + "\"";
  return out;
}

// Keeps the first occurrence of each tensor (a weight shared by two layers is one parameter).
NamedTensors unique_tensors(const NamedTensors& all) {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& entry : all)
    if (seen.insert(entry.second.impl_ptr().get()).second) out.push_back(entry);
  return out;
}

// The hooks of the ForwardHookGuards alive on this thread, oldest first.
thread_local std::vector<ForwardHook*> forward_hooks;

}  // namespace

Tensor Module::forward(const Tensor& input) {
  if (forward_hooks.empty()) return forward_impl(input);
  // Indexed loops: a hook may install a guard of its own while it runs.
  for (size_t i = 0; i < forward_hooks.size(); ++i) forward_hooks[i]->before_forward(*this, input);
  Tensor output = forward_impl(input);
  for (size_t i = 0; i < forward_hooks.size(); ++i)
    forward_hooks[i]->after_forward(*this, input, output);
  return output;
}

ForwardHookGuard::ForwardHookGuard(ForwardHook& hook) : hook_(&hook) {
  forward_hooks.push_back(hook_);
}

// Removes this guard's entry even if guards are destroyed out of order (e.g. held in a
// std::optional or on the heap).
ForwardHookGuard::~ForwardHookGuard() {
  auto it = std::find(forward_hooks.rbegin(), forward_hooks.rend(), hook_);
  forward_hooks.erase(std::next(it).base());
}

Tensor Module::forward_impl(const Tensor&) {
  QAT_CHECK(false, type_name(), ": this module has no single-tensor forward()");
  return Tensor();
}

void Module::check_new_name(const std::string& name) const {
  QAT_CHECK(!name.empty(), type_name(), ": registered names cannot be empty");
  QAT_CHECK(name.find('.') == std::string::npos, type_name(), ": registered name '", name,
            "' cannot contain '.'");
  auto taken = [&name](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  QAT_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name(), ": the name '",
            name, "' is already registered");
}

void Module::attach_module(const std::string& path, std::shared_ptr<Module> module) {
  QAT_CHECK(module != nullptr, type_name(), ": attach_module('", path, "') got a null module");
  QAT_CHECK(!path.empty() && path.front() != '.' && path.back() != '.' &&
                path.find("..") == std::string::npos,
            type_name(), ": attach_module expects a dotted path such as 'layer1.0.conv1', got '",
            path, "'");
  for (const auto& entry : attached_) {
    QAT_CHECK(entry.first != path, type_name(), ": the path '", path, "' is already attached");
  }
  std::set<std::string> keys;
  for (const auto& entry : state_dict()) keys.insert(entry.first);
  for (const auto& entry : module->state_dict()) {
    const std::string key = path + "." + entry.first;
    QAT_CHECK(!keys.count(key), type_name(), ": attach_module('", path, "') would add the key ",
              key, ", which state_dict() already has");
  }
  attached_.emplace_back(path, std::move(module));
}

NamedModules Module::submodules() const {
  NamedModules out = children_;
  out.insert(out.end(), attached_.begin(), attached_.end());
  return out;
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  QAT_CHECK(value.defined(), type_name(), ": register_parameter('", name,
            "') got an undefined tensor");
  QAT_CHECK(value.is_leaf(), type_name(), ": parameter '", name,
            "' must be a leaf tensor (HINT: register a fresh tensor or detach() it)");
  check_new_name(name);
  value.requires_grad_(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  QAT_CHECK(value.defined(), type_name(), ": register_buffer('", name,
            "') got an undefined tensor");
  check_new_name(name);
  buffers_.emplace_back(name, value);
  return value;
}

void Module::collect_parameters(const std::string& prefix, bool recurse, NamedTensors& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  if (!recurse) return;
  for (const auto& [name, child] : submodules())
    child->collect_parameters(prefix + name + ".", true, out);
}

void Module::collect_buffers(const std::string& prefix, bool recurse, NamedTensors& out) const {
  for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  if (!recurse) return;
  for (const auto& [name, child] : submodules())
    child->collect_buffers(prefix + name + ".", true, out);
}

Tensor Module::register_resizable_buffer(const std::string& name, Tensor value) {
  Tensor registered = register_buffer(name, std::move(value));
  resizable_.insert(name);
  return registered;
}

Tensor Module::register_resizable_parameter(const std::string& name, Tensor value) {
  Tensor registered = register_parameter(name, std::move(value));
  resizable_.insert(name);
  return registered;
}

void Module::collect_resizable(const std::string& prefix, std::set<std::string>& out) const {
  for (const std::string& name : resizable_) out.insert(prefix + name);
  for (const auto& [name, child] : submodules()) child->collect_resizable(prefix + name + ".", out);
}

void Module::collect_state(const std::string& prefix, StateDict& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : submodules()) child->collect_state(prefix + name + ".", out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors all;
  collect_parameters("", recurse, all);
  return unique_tensors(all);
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (const auto& entry : named_parameters(recurse)) out.push_back(entry.second);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors all;
  collect_buffers("", recurse, all);
  return unique_tensors(all);
}

NamedModules Module::named_modules() {
  std::shared_ptr<Module> self = weak_from_this().lock();
  QAT_CHECK(self != nullptr, type_name(),
            ": named_modules() needs the module to be held by a std::shared_ptr "
            "(HINT: create it with std::make_shared)");
  NamedModules out;
  std::unordered_set<const Module*> seen;
  // Explicit stack, children pushed in reverse so they pop in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> stack{{"", self}};
  while (!stack.empty()) {
    auto [name, module] = std::move(stack.back());
    stack.pop_back();
    if (!seen.insert(module.get()).second) continue;
    const std::string prefix = name.empty() ? "" : name + ".";
    const NamedModules submodules = module->submodules();
    for (auto it = submodules.rbegin(); it != submodules.rend(); ++it)
      stack.emplace_back(prefix + it->first, it->second);
    out.emplace_back(std::move(name), std::move(module));
  }
  return out;
}

NamedModules Module::named_children() const { return children_; }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& entry : children_) out.push_back(entry.second);
  return out;
}

StateDict Module::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

LoadResult Module::load_state_dict(const StateDict& state_dict, bool strict) {
  std::map<std::string, const Tensor*> incoming;
  for (const auto& [name, t] : state_dict) {
    QAT_CHECK(incoming.emplace(name, &t).second, "load_state_dict: the checkpoint has the key ",
              name, " twice");
  }
  // Check everything before writing anything, so a failed load leaves the model untouched.
  LoadResult result;
  std::vector<std::pair<Tensor, const Tensor*>> copies;  // (model tensor, checkpoint tensor)
  std::set<std::string> resizable;
  collect_resizable("", resizable);
  for (const auto& [name, target] : this->state_dict()) {
    auto it = incoming.find(name);
    if (it == incoming.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& source = *it->second;
    QAT_CHECK(source.defined(), "load_state_dict: the checkpoint tensor for ", name,
              " is undefined");
    QAT_CHECK(source.shape() == target.shape() || resizable.count(name),
              "load_state_dict: size mismatch for ", name,
              ": checkpoint ", shape_str(source.shape()), ", model ", shape_str(target.shape()));
    copies.emplace_back(target, &source);
    incoming.erase(it);
  }
  for (const auto& entry : incoming) result.unexpected_keys.push_back(entry.first);
  if (strict) {
    QAT_CHECK(
        result.missing_keys.empty() && result.unexpected_keys.empty(),
        "load_state_dict: error(s) loading the state dict of ", type_name(),
        result.missing_keys.empty() ? "" : "; missing key(s): ", quoted_list(result.missing_keys),
        result.unexpected_keys.empty() ? "" : "; unexpected key(s): ",
        quoted_list(result.unexpected_keys),
        " (HINT: strict=false loads the matching keys and reports the rest)");
  }
  // copy_ writes in place (and converts the dtype, as PyTorch's param.copy_(input_param)).
  for (auto& [target, source] : copies) target.resize_(source->shape()).copy_(*source);
  return result;
}

void Module::train(bool on) {
  training_ = on;
  for (const auto& entry : submodules()) entry.second->train(on);
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.set_grad(Tensor());
}

std::string Module::extra_repr() const { return ""; }

// Mirrors torch.nn.Module.__repr__: one extra_repr line and no children print inline,
// anything else prints one entry per line, children as "(name): <repr>" indented by two.
std::string Module::to_string() const {
  std::vector<std::string> extra_lines;
  std::istringstream extra(extra_repr());
  for (std::string line; std::getline(extra, line);) extra_lines.push_back(line);
  std::vector<std::string> lines = extra_lines;
  for (const auto& [name, child] : children_)
    lines.push_back("(" + name + "): " + add_indent(child->to_string(), 2));
  std::string out = type_name() + "(";
  if (extra_lines.size() == 1 && children_.empty()) {
    out += extra_lines[0];
  } else if (!lines.empty()) {
    for (const std::string& line : lines) out += "\n  " + line;
    out += "\n";
  }
  return out + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& module) {
  return os << module.to_string();
}

std::string py_bool(bool value) { return value ? "True" : "False"; }

// Python's repr(float): the shortest digit string that round-trips, in fixed notation when the
// decimal exponent is in [-4, 16), else scientific with a two-digit exponent ("1e-05").
std::string py_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*e", precision - 1, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  // buf = "[-]d.ddde[+-]xx": split into sign, digits and exponent.
  std::string s(buf);
  const bool negative = s[0] == '-';
  if (negative) s.erase(0, 1);
  const size_t e_pos = s.find('e');
  const int exponent = std::atoi(s.c_str() + e_pos + 1);
  std::string digits = s.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());

  std::string out;
  if (exponent < -4 || exponent >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    std::snprintf(buf, sizeof(buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += buf;
  } else if (exponent < 0) {
    out = "0." + std::string(-exponent - 1, '0') + digits;
  } else {
    const size_t int_digits = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      out = digits + std::string(int_digits - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_digits) + "." + digits.substr(int_digits);
    }
  }
  return negative ? "-" + out : out;
}

}  // namespace qat::nn
