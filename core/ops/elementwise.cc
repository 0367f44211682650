#include "core/ops/elementwise.h"

#include <algorithm>
#include <limits>

#include "core/autograd.h"
#include "core/kernels/elementwise.h"
#include "core/ops/op_helpers.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

using detail::dispatch_floating;
using kernels::BinaryOp;

// NumPy broadcasting: align at the right; each pair of sizes must be equal or contain a 1.
Shape broadcast_shapes(const char* api, const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 1; i <= out.size(); ++i) {  // i-th dim from the right
    const int64_t sa = i <= a.size() ? a[a.size() - i] : 1;
    const int64_t sb = i <= b.size() ? b[b.size() - i] : 1;
    QAT_CHECK(sa == sb || sa == 1 || sb == 1, api, ": shapes ", shape_str(a), " and ", shape_str(b),
              " cannot broadcast");
    out[out.size() - i] = sa == 1 ? sb : sa;
  }
  return out;
}

// y = a op b on the broadcast shape, unrecorded.
Tensor binary_values(const char* api, BinaryOp op, const Tensor& a, const Tensor& b) {
  QAT_CHECK(a.dtype() == b.dtype(), api, ": dtype mismatch, ", dtype_name(a.dtype()), " and ",
            dtype_name(b.dtype()));
  const Shape shape = broadcast_shapes(api, a.shape(), b.shape());
  Tensor y = Tensor::empty(shape, a.dtype());
  dispatch_floating(a.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    kernels::binary(op, a.data<T>(), a.shape(), b.data<T>(), b.shape(), y.data<T>(), shape);
  });
  return y;
}

// y = x op s, unrecorded.
Tensor scalar_values(const char* api, BinaryOp op, const Tensor& x, double s) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    kernels::binary_scalar(op, x.data<T>(), static_cast<T>(s), y.data<T>(), x.numel());
  });
  return y;
}

// The gradient of a broadcast operand: g summed over the dims where `shape` was repeated.
Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  Tensor out = Tensor::empty(shape, g.dtype());
  dispatch_floating(g.dtype(), "sum_to", [&](auto tag) {
    using T = decltype(tag);
    kernels::sum_to(g.data<T>(), g.shape(), out.data<T>(), shape);
  });
  return out;
}

// clamp / relu6: y = min(max(x, lo), hi); the gradient passes where lo <= x <= hi (inclusive) or
// lo < x < hi. Saves x: y alone cannot tell x == hi from x > hi.
Tensor clamp_op(const char* api, const Tensor& x, double lo, double hi, bool inclusive) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    kernels::clamp_forward(x.data<T>(), T(lo), T(hi), y.data<T>(), x.numel());
  });
  record(y, api, {x}, [api, x = x.detach(), lo, hi, inclusive](const Tensor& dy) -> Grads {
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch_floating(dy.dtype(), api, [&](auto tag) {
      using T = decltype(tag);
      kernels::clamp_backward(x.data<T>(), T(lo), T(hi), inclusive, dy.data<T>(), dx.data<T>(),
                              dy.numel());
    });
    return {dx};
  });
  return y;
}

// sum/mean over `dims` (empty: every dim, as torch.sum(x, dim=[])). The kernels see the output
// with the reduced dims kept as 1 ("kept"); without keepdim it is the same buffer minus those dims.
Tensor reduce(const char* api, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
              bool mean) {
  const int64_t rank = x.dim();
  std::vector<bool> reduced(rank, dims.empty());
  for (int64_t d : dims) {
    const int64_t k = detail::wrap_dim(api, d, rank);
    QAT_CHECK(!reduced[k], api, ": dim ", d, " appears more than once in the dim list");
    reduced[k] = true;
  }
  Shape kept = x.shape(), out_shape;
  int64_t count = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (reduced[d]) {
      count *= kept[d];
      kept[d] = 1;
    }
    if (!reduced[d] || keepdim) out_shape.push_back(kept[d]);
  }
  // mean of nothing is 0 * inf = NaN, as in PyTorch
  const double scale = mean ? 1.0 / static_cast<double>(count) : 1.0;
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_floating(x.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    kernels::sum_to(x.data<T>(), x.shape(), y.data<T>(), kept);
  });
  if (mean) y.mul_(scale);
  record(y, api, {x}, [api, x_shape = x.shape(), kept, scale](const Tensor& dy) -> Grads {
    // d(sum)/dx = 1 everywhere: dy repeated over the reduced dims (times 1/count for mean)
    const Tensor g = scale == 1.0 ? dy : mul(dy, scale);
    Tensor dx = Tensor::empty(x_shape, dy.dtype());
    dispatch_floating(dy.dtype(), api, [&](auto tag) {
      using T = decltype(tag);
      kernels::broadcast_to(g.data<T>(), kept, dx.data<T>(), x_shape);
    });
    return {dx};
  });
  if (op_tracing()) trace_op(api, {x}, {y}, {{"dims", dims}, {"keepdim", keepdim}});
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = binary_values("add", BinaryOp::kAdd, a, b);
  record(
      y, "add", {a, b},
      [a_shape = a.shape(), b_shape = b.shape(), need_a = a.requires_grad(),
       need_b = b.requires_grad()](const Tensor& dy) -> Grads {
        return {need_a ? sum_to(dy, a_shape) : Tensor(), need_b ? sum_to(dy, b_shape) : Tensor()};
      });
  if (op_tracing()) trace_op("add", {a, b}, {y});
  return y;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = binary_values("sub", BinaryOp::kSub, a, b);
  record(y, "sub", {a, b},
         [a_shape = a.shape(), b_shape = b.shape(), need_a = a.requires_grad(),
          need_b = b.requires_grad()](const Tensor& dy) -> Grads {
           return {need_a ? sum_to(dy, a_shape) : Tensor(),
                   need_b ? neg(sum_to(dy, b_shape)) : Tensor()};
         });
  if (op_tracing()) trace_op("sub", {a, b}, {y});
  return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = binary_values("mul", BinaryOp::kMul, a, b);
  record(y, "mul", {a, b},
         [a = a.detach(), b = b.detach(), need_a = a.requires_grad(),
          need_b = b.requires_grad()](const Tensor& dy) -> Grads {
           Grads grads(2);
           if (need_a) grads[0] = sum_to(mul(dy, b), a.shape());
           if (need_b) grads[1] = sum_to(mul(dy, a), b.shape());
           return grads;
         });
  if (op_tracing()) trace_op("mul", {a, b}, {y});
  return y;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = binary_values("div", BinaryOp::kDiv, a, b);
  record(y, "div", {a, b},
         [a = a.detach(), b = b.detach(), need_a = a.requires_grad(),
          need_b = b.requires_grad()](const Tensor& dy) -> Grads {
           // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -(1/b)(a/b)
           const Tensor dy_over_b = div(dy, b);
           Grads grads(2);
           if (need_a) grads[0] = sum_to(dy_over_b, a.shape());
           if (need_b) grads[1] = neg(sum_to(mul(dy_over_b, div(a, b)), b.shape()));
           return grads;
         });
  if (op_tracing()) trace_op("div", {a, b}, {y});
  return y;
}

Tensor add(const Tensor& a, double b) {
  Tensor y = scalar_values("add", BinaryOp::kAdd, a, b);
  record(y, "add", {a}, [](const Tensor& dy) -> Grads { return {dy}; });
  if (op_tracing()) trace_op("add", {a}, {y}, {{"other", b}});
  return y;
}

Tensor mul(const Tensor& a, double b) {
  Tensor y = scalar_values("mul", BinaryOp::kMul, a, b);
  record(y, "mul", {a}, [b](const Tensor& dy) -> Grads { return {mul(dy, b)}; });
  if (op_tracing()) trace_op("mul", {a}, {y}, {{"other", b}});
  return y;
}

Tensor neg(const Tensor& x) {
  Tensor y = scalar_values("neg", BinaryOp::kMul, x, -1.0);
  record(y, "neg", {x}, [](const Tensor& dy) -> Grads { return {neg(dy)}; });
  if (op_tracing()) trace_op("neg", {x}, {y});
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), "relu", [&](auto tag) {
    using T = decltype(tag);
    kernels::clamp_forward(x.data<T>(), T(0), std::numeric_limits<T>::infinity(), y.data<T>(),
                           x.numel());
  });
  // Saves the output, as PyTorch: y > 0 exactly where x > 0, and the next layer keeps y anyway.
  record(y, "relu", {x}, [y = y.detach()](const Tensor& dy) -> Grads {
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch_floating(dy.dtype(), "relu", [&](auto tag) {
      using T = decltype(tag);
      kernels::relu_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), dy.numel());
    });
    return {dx};
  });
  if (op_tracing()) trace_op("relu", {x}, {y});
  return y;
}

Tensor relu6(const Tensor& x) {
  Tensor y = clamp_op("relu6", x, 0.0, 6.0, /*inclusive=*/false);
  if (op_tracing()) trace_op("relu6", {x}, {y});
  return y;
}

Tensor clamp(const Tensor& x, double min, double max) {
  Tensor y = clamp_op("clamp", x, min, max, /*inclusive=*/true);
  if (op_tracing()) trace_op("clamp", {x}, {y}, {{"min", min}, {"max", max}});
  return y;
}

Tensor sum(const Tensor& x) { return reduce("sum", x, {}, false, /*mean=*/false); }

Tensor mean(const Tensor& x) { return reduce("mean", x, {}, false, /*mean=*/true); }

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce("sum", x, dims, keepdim, /*mean=*/false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce("mean", x, dims, keepdim, /*mean=*/true);
}

}  // namespace qat::ops
