#include "core/ops/fake_quant.h"

#include <cmath>
#include <optional>
#include <vector>

#include "core/autograd.h"
#include "core/kernels/elementwise.h"
#include "core/ops/op_helpers.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

using detail::dispatch_floating;

// The quantization grid of one call, checked and converted for the kernels: scale in x's dtype,
// zero point int32 (both fresh copies, safe to save for backward), x viewed as
// [outer, channels, inner] around the channel axis.
struct Grid {
  Tensor scale;       // [channels]
  Tensor zero_point;  // [channels]
  int64_t outer = 1, channels = 1, inner = 1;
};

Grid check_grid(const char* api, const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                std::optional<int64_t> axis, int64_t quant_min, int64_t quant_max) {
  QAT_CHECK(is_floating(x.dtype()), api, ": expected a float32 or float64 input, got ",
            dtype_name(x.dtype()));
  QAT_CHECK(quant_min <= quant_max, api, ": expected quant_min <= quant_max, got [", quant_min,
            ", ", quant_max, "]");
  QAT_CHECK(is_floating(scale.dtype()), api, ": expected a floating scale, got ",
            dtype_name(scale.dtype()));
  QAT_CHECK(!is_floating(zero_point.dtype()), api, ": expected an integer zero_point, got ",
            dtype_name(zero_point.dtype()));
  Grid grid;
  if (!axis) {
    QAT_CHECK(scale.numel() == 1 && zero_point.numel() == 1, api,
              ": expected one-element scale and zero_point, got ", shape_str(scale.shape()),
              " and ", shape_str(zero_point.shape()));
    grid.inner = x.numel();
  } else {
    const int64_t a = detail::wrap_dim(api, *axis, x.dim());
    grid.channels = x.size(a);
    const Shape expected{grid.channels};
    QAT_CHECK(scale.shape() == expected && zero_point.shape() == expected, api,
              ": expected scale and zero_point of shape ", shape_str(expected), " (size of dim ",
              *axis, " of the input ", shape_str(x.shape()), "), got ", shape_str(scale.shape()),
              " and ", shape_str(zero_point.shape()), " (HINT: did the observer see any data?)");
    grid.outer = detail::numel_between(x.shape(), 0, a);
    grid.inner = detail::numel_between(x.shape(), a + 1, x.dim());
  }
  const std::vector<double> scales = scale.to_vector<double>();
  const std::vector<int64_t> zero_points = zero_point.to_vector<int64_t>();
  for (size_t c = 0; c < scales.size(); ++c) {
    QAT_CHECK(std::isfinite(scales[c]) && scales[c] > 0, api,
              ": expected a positive finite scale, got scale[", c, "] = ", scales[c]);
    QAT_CHECK(quant_min <= zero_points[c] && zero_points[c] <= quant_max, api,
              ": expected zero_point in [quant_min, quant_max] = [", quant_min, ", ", quant_max,
              "], got zero_point[", c, "] = ", zero_points[c]);
  }
  grid.scale = scale.to(x.dtype()).clone().view({grid.channels});
  grid.zero_point = zero_point.to(DType::kInt32).clone().view({grid.channels});
  return grid;
}

// A fake-quant call's arguments for the op-tracing hook; rounding is the RoundingMode's value.
OpAttrs quant_attrs(std::optional<int64_t> axis, int64_t quant_min, int64_t quant_max,
                    RoundingMode rounding) {
  OpAttrs attrs;
  if (axis) attrs.set("axis", *axis);
  attrs.set("quant_min", quant_min);
  attrs.set("quant_max", quant_max);
  attrs.set("rounding", static_cast<int64_t>(rounding));
  return attrs;
}

// y = fake_quant(x) with the STE backward dx = dy * mask (mask written by the forward pass).
Tensor fake_quantize_ste(const char* api, const Tensor& x, const Tensor& scale,
                         const Tensor& zero_point, std::optional<int64_t> axis, int64_t quant_min,
                         int64_t quant_max, RoundingMode rounding) {
  const Grid grid = check_grid(api, x, scale, zero_point, axis, quant_min, quant_max);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  const bool recording = needs_record({x});
  Tensor mask = recording ? Tensor::empty(x.shape(), DType::kUInt8) : Tensor();
  int64_t outside = 0;
  dispatch_floating(x.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    outside = kernels::fake_quant_forward(rounding, x.data<T>(), grid.scale.data<T>(),
                                          grid.zero_point.data<int32_t>(), quant_min, quant_max,
                                          grid.outer, grid.channels, grid.inner, y.data<T>(),
                                          recording ? mask.data<uint8_t>() : nullptr);
  });
  if (recording && outside == 0) {
    // Every element inside the grid: dx = dy, no pass over memory (gradients are never written
    // in place, so handing dy on is safe).
    record(y, api, {x}, [](const Tensor& dy) -> Grads { return {dy}; });
  } else {
    record(y, api, {x}, [api, mask](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
      dispatch_floating(dy.dtype(), api, [&](auto tag) {
        using T = decltype(tag);
        kernels::masked_scale(dy.data<T>(), mask.data<uint8_t>(), T(1), dx.data<T>(), dy.numel());
      });
      return {dx};
    });
  }
  if (op_tracing()) {
    trace_op(api, {x, scale, zero_point}, {y}, quant_attrs(axis, quant_min, quant_max, rounding));
  }
  return y;
}

// The same forward; backward gives x the STE gradient and scale the LSQ gradient.
Tensor fake_quantize_lsq(const char* api, const Tensor& x, const Tensor& scale,
                         const Tensor& zero_point, std::optional<int64_t> axis, int64_t quant_min,
                         int64_t quant_max, double grad_factor, RoundingMode rounding) {
  QAT_CHECK(std::isfinite(grad_factor), api, ": expected a finite grad_factor, got ", grad_factor);
  const Grid grid = check_grid(api, x, scale, zero_point, axis, quant_min, quant_max);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    kernels::fake_quant_forward(rounding, x.data<T>(), grid.scale.data<T>(),
                                grid.zero_point.data<int32_t>(), quant_min, quant_max, grid.outer,
                                grid.channels, grid.inner, y.data<T>(), nullptr);
  });
  record(y, api, {x, scale},
         [api, x = x.detach(), grid, quant_min, quant_max, grad_factor, rounding,
          scale_shape = scale.shape(), scale_dtype = scale.dtype(), need_x = x.requires_grad(),
          need_scale = scale.requires_grad()](const Tensor& dy) -> Grads {
           Tensor dx = Tensor::empty(x.shape(), x.dtype());
           Tensor dscale = Tensor::empty({grid.channels}, x.dtype());
           dispatch_floating(x.dtype(), api, [&](auto tag) {
             using T = decltype(tag);
             kernels::fake_quant_lsq_backward(rounding, x.data<T>(), grid.scale.data<T>(),
                                              grid.zero_point.data<int32_t>(), quant_min, quant_max,
                                              grad_factor, grid.outer, grid.channels, grid.inner,
                                              dy.data<T>(), dx.data<T>(), dscale.data<T>());
           });
           return {need_x ? dx : Tensor(),
                   need_scale ? dscale.view(scale_shape).to(scale_dtype) : Tensor()};
         });
  if (op_tracing()) {
    OpAttrs attrs = quant_attrs(axis, quant_min, quant_max, rounding);
    attrs.set("grad_factor", grad_factor);
    trace_op(api, {x, scale, zero_point}, {y}, attrs);
  }
  return y;
}

}  // namespace

Tensor fake_quantize_per_tensor_affine(const Tensor& x, const Tensor& scale,
                                       const Tensor& zero_point, int64_t quant_min,
                                       int64_t quant_max, RoundingMode rounding) {
  return fake_quantize_ste("fake_quantize_per_tensor_affine", x, scale, zero_point, std::nullopt,
                           quant_min, quant_max, rounding);
}

Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale,
                                        const Tensor& zero_point, int64_t axis, int64_t quant_min,
                                        int64_t quant_max, RoundingMode rounding) {
  return fake_quantize_ste("fake_quantize_per_channel_affine", x, scale, zero_point, axis,
                           quant_min, quant_max, rounding);
}

Tensor fake_quantize_lsq_per_tensor(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                    int64_t quant_min, int64_t quant_max, double grad_factor,
                                    RoundingMode rounding) {
  return fake_quantize_lsq("fake_quantize_lsq_per_tensor", x, scale, zero_point, std::nullopt,
                           quant_min, quant_max, grad_factor, rounding);
}

Tensor fake_quantize_lsq_per_channel(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                     int64_t axis, int64_t quant_min, int64_t quant_max,
                                     double grad_factor, RoundingMode rounding) {
  return fake_quantize_lsq("fake_quantize_lsq_per_channel", x, scale, zero_point, axis, quant_min,
                           quant_max, grad_factor, rounding);
}

}  // namespace qat::ops
