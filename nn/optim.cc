#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/autograd.h"

namespace qat::nn {
namespace {

// Elementwise updates are independent per element, so threads never change the results.
constexpr int64_t kParallelGrain = 1 << 16;

// Calls fn(T{}) with T = float or double, matching the parameter's dtype. Updates run in the
// parameter's precision, as PyTorch's CPU kernels do for float32.
template <class Fn>
void dispatch_floating(const Tensor& param, Fn&& fn) {
  if (param.dtype() == DType::kFloat32) {
    fn(float{});
  } else {
    fn(double{});
  }
}

// Element order follows the PyTorch ops: d_p.add(param, alpha=wd), buf.mul_(m).add_(d_p,
// alpha=1-dampening), d_p.add(buf, alpha=m), param.add_(d_p, alpha=-lr).
template <class T>
void sgd_kernel(T* p, const T* g, T* buf, bool first_step, int64_t n, double lr, double wd,
                double momentum, double dampening, bool nesterov) {
  const T t_lr = static_cast<T>(-lr), t_wd = static_cast<T>(wd), t_m = static_cast<T>(momentum);
  const T t_keep = static_cast<T>(1.0 - dampening);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T d = wd != 0 ? g[i] + t_wd * p[i] : g[i];
    if (buf != nullptr) {
      buf[i] = first_step ? d : buf[i] * t_m + t_keep * d;
      d = nesterov ? d + t_m * buf[i] : buf[i];
    }
    p[i] = p[i] + t_lr * d;
  }
}

struct AdamConfig {
  Betas betas;
  double eps;
  bool amsgrad;
  bool decoupled_weight_decay;  // AdamW
};

// One Adam/AdamW step on n elements; `step` is the (already incremented) step count.
// torch 1.13 _single_tensor_adam(w): the bias corrections are computed in double, then
// denom = sqrt(v) / sqrt(bias_correction2) + eps and p += -(lr / bias_correction1) * m / denom.
template <class T>
void adam_kernel(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, double step, double lr,
                 double wd, const AdamConfig& c) {
  const double bias_correction1 = 1.0 - std::pow(c.betas[0], step);
  const double bias_correction2 = 1.0 - std::pow(c.betas[1], step);
  const T neg_step_size = static_cast<T>(-(lr / bias_correction1));
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
  const T beta1 = static_cast<T>(c.betas[0]), beta2 = static_cast<T>(c.betas[1]);
  const T one_minus_beta1 = static_cast<T>(1.0 - c.betas[0]);
  const T one_minus_beta2 = static_cast<T>(1.0 - c.betas[1]);
  const T eps = static_cast<T>(c.eps), t_wd = static_cast<T>(wd);
  const T decay = static_cast<T>(1.0 - lr * wd);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T grad = g[i];
    if (c.decoupled_weight_decay) {
      p[i] = p[i] * decay;
    } else if (wd != 0) {
      grad = grad + t_wd * p[i];
    }
    m[i] = m[i] * beta1 + one_minus_beta1 * grad;
    v[i] = v[i] * beta2 + one_minus_beta2 * grad * grad;
    T second = v[i];
    if (v_max != nullptr) second = v_max[i] = std::max(v_max[i], v[i]);
    const T denom = std::sqrt(second) / bias_correction2_sqrt + eps;
    p[i] = p[i] + neg_step_size * m[i] / denom;
  }
}

// A state buffer by name; a state loaded from another optimizer type may lack it.
Tensor& buffer(ParamState& state, const std::string& name) {
  auto it = state.find(name);
  QAT_CHECK(it != state.end(), "optimizer: the parameter state has no '", name,
            "' buffer (HINT: was the state loaded from another optimizer type?)");
  return it->second;
}

void adam_update(Tensor& param, const Tensor& grad, const ParamGroup& group, ParamState& state,
                 const AdamConfig& c) {
  if (state.empty()) {
    state["step"] = Tensor::scalar(0.0);  // float32, as torch 1.13 keeps it
    state["exp_avg"] = Tensor::zeros(param.shape(), param.dtype());
    state["exp_avg_sq"] = Tensor::zeros(param.shape(), param.dtype());
    if (c.amsgrad) state["max_exp_avg_sq"] = Tensor::zeros(param.shape(), param.dtype());
  }
  Tensor& step = buffer(state, "step");
  step.fill_(step.item() + 1);
  dispatch_floating(param, [&](auto tag) {
    using T = decltype(tag);
    T* v_max = c.amsgrad ? buffer(state, "max_exp_avg_sq").data<T>() : nullptr;
    adam_kernel<T>(param.data<T>(), grad.data<T>(), buffer(state, "exp_avg").data<T>(),
                   buffer(state, "exp_avg_sq").data<T>(), v_max, param.numel(), step.item(),
                   *group.lr, *group.weight_decay, c);
  });
}

void check_betas(const std::string& optimizer, const Betas& betas, double eps) {
  QAT_CHECK(betas[0] >= 0 && betas[0] < 1, optimizer,
            ": invalid beta parameter at index 0: ", betas[0]);
  QAT_CHECK(betas[1] >= 0 && betas[1] < 1, optimizer,
            ": invalid beta parameter at index 1: ", betas[1]);
  QAT_CHECK(eps >= 0, optimizer, ": invalid epsilon value: ", eps);
}

std::vector<ParamGroup> one_group(std::vector<Tensor> params) {
  return {ParamGroup(std::move(params))};
}

// Splits "param_groups.3.lr" into {"param_groups", "3", "lr"}; returns false on another shape.
bool split_key(const std::string& key, std::string& kind, size_t& index, std::string& field) {
  const size_t first = key.find('.');
  if (first == std::string::npos) return false;
  const size_t second = key.find('.', first + 1);
  if (second == std::string::npos) return false;
  kind = key.substr(0, first);
  const std::string number = key.substr(first + 1, second - first - 1);
  if (number.empty() || number.size() > 9 ||
      number.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  index = std::stoul(number);
  field = key.substr(second + 1);
  return !field.empty();
}

}  // namespace

Optimizer::Optimizer(std::string type_name, std::vector<ParamGroup> groups, double default_lr,
                     double default_weight_decay)
    : type_name_(std::move(type_name)), groups_(std::move(groups)) {
  std::unordered_set<const TensorImpl*> seen;
  for (ParamGroup& group : groups_) {
    if (!group.lr) group.lr = default_lr;
    if (!group.weight_decay) group.weight_decay = default_weight_decay;
    QAT_CHECK(*group.lr >= 0, type_name_, ": invalid learning rate: ", *group.lr);
    QAT_CHECK(*group.weight_decay >= 0, type_name_,
              ": invalid weight_decay value: ", *group.weight_decay);
    for (const Tensor& p : group.params) {
      QAT_CHECK(p.defined(), type_name_, ": got an undefined parameter");
      QAT_CHECK(p.is_leaf() && is_floating(p.dtype()), type_name_,
                ": can't optimize a non-leaf or non-floating tensor, got ", p.to_string());
      QAT_CHECK(seen.insert(p.impl_ptr().get()).second, type_name_,
                ": some parameters appear in more than one parameter group");
    }
  }
  QAT_CHECK(!seen.empty(), type_name_, ": got an empty parameter list");
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (ParamGroup& group : groups_) {
    for (Tensor& param : group.params) {
      const Tensor grad = param.grad();
      if (!grad.defined()) continue;
      update(param, grad, group, state_[param.impl_ptr().get()]);
    }
  }
}

void Optimizer::zero_grad() {
  for (ParamGroup& group : groups_)
    for (Tensor& param : group.params) param.set_grad(Tensor());
}

NamedTensors Optimizer::state_dict() const {
  NamedTensors out;
  auto number = [](double v) { return Tensor::scalar(v, DType::kFloat64); };
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "param_groups." + std::to_string(g) + ".";
    out.emplace_back(prefix + "lr", number(*groups_[g].lr));
    out.emplace_back(prefix + "weight_decay", number(*groups_[g].weight_decay));
    if (groups_[g].initial_lr)
      out.emplace_back(prefix + "initial_lr", number(*groups_[g].initial_lr));
  }
  size_t index = 0;
  for (const ParamGroup& group : groups_) {
    for (const Tensor& param : group.params) {
      auto it = state_.find(param.impl_ptr().get());
      if (it != state_.end()) {
        for (const auto& [name, t] : it->second)
          out.emplace_back("state." + std::to_string(index) + "." + name, t);
      }
      ++index;
    }
  }
  return out;
}

void Optimizer::load_state_dict(const NamedTensors& state_dict) {
  std::vector<const Tensor*> params;  // flat index -> parameter
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params) params.push_back(&p);

  // Validate everything first; write only if all keys check out.
  std::vector<ParamGroup> groups = groups_;
  std::vector<bool> has_lr(groups.size()), has_weight_decay(groups.size());
  std::unordered_map<const TensorImpl*, ParamState> state;
  for (const auto& [key, value] : state_dict) {
    std::string kind, field;
    size_t index = 0;
    const bool parsed = split_key(key, kind, index, field);
    if (parsed && kind == "param_groups") {
      QAT_CHECK(index < groups.size(), type_name_, " load_state_dict: ", key, " refers to group ",
                index, " but the optimizer has ", groups.size());
      QAT_CHECK(value.numel() == 1, type_name_, " load_state_dict: ", key,
                " must hold one number, got shape ", shape_str(value.shape()));
      if (field == "lr") {
        groups[index].lr = value.item();
        has_lr[index] = true;
      } else if (field == "weight_decay") {
        groups[index].weight_decay = value.item();
        has_weight_decay[index] = true;
      } else if (field == "initial_lr") {
        groups[index].initial_lr = value.item();
      } else {
        QAT_CHECK(false, type_name_, " load_state_dict: unexpected key ", key);
      }
    } else if (parsed && kind == "state") {
      QAT_CHECK(index < params.size(), type_name_, " load_state_dict: ", key,
                " refers to parameter ", index, " but the optimizer has ", params.size());
      const Tensor& param = *params[index];
      QAT_CHECK(field == "step" || value.shape() == param.shape(), type_name_,
                " load_state_dict: size mismatch for ", key, ": checkpoint ",
                shape_str(value.shape()), ", parameter ", shape_str(param.shape()));
      // Buffers take the parameter's dtype, as PyTorch's Optimizer.load_state_dict casts them.
      Tensor copy = field == "step" ? value.clone() : value.to(param.dtype()).clone();
      state[param.impl_ptr().get()][field] = copy;
    } else {
      QAT_CHECK(false, type_name_, " load_state_dict: unexpected key ", key);
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    QAT_CHECK(has_lr[g] && has_weight_decay[g], type_name_,
              " load_state_dict: missing key param_groups.", g,
              has_lr[g] ? ".weight_decay" : ".lr");
  }
  groups_ = std::move(groups);
  state_ = std::move(state);
}

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : SGD(one_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer("SGD", std::move(groups), options.lr(), options.weight_decay()), options_(options) {
  QAT_CHECK(options.momentum() >= 0, "SGD: invalid momentum value: ", options.momentum());
  QAT_CHECK(!options.nesterov() || (options.momentum() > 0 && options.dampening() == 0),
            "SGD: nesterov momentum requires a momentum and zero dampening");
}

void SGD::update(Tensor& param, const Tensor& grad, const ParamGroup& group, ParamState& state) {
  const double momentum = options_.momentum();
  const bool first_step = momentum != 0 && state.empty();
  if (first_step) state["momentum_buffer"] = Tensor::empty(param.shape(), param.dtype());
  dispatch_floating(param, [&](auto tag) {
    using T = decltype(tag);
    T* buf = momentum != 0 ? buffer(state, "momentum_buffer").data<T>() : nullptr;
    sgd_kernel<T>(param.data<T>(), grad.data<T>(), buf, first_step, param.numel(), *group.lr,
                  *group.weight_decay, momentum, options_.dampening(), options_.nesterov());
  });
}

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam(one_group(std::move(params)), options) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options)
    : Optimizer("Adam", std::move(groups), options.lr(), options.weight_decay()),
      options_(options) {
  check_betas("Adam", options.betas(), options.eps());
}

void Adam::update(Tensor& param, const Tensor& grad, const ParamGroup& group, ParamState& state) {
  adam_update(param, grad, group, state,
              {options_.betas(), options_.eps(), options_.amsgrad(),
               /*decoupled_weight_decay=*/false});
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : AdamW(one_group(std::move(params)), options) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Optimizer("AdamW", std::move(groups), options.lr(), options.weight_decay()),
      options_(options) {
  check_betas("AdamW", options.betas(), options.eps());
}

void AdamW::update(Tensor& param, const Tensor& grad, const ParamGroup& group, ParamState& state) {
  adam_update(param, grad, group, state,
              {options_.betas(), options_.eps(), options_.amsgrad(),
               /*decoupled_weight_decay=*/true});
}

}  // namespace qat::nn
