#include "core/ops/loss.h"

#include "core/autograd.h"
#include "core/kernels/elementwise.h"
#include "core/ops/op_helpers.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

using detail::dispatch_floating;

// Label-smoothed NLL of log-probabilities logp: [N, C], mean over N. Targets are range-checked
// by the caller.
Tensor nll_loss(const Tensor& logp, const Tensor& targets, double eps) {
  const int64_t N = logp.size(0), C = logp.size(1);
  Tensor loss = Tensor::empty({}, logp.dtype());
  dispatch_floating(logp.dtype(), "nll_loss", [&](auto tag) {
    using T = decltype(tag);
    loss.data<T>()[0] =
        kernels::nll_loss_forward(logp.data<T>(), targets.data<int64_t>(), N, C, eps);
  });
  // A copy of the targets: the caller may refill its label buffer before backward runs.
  record(loss, "nll_loss", {logp},
         [targets = targets.clone(), N, C, eps](const Tensor& dy) -> Grads {
           Tensor dlogp = Tensor::empty({N, C}, dy.dtype());
           dispatch_floating(dy.dtype(), "nll_loss", [&](auto tag) {
             using T = decltype(tag);
             kernels::nll_loss_backward(targets.data<int64_t>(), dy.data<T>()[0], N, C, eps,
                                        dlogp.data<T>());
           });
           return {dlogp};
         });
  return loss;
}

// log_softmax without the op-tracing report, so cross_entropy reports nothing it calls.
Tensor log_softmax_unreported(const Tensor& x, int64_t dim) {
  const int64_t d = detail::wrap_dim("log_softmax", dim, x.dim());
  const int64_t outer = detail::numel_between(x.shape(), 0, d), C = x.size(d);
  const int64_t inner = detail::numel_between(x.shape(), d + 1, x.dim());
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), "log_softmax", [&](auto tag) {
    using T = decltype(tag);
    kernels::log_softmax_forward(x.data<T>(), y.data<T>(), outer, C, inner);
  });
  // Backward needs softmax = exp(y): save a detached alias of the output (capturing y itself
  // would make a cycle y -> grad_fn -> closure -> y).
  record(y, "log_softmax", {x}, [y = y.detach(), outer, C, inner](const Tensor& dy) -> Grads {
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch_floating(dy.dtype(), "log_softmax", [&](auto tag) {
      using T = decltype(tag);
      kernels::log_softmax_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), outer, C, inner);
    });
    return {dx};
  });
  return y;
}

// Training-mode dropout with 0 < p < 1.
Tensor dropout_masked(const Tensor& x, double p, Generator& gen) {
  Tensor mask = Tensor::empty(x.shape(), DType::kUInt8);
  const double scale = 1.0 / (1.0 - p);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    kernels::dropout_mask(mask.data<uint8_t>(), mask.numel(), p, gen);
    kernels::masked_scale(x.data<T>(), mask.data<uint8_t>(), T(scale), y.data<T>(), x.numel());
  });
  // The same mask and scale apply to the gradient.
  record(y, "dropout", {x}, [mask, scale](const Tensor& dy) -> Grads {
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch_floating(dy.dtype(), "dropout", [&](auto tag) {
      using T = decltype(tag);
      kernels::masked_scale(dy.data<T>(), mask.data<uint8_t>(), T(scale), dx.data<T>(), dy.numel());
    });
    return {dx};
  });
  return y;
}

}  // namespace

Tensor log_softmax(const Tensor& x, int64_t dim) {
  Tensor y = log_softmax_unreported(x, dim);
  if (op_tracing()) trace_op("log_softmax", {x}, {y}, {{"dim", dim}});
  return y;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing) {
  QAT_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ",
            shape_str(logits.shape()));
  QAT_CHECK(is_floating(logits.dtype()), "cross_entropy: logits must be float32 or float64, got ",
            dtype_name(logits.dtype()));
  QAT_CHECK(targets.dtype() == DType::kInt64,
            "cross_entropy: targets must be int64 class indices, got ",
            dtype_name(targets.dtype()));
  const int64_t N = logits.size(0), C = logits.size(1);
  QAT_CHECK(targets.shape() == Shape{N}, "cross_entropy: targets must be [N] = [", N, "], got ",
            shape_str(targets.shape()));
  QAT_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
            "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t* t = targets.data<int64_t>();
  for (int64_t n = 0; n < N; ++n) {
    QAT_CHECK(t[n] >= 0 && t[n] < C, "cross_entropy: target ", t[n], " at index ", n,
              " is out of range for ", C, " classes (ignore_index is not supported)");
  }
  return nll_loss(log_softmax_unreported(logits, 1), targets, label_smoothing);
}

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  QAT_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  Tensor y = training && p != 0.0 ? dropout_masked(x, p, gen) : x;
  if (op_tracing()) trace_op("dropout", {x}, {y}, {{"p", p}, {"training", training}});
  return y;
}

}  // namespace qat::ops
