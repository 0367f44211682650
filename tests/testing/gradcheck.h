#pragma once

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/autograd.h"
#include "core/tensor.h"

namespace qat::testing {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-5;
  double rtol = 1e-4;
};

// Finite-difference gradient check in double, as torch.autograd.gradcheck.
// `fn` maps the inputs to one output. Every float64 input with requires_grad() is checked:
// the analytic gradient of L = sum(fn(inputs) * r) (r fixed random weights) from backward()
// against (L(x + eps) - L(x - eps)) / (2 eps) per element.
inline ::testing::AssertionResult gradcheck(
    const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
    const GradcheckOptions& options = {}) {
  for (const Tensor& x : inputs) {
    if (x.defined() && x.requires_grad() && x.dtype() != DType::kFloat64)
      return ::testing::AssertionFailure() << "gradcheck needs float64 inputs";
    if (x.defined() && x.requires_grad()) Tensor(x).set_grad(Tensor());
  }
  Tensor y = fn(inputs);
  if (!y.requires_grad()) return ::testing::AssertionFailure() << "output does not require grad";
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  Tensor r = Tensor::empty(y.shape(), DType::kFloat64);
  for (int64_t i = 0; i < r.numel(); ++i) r.data<double>()[i] = dist(rng);
  y.backward(r);

  auto loss = [&]() {
    NoGradGuard no_grad;
    Tensor out = fn(inputs);
    const double* po = out.data<double>();
    const double* pr = r.data<double>();
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += po[i] * pr[i];
    return s;
  };

  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad();
    if (!g.defined()) return ::testing::AssertionFailure() << "input " << k << " got no gradient";
    double* px = x.data<double>();
    const double* pg = g.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double saved = px[i];
      px[i] = saved + options.eps;
      double plus = loss();
      px[i] = saved - options.eps;
      double minus = loss();
      px[i] = saved;
      double numeric = (plus - minus) / (2 * options.eps);
      if (std::fabs(numeric - pg[i]) > options.atol + options.rtol * std::fabs(numeric)) {
        return ::testing::AssertionFailure()
               << "input " << k << " " << shape_str(x.shape()) << " element " << i
               << ": analytic " << pg[i] << " vs numeric " << numeric;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// A float64 leaf of the given shape with values uniform in [low, high), requiring grad.
inline Tensor random_leaf(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  Tensor t = Tensor::empty(shape, DType::kFloat64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = dist(rng);
  t.requires_grad_();
  return t;
}

}  // namespace qat::testing
