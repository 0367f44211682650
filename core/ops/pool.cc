#include "core/ops/pool.h"

#include <memory>
#include <string>

#include "core/autograd.h"
#include "core/kernels/pool.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

std::string pair_str(std::array<int64_t, 2> v) { return shape_str({v[0], v[1]}); }

// What every pooling op needs of x: [N, C, H, W] floating point, non-empty past the batch
// (PyTorch allows N = 0).
void check_input(const char* api, const Tensor& x) {
  QAT_CHECK(x.dim() == 4, api, ": expected a 4-d input [N, C, H, W], got ", shape_str(x.shape()));
  QAT_CHECK(x.dtype() == DType::kFloat32 || x.dtype() == DType::kFloat64, api,
            ": expected a float32 or float64 input, got ", dtype_name(x.dtype()));
  QAT_CHECK(x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0, api,
            ": expected non-zero C, H and W, got input ", shape_str(x.shape()));
}

// Checks the window arguments as PyTorch's pool2d_shape_check does and returns the geometry.
kernels::Pool2dDims pool_dims(const char* api, const Tensor& x, std::array<int64_t, 2> kernel,
                              std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                              std::array<int64_t, 2> dilation, bool ceil_mode) {
  check_input(api, x);
  if (stride[0] == 0 && stride[1] == 0) stride = kernel;  // PyTorch's stride=None
  QAT_CHECK(kernel[0] > 0 && kernel[1] > 0, api, ": expected kernel > 0, got ", pair_str(kernel));
  QAT_CHECK(stride[0] > 0 && stride[1] > 0, api, ": expected stride > 0, got ", pair_str(stride));
  QAT_CHECK(padding[0] >= 0 && padding[1] >= 0, api, ": expected padding >= 0, got ",
            pair_str(padding));
  QAT_CHECK(dilation[0] > 0 && dilation[1] > 0, api, ": expected dilation > 0, got ",
            pair_str(dilation));
  QAT_CHECK(padding[0] <= kernel[0] / 2 && padding[1] <= kernel[1] / 2, api,
            ": expected padding at most half the kernel, got padding ", pair_str(padding),
            " for kernel ", pair_str(kernel));
  kernels::Pool2dDims d;
  d.N = x.size(0), d.C = x.size(1), d.H = x.size(2), d.W = x.size(3);
  d.KH = kernel[0], d.KW = kernel[1];
  d.SH = stride[0], d.SW = stride[1];
  d.PH = padding[0], d.PW = padding[1];
  d.DH = dilation[0], d.DW = dilation[1];
  d.OH = kernels::pool2d_output_size(d.H, d.KH, d.SH, d.PH, d.DH, ceil_mode);
  d.OW = kernels::pool2d_output_size(d.W, d.KW, d.SW, d.PW, d.DW, ceil_mode);
  QAT_CHECK(d.OH >= 1 && d.OW >= 1, api, ": output size ", d.OH, "x", d.OW,
            " is too small for input ", shape_str(x.shape()), " with kernel ", pair_str(kernel),
            ", stride ", pair_str(stride), ", padding ", pair_str(padding), ", dilation ",
            pair_str(dilation));
  return d;
}

// The window arguments of a pool call as pool_dims resolved them (stride {0, 0} became the
// kernel), for the op-tracing hook.
OpAttrs window_attrs(const kernels::Pool2dDims& d) {
  return {{"kernel", std::vector<int64_t>{d.KH, d.KW}},
          {"stride", std::vector<int64_t>{d.SH, d.SW}},
          {"padding", std::vector<int64_t>{d.PH, d.PW}}};
}

}  // namespace

Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, bool ceil_mode) {
  const kernels::Pool2dDims d =
      pool_dims("max_pool2d", x, kernel, stride, padding, dilation, ceil_mode);
  Tensor y = Tensor::empty({d.N, d.C, d.OH, d.OW}, x.dtype());
  if (x.dtype() == DType::kFloat64) {
    kernels::max_pool2d_forward_ref(x.data<double>(), y.data<double>(), d);
    record(y, "max_pool2d", {x}, [x, d](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty(x.shape(), DType::kFloat64);
      kernels::max_pool2d_backward_ref(x.data<double>(), dy.data<double>(), dx.data<double>(), d);
      return {dx};
    });
  } else {
    // The workspace (where each max came from) is kept only when a backward can follow.
    std::shared_ptr<kernels::MaxPool2dWorkspace> ws;
    if (needs_record({x})) ws = std::make_shared<kernels::MaxPool2dWorkspace>();
    kernels::max_pool2d_forward(x.data<float>(), y.data<float>(), d, ws.get());
    record(y, "max_pool2d", {x}, [ws, d](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty({d.N, d.C, d.H, d.W});
      kernels::max_pool2d_backward(dy.data<float>(), dx.data<float>(), d, *ws);
      return {dx};
    });
  }
  if (op_tracing()) {
    OpAttrs attrs = window_attrs(d);
    attrs.set("dilation", std::vector<int64_t>{d.DH, d.DW});
    attrs.set("ceil_mode", ceil_mode);
    trace_op("max_pool2d", {x}, {y}, attrs);
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding, bool ceil_mode, bool count_include_pad) {
  const kernels::Pool2dDims d =
      pool_dims("avg_pool2d", x, kernel, stride, padding, {1, 1}, ceil_mode);
  Tensor y = Tensor::empty({d.N, d.C, d.OH, d.OW}, x.dtype());
  if (x.dtype() == DType::kFloat64) {
    kernels::avg_pool2d_forward_ref(x.data<double>(), y.data<double>(), d, count_include_pad);
    record(y, "avg_pool2d", {x}, [d, count_include_pad](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty({d.N, d.C, d.H, d.W}, DType::kFloat64);
      kernels::avg_pool2d_backward_ref(dy.data<double>(), dx.data<double>(), d, count_include_pad);
      return {dx};
    });
  } else {
    kernels::avg_pool2d_forward(x.data<float>(), y.data<float>(), d, count_include_pad);
    record(y, "avg_pool2d", {x}, [d, count_include_pad](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty({d.N, d.C, d.H, d.W});
      kernels::avg_pool2d_backward(dy.data<float>(), dx.data<float>(), d, count_include_pad);
      return {dx};
    });
  }
  if (op_tracing()) {
    OpAttrs attrs = window_attrs(d);
    attrs.set("ceil_mode", ceil_mode);
    attrs.set("count_include_pad", count_include_pad);
    trace_op("avg_pool2d", {x}, {y}, attrs);
  }
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  check_input("adaptive_avg_pool2d", x);
  QAT_CHECK(output_size[0] > 0 && output_size[1] > 0,
            "adaptive_avg_pool2d: expected output_size > 0, got ", pair_str(output_size));
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = output_size[0], OW = output_size[1];
  Tensor y = Tensor::empty({N, C, OH, OW}, x.dtype());
  if (x.dtype() == DType::kFloat64) {
    kernels::adaptive_avg_pool2d_forward_ref(x.data<double>(), y.data<double>(), N, C, H, W, OH,
                                             OW);
    record(y, "adaptive_avg_pool2d", {x}, [N, C, H, W, OH, OW](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty({N, C, H, W}, DType::kFloat64);
      kernels::adaptive_avg_pool2d_backward_ref(dy.data<double>(), dx.data<double>(), N, C, H, W,
                                                OH, OW);
      return {dx};
    });
  } else {
    kernels::adaptive_avg_pool2d_forward(x.data<float>(), y.data<float>(), N, C, H, W, OH, OW);
    record(y, "adaptive_avg_pool2d", {x}, [N, C, H, W, OH, OW](const Tensor& dy) -> Grads {
      Tensor dx = Tensor::empty({N, C, H, W});
      kernels::adaptive_avg_pool2d_backward(dy.data<float>(), dx.data<float>(), N, C, H, W, OH, OW);
      return {dx};
    });
  }
  if (op_tracing()) trace_op("adaptive_avg_pool2d", {x}, {y}, {{"output_size", output_size}});
  return y;
}

}  // namespace qat::ops
