#include "core/ops/linear.h"

#include <type_traits>

#include "core/autograd.h"
#include "core/kernels/linear.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

// float32 runs the Eigen kernels, float64 (gradcheck) the reference loops.
template <class T>
void forward(int64_t N, int64_t K, int64_t M, const T* x, const T* w, const T* b, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::linear_forward(N, K, M, x, w, b, y);
  } else {
    kernels::linear_forward_ref(N, K, M, x, w, b, y);
  }
}

template <class T>
void backward_data(int64_t N, int64_t K, int64_t M, const T* dy, const T* w, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::linear_backward_data(N, K, M, dy, w, dx);
  } else {
    kernels::linear_backward_data_ref(N, K, M, dy, w, dx);
  }
}

template <class T>
void backward_weight(int64_t N, int64_t K, int64_t M, const T* dy, const T* x, T* dw) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::linear_backward_weight(N, K, M, dy, x, dw);
  } else {
    kernels::linear_backward_weight_ref(N, K, M, dy, x, dw);
  }
}

template <class T>
void backward_bias(int64_t N, int64_t M, const T* dy, T* db) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::linear_backward_bias(N, M, dy, db);
  } else {
    kernels::linear_backward_bias_ref(N, M, dy, db);
  }
}

void check_inputs(const Tensor& x, const Tensor& w, const Tensor& b) {
  QAT_CHECK(x.defined() && w.defined(), "linear: input and weight must be defined");
  QAT_CHECK(x.dim() == 2, "linear: expected input [N, K], got ", shape_str(x.shape()));
  QAT_CHECK(w.dim() == 2, "linear: expected weight [M, K], got ", shape_str(w.shape()));
  QAT_CHECK(w.size(1) == x.size(1), "linear: input ", shape_str(x.shape()), " has ", x.size(1),
            " features, weight ", shape_str(w.shape()), " expects ", w.size(1));
  QAT_CHECK(x.dtype() == DType::kFloat32 || x.dtype() == DType::kFloat64,
            "linear: expected a float32 or float64 input, got ", dtype_name(x.dtype()));
  QAT_CHECK(w.dtype() == x.dtype(), "linear: weight is ", dtype_name(w.dtype()), ", input is ",
            dtype_name(x.dtype()));
  if (!b.defined()) return;
  QAT_CHECK(b.dim() == 1, "linear: expected bias [M], got ", shape_str(b.shape()));
  QAT_CHECK(b.size(0) == w.size(0), "linear: bias has ", b.size(0), " elements, weight ",
            shape_str(w.shape()), " has ", w.size(0), " outputs");
  QAT_CHECK(b.dtype() == x.dtype(), "linear: bias is ", dtype_name(b.dtype()), ", input is ",
            dtype_name(x.dtype()));
}

template <class T>
Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t N = x.size(0), K = x.size(1), M = w.size(0);
  Tensor y = Tensor::empty({N, M}, x.dtype());
  forward<T>(N, K, M, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr, y.data<T>());

  const bool need_dx = x.requires_grad();
  const bool need_dw = w.requires_grad();
  const bool need_db = b.defined() && b.requires_grad();
  // dx needs only w and dw only x: save just what the requested gradients read.
  record(y, "linear", {x, w, b},
         [x = need_dw ? x.detach() : Tensor(), w = need_dx ? w.detach() : Tensor(), N, K, M,
          need_dx, need_dw, need_db](const Tensor& dy) -> Grads {
           Tensor dx, dw, db;
           if (need_dx) {
             dx = Tensor::empty({N, K}, dy.dtype());
             backward_data<T>(N, K, M, dy.data<T>(), w.data<T>(), dx.data<T>());
           }
           if (need_dw) {
             dw = Tensor::empty({M, K}, dy.dtype());
             backward_weight<T>(N, K, M, dy.data<T>(), x.data<T>(), dw.data<T>());
           }
           if (need_db) {
             db = Tensor::empty({M}, dy.dtype());
             backward_bias<T>(N, M, dy.data<T>(), db.data<T>());
           }
           return {dx, dw, db};
         });
  return y;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check_inputs(x, w, b);
  Tensor y =
      x.dtype() == DType::kFloat32 ? linear_impl<float>(x, w, b) : linear_impl<double>(x, w, b);
  if (op_tracing()) trace_op("linear", {x, w, b}, {y});
  return y;
}

}  // namespace qat::ops
