#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/module.h"

// Optimizers with the exact update math of torch.optim 1.13's single-tensor (for-loop) path.
// See the PyTorch docs of torch.optim.SGD / Adam / AdamW for the algorithms.
namespace qat::nn {

// One set of parameters with its own hyperparameters: PyTorch's optimizer.param_groups[i].
// lr / weight_decay left unset take the optimizer's defaults at construction; afterwards they
// always hold a value. Other hyperparameters (momentum, betas, ...) are optimizer-wide.
struct ParamGroup {
  explicit ParamGroup(std::vector<Tensor> params, std::optional<double> lr = std::nullopt,
                      std::optional<double> weight_decay = std::nullopt)
      : params(std::move(params)), lr(lr), weight_decay(weight_decay) {}

  std::vector<Tensor> params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
  std::optional<double> initial_lr;  // set by the first LR scheduler (PyTorch's 'initial_lr')
};

// A parameter's optimizer buffers by name ("momentum_buffer", "exp_avg", "step", ...).
using ParamState = std::map<std::string, Tensor>;

// Base class: owns the param groups and the per-parameter state, and runs the update loop.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter that has a gradient, in place and without recording history.
  // Parameters whose grad is undefined are skipped (their state does not advance).
  void step();
  // Sets every parameter's grad to undefined (PyTorch's set_to_none=True).
  void zero_grad();

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }

  // What a checkpoint needs to resume exactly, as 0-d float64 hyperparameters and the state
  // buffers: "param_groups.<g>.lr", "param_groups.<g>.weight_decay",
  // "param_groups.<g>.initial_lr" (once set) and "state.<i>.<buffer>", where i counts the
  // parameters of all groups in order, as in PyTorch's optimizer.state_dict().
  NamedTensors state_dict() const;
  // Restores lrs, weight decays and buffers from state_dict() of an optimizer of the same type
  // over the same parameters; the current per-parameter state is replaced.
  void load_state_dict(const NamedTensors& state_dict);

  const std::string& type_name() const { return type_name_; }  // "SGD"

 protected:
  // Fills unset group hyperparameters with the defaults and validates the parameters.
  Optimizer(std::string type_name, std::vector<ParamGroup> groups, double default_lr,
            double default_weight_decay);
  // One parameter's update. `state` is empty at the parameter's first step.
  virtual void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
                      ParamState& state) = 0;

 private:
  std::string type_name_;
  std::vector<ParamGroup> groups_;
  std::unordered_map<const TensorImpl*, ParamState> state_;
};

struct SGDOptions {
  explicit SGDOptions(double lr) : lr_(lr) {}
  QAT_ARG(double, lr);
  QAT_ARG(double, momentum) = 0.0;
  QAT_ARG(double, dampening) = 0.0;
  QAT_ARG(double, weight_decay) = 0.0;
  QAT_ARG(bool, nesterov) = false;
};

// torch.optim.SGD: d = g + wd*p; buf = momentum*buf + (1-dampening)*d (buf = d on the first
// step); d = nesterov ? d + momentum*buf : buf; p -= lr*d.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options);
  SGD(std::vector<ParamGroup> groups, SGDOptions options);
  const SGDOptions& options() const { return options_; }

 protected:
  void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
              ParamState& state) override;

 private:
  SGDOptions options_;
};

using Betas = std::array<double, 2>;  // (beta1, beta2)

struct AdamOptions {
  QAT_ARG(double, lr) = 1e-3;
  QAT_ARG(Betas, betas) = {0.9, 0.999};
  QAT_ARG(double, eps) = 1e-8;
  QAT_ARG(double, weight_decay) = 0.0;
  QAT_ARG(bool, amsgrad) = false;
};

// torch.optim.Adam; weight decay is L2 added to the gradient.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  Adam(std::vector<ParamGroup> groups, AdamOptions options = {});
  const AdamOptions& options() const { return options_; }

 protected:
  void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
              ParamState& state) override;

 private:
  AdamOptions options_;
};

struct AdamWOptions {
  QAT_ARG(double, lr) = 1e-3;
  QAT_ARG(Betas, betas) = {0.9, 0.999};
  QAT_ARG(double, eps) = 1e-8;
  QAT_ARG(double, weight_decay) = 1e-2;
  QAT_ARG(bool, amsgrad) = false;
};

// torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr*wd before the update.
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
  const AdamWOptions& options() const { return options_; }

 protected:
  void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
              ParamState& state) override;

 private:
  AdamWOptions options_;
};

}  // namespace qat::nn
