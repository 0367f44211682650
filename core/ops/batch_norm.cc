#include "core/ops/batch_norm.h"

#include <type_traits>

#include "core/autograd.h"
#include "core/kernels/batch_norm.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

// float32 runs the OpenMP kernels, float64 (gradcheck) the reference loops.
template <class T>
void stats(int64_t N, int64_t C, int64_t S, const T* x, T* mean, T* var) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::batch_norm_stats(N, C, S, x, mean, var);
  } else {
    kernels::batch_norm_stats_ref(N, C, S, x, mean, var);
  }
}

template <class T>
void forward(int64_t N, int64_t C, int64_t S, const T* x, const T* mean, const T* var,
             const T* gamma, const T* beta, double eps, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::batch_norm_forward(N, C, S, x, mean, var, gamma, beta, eps, y);
  } else {
    kernels::batch_norm_forward_ref(N, C, S, x, mean, var, gamma, beta, eps, y);
  }
}

template <class T>
void backward(int64_t N, int64_t C, int64_t S, const T* dy, const T* x, const T* mean, const T* var,
              const T* gamma, double eps, bool training, T* dx, T* dgamma, T* dbeta) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::batch_norm_backward(N, C, S, dy, x, mean, var, gamma, eps, training, dx, dgamma,
                                 dbeta);
  } else {
    kernels::batch_norm_backward_ref(N, C, S, dy, x, mean, var, gamma, eps, training, dx, dgamma,
                                     dbeta);
  }
}

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
T* mutable_data_or_null(Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

Tensor detach_or_undefined(const Tensor& t) { return t.defined() ? t.detach() : Tensor(); }

// S of the kernels' [N, C, S] view: H * W, or 1 for [N, C] input.
int64_t spatial_size(const Tensor& x) { return x.dim() == 4 ? x.size(2) * x.size(3) : 1; }

// running_mean, running_var, weight and bias are [C] of the input's dtype when defined.
void check_per_channel(const Tensor& t, const char* name, const Tensor& x) {
  if (!t.defined()) return;
  QAT_CHECK(t.dim() == 1, "batch_norm: expected ", name, " of shape [C], got ",
            shape_str(t.shape()));
  QAT_CHECK(t.numel() == x.size(1), "batch_norm: ", name, " has ", t.numel(),
            " elements, input has ", x.size(1), " channels");
  QAT_CHECK(t.dtype() == x.dtype(), "batch_norm: ", name, " is ", dtype_name(t.dtype()),
            ", input is ", dtype_name(x.dtype()));
}

void check_inputs(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  QAT_CHECK(x.defined(), "batch_norm: input is undefined");
  QAT_CHECK(x.dim() == 2 || x.dim() == 4, "batch_norm: expected input [N, C] or [N, C, H, W], got ",
            shape_str(x.shape()));
  QAT_CHECK(x.dtype() == DType::kFloat32 || x.dtype() == DType::kFloat64,
            "batch_norm: expected a float32 or float64 input, got ", dtype_name(x.dtype()));
  check_per_channel(running_mean, "running_mean", x);
  check_per_channel(running_var, "running_var", x);
  check_per_channel(weight, "weight", x);
  check_per_channel(bias, "bias", x);
  QAT_CHECK(running_mean.defined() == running_var.defined(),
            "batch_norm: running_mean and running_var must be both defined or both undefined");
  QAT_CHECK(training || running_mean.defined(),
            "batch_norm: eval mode needs running_mean and running_var (HINT: a BatchNorm with "
            "track_running_stats=false normalizes with batch statistics; pass training=true)");
  QAT_CHECK(!training || x.size(0) * spatial_size(x) > 1,
            "batch_norm: expected more than 1 value per channel when training, got input ",
            shape_str(x.shape()));
  QAT_CHECK(eps >= 0, "batch_norm: expected eps >= 0, got ", eps);
  QAT_CHECK(momentum >= 0 && momentum <= 1, "batch_norm: expected momentum in [0, 1], got ",
            momentum);
}

// In place, so handles held by modules and optimizers stay valid. PyTorch's rule:
// r = (1 - momentum) * r + momentum * stat, where running_var takes the unbiased batch variance
// var * M / (M - 1) (M values per channel) while normalization used the biased one.
void update_running_stats(Tensor running_mean, Tensor running_var, const Tensor& mean,
                          const Tensor& var, double momentum, int64_t M) {
  running_mean.mul_(1 - momentum).add_(mean, momentum);
  running_var.mul_(1 - momentum).add_(var, momentum * M / (M - 1));
}

template <class T>
Tensor batch_norm_impl(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight, const Tensor& bias, bool training, double momentum,
                       double eps) {
  const int64_t N = x.size(0), C = x.size(1), S = spatial_size(x);
  Tensor mean, var;  // [C]: the statistics x is normalized with, saved for backward
  if (training) {
    mean = Tensor::empty({C}, x.dtype());
    var = Tensor::empty({C}, x.dtype());
    stats<T>(N, C, S, x.data<T>(), mean.data<T>(), var.data<T>());
    if (running_mean.defined()) {
      update_running_stats(running_mean, running_var, mean, var, momentum, N * S);
    }
  } else {
    // Copies: a training-mode forward may update the running stats before this backward runs.
    mean = running_mean.clone();
    var = running_var.clone();
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  forward<T>(N, C, S, x.data<T>(), mean.data<T>(), var.data<T>(), data_or_null<T>(weight),
             data_or_null<T>(bias), eps, y.data<T>());

  const bool need_dx = x.requires_grad();
  const bool need_dweight = weight.defined() && weight.requires_grad();
  const bool need_dbias = bias.defined() && bias.requires_grad();
  record(y, "batch_norm", {x, weight, bias},
         [x = x.detach(), weight = detach_or_undefined(weight), mean, var, N, C, S, eps, training,
          need_dx, need_dweight, need_dbias](const Tensor& dy) -> Grads {
           Tensor dx = need_dx ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
           Tensor dweight = need_dweight ? Tensor::empty({C}, x.dtype()) : Tensor();
           Tensor dbias = need_dbias ? Tensor::empty({C}, x.dtype()) : Tensor();
           backward<T>(N, C, S, dy.data<T>(), x.data<T>(), mean.data<T>(), var.data<T>(),
                       data_or_null<T>(weight), eps, training, mutable_data_or_null<T>(dx),
                       mutable_data_or_null<T>(dweight), mutable_data_or_null<T>(dbias));
           return {dx, dweight, dbias};
         });
  return y;
}

// ---- batch_norm_scaled_input

template <class T>
Tensor batch_norm_scaled_input_impl(const Tensor& x, const Tensor& a, const Tensor& b,
                                    const Tensor& running_mean, const Tensor& running_var,
                                    const Tensor& weight, const Tensor& bias, double momentum,
                                    double eps) {
  const int64_t N = x.size(0), C = x.size(1), S = spatial_size(x);
  Tensor mean = Tensor::empty({C}, x.dtype()), var = Tensor::empty({C}, x.dtype());  // of x
  stats<T>(N, C, S, x.data<T>(), mean.data<T>(), var.data<T>());
  if (running_mean.defined()) {
    Tensor mean_z = Tensor::empty({C}, x.dtype()), var_z = Tensor::empty({C}, x.dtype());
    const T* pa = a.data<T>();
    const T* pb = data_or_null<T>(b);
    for (int64_t c = 0; c < C; ++c) {
      mean_z.data<T>()[c] = pa[c] * mean.data<T>()[c] + (pb ? pb[c] : T(0));
      var_z.data<T>()[c] = pa[c] * pa[c] * var.data<T>()[c];
    }
    update_running_stats(running_mean, running_var, mean_z, var_z, momentum, N * S);
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if constexpr (std::is_same_v<T, float>) {
    kernels::batch_norm_scaled_forward(N, C, S, x.data<T>(), mean.data<T>(), var.data<T>(),
                                       a.data<T>(), data_or_null<T>(weight), data_or_null<T>(bias),
                                       eps, y.data<T>());
  } else {
    kernels::batch_norm_scaled_forward_ref(N, C, S, x.data<T>(), a.data<T>(), data_or_null<T>(b),
                                           data_or_null<T>(weight), data_or_null<T>(bias), eps,
                                           y.data<T>());
  }

  const bool need_dx = x.requires_grad();
  const bool need_da = a.requires_grad();
  const bool need_db = b.defined() && b.requires_grad();
  const bool need_dweight = weight.defined() && weight.requires_grad();
  const bool need_dbias = bias.defined() && bias.requires_grad();
  record(y, "batch_norm_scaled_input", {x, a, b, weight, bias},
         [x = x.detach(), a = a.detach(), b = detach_or_undefined(b),
          weight = detach_or_undefined(weight), mean, var, N, C, S, eps, need_dx, need_da, need_db,
          need_dweight, need_dbias](const Tensor& dy) -> Grads {
           auto grad_or_undefined = [&](bool need, const Shape& shape) {
             return need ? Tensor::empty(shape, x.dtype()) : Tensor();
           };
           Tensor dx = grad_or_undefined(need_dx, x.shape());
           Tensor da = grad_or_undefined(need_da, {C});
           Tensor db = grad_or_undefined(need_db, {C});
           Tensor dweight = grad_or_undefined(need_dweight, {C});
           Tensor dbias = grad_or_undefined(need_dbias, {C});
           if constexpr (std::is_same_v<T, float>) {
             kernels::batch_norm_scaled_backward(
                 N, C, S, dy.data<T>(), x.data<T>(), mean.data<T>(), var.data<T>(), a.data<T>(),
                 data_or_null<T>(weight), eps, mutable_data_or_null<T>(dx),
                 mutable_data_or_null<T>(da), mutable_data_or_null<T>(db),
                 mutable_data_or_null<T>(dweight), mutable_data_or_null<T>(dbias));
           } else {
             kernels::batch_norm_scaled_backward_ref(
                 N, C, S, dy.data<T>(), x.data<T>(), a.data<T>(), data_or_null<T>(b),
                 data_or_null<T>(weight), eps, mutable_data_or_null<T>(dx),
                 mutable_data_or_null<T>(da), mutable_data_or_null<T>(db),
                 mutable_data_or_null<T>(dweight), mutable_data_or_null<T>(dbias));
           }
           return {dx, da, db, dweight, dbias};
         });
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  check_inputs(x, running_mean, running_var, weight, bias, training, momentum, eps);
  Tensor y = x.dtype() == DType::kFloat32
                 ? batch_norm_impl<float>(x, running_mean, running_var, weight, bias, training,
                                          momentum, eps)
                 : batch_norm_impl<double>(x, running_mean, running_var, weight, bias, training,
                                           momentum, eps);
  if (op_tracing()) {
    trace_op("batch_norm", {x, running_mean, running_var, weight, bias}, {y},
             {{"training", training}, {"momentum", momentum}, {"eps", eps}});
  }
  return y;
}

Tensor batch_norm_scaled_input(const Tensor& x, const Tensor& input_scale,
                               const Tensor& input_shift, const Tensor& running_mean,
                               const Tensor& running_var, const Tensor& weight, const Tensor& bias,
                               double momentum, double eps) {
  check_inputs(x, running_mean, running_var, weight, bias, /*training=*/true, momentum, eps);
  QAT_CHECK(input_scale.defined(), "batch_norm_scaled_input: input_scale is undefined");
  check_per_channel(input_scale, "input_scale", x);
  check_per_channel(input_shift, "input_shift", x);
  Tensor y = x.dtype() == DType::kFloat32
                 ? batch_norm_scaled_input_impl<float>(x, input_scale, input_shift, running_mean,
                                                       running_var, weight, bias, momentum, eps)
                 : batch_norm_scaled_input_impl<double>(x, input_scale, input_shift, running_mean,
                                                        running_var, weight, bias, momentum, eps);
  if (op_tracing()) {
    trace_op("batch_norm_scaled_input",
             {x, input_scale, input_shift, running_mean, running_var, weight, bias}, {y},
             {{"momentum", momentum}, {"eps", eps}});
  }
  return y;
}

}  // namespace qat::ops
