#include "core/ops/conv.h"

#include <string>
#include <utility>

#include "core/autograd.h"
#include "core/kernels/conv.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

using kernels::Conv2dShape;

std::string pair_str(const std::array<int64_t, 2>& p) {
  return detail::str_cat("(", p[0], ", ", p[1], ")");
}

// Checks every precondition a caller can violate and returns the kernel sizes.
Conv2dShape conv2d_shape(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  QAT_CHECK(x.dim() == 4, "conv2d: input must be [N, C, H, W], got ", shape_str(x.shape()));
  QAT_CHECK(w.dim() == 4, "conv2d: weight must be [OC, C/groups, KH, KW], got ",
            shape_str(w.shape()));
  QAT_CHECK(x.dtype() == DType::kFloat32 || x.dtype() == DType::kFloat64,
            "conv2d: input must be float32 or float64, got ", dtype_name(x.dtype()));
  QAT_CHECK(w.dtype() == x.dtype(), "conv2d: weight must have the input's dtype ",
            dtype_name(x.dtype()), ", got ", dtype_name(w.dtype()));
  QAT_CHECK(p.stride[0] >= 1 && p.stride[1] >= 1, "conv2d: stride must be >= 1, got ",
            pair_str(p.stride));
  QAT_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0, "conv2d: padding must be >= 0, got ",
            pair_str(p.padding));
  QAT_CHECK(p.dilation[0] >= 1 && p.dilation[1] >= 1, "conv2d: dilation must be >= 1, got ",
            pair_str(p.dilation));
  QAT_CHECK(p.groups >= 1, "conv2d: groups must be >= 1, got ", p.groups);

  Conv2dShape s{};
  s.N = x.size(0), s.C = x.size(1), s.H = x.size(2), s.W = x.size(3);
  s.OC = w.size(0), s.KH = w.size(2), s.KW = w.size(3);
  s.SH = p.stride[0], s.SW = p.stride[1];
  s.PH = p.padding[0], s.PW = p.padding[1];
  s.DH = p.dilation[0], s.DW = p.dilation[1];
  s.G = p.groups;
  // Also rejects C not divisible by groups.
  QAT_CHECK(s.C == w.size(1) * s.G, "conv2d: input has ", s.C, " channels but weight expects ",
            w.size(1) * s.G, " (groups=", s.G, ")");
  QAT_CHECK(s.OC % s.G == 0, "conv2d: weight has ", s.OC, " output channels, which groups=", s.G,
            " does not divide");
  QAT_CHECK(x.numel() > 0 && w.numel() > 0, "conv2d: input and weight must be non-empty, got ",
            shape_str(x.shape()), " and ", shape_str(w.shape()));
  if (b.defined()) {
    QAT_CHECK(b.dim() == 1 && b.size(0) == s.OC, "conv2d: bias must be [", s.OC,
              "] (one per output channel), got ", shape_str(b.shape()));
    QAT_CHECK(b.dtype() == x.dtype(), "conv2d: bias must have the input's dtype ",
              dtype_name(x.dtype()), ", got ", dtype_name(b.dtype()));
  }
  s.OH = kernels::conv2d_output_size(s.H, s.KH, s.SH, s.PH, s.DH);
  s.OW = kernels::conv2d_output_size(s.W, s.KW, s.SW, s.PW, s.DW);
  QAT_CHECK(s.OH >= 1 && s.OW >= 1, "conv2d: output must be at least 1x1, got ", s.OH, "x", s.OW,
            " (input ", shape_str(x.shape()), ", kernel ", s.KH, "x", s.KW, ", padding ",
            pair_str(p.padding), ", dilation ", pair_str(p.dilation),
            "; HINT: the padded input is smaller than the dilated kernel)");
  return s;
}

// float32 runs oneDNN; float64 runs the reference loops (the gradcheck path).
Tensor forward(const Conv2dShape& s, const Tensor& x, const Tensor& w, const Tensor& b,
               bool for_training) {
  Tensor y = Tensor::empty({s.N, s.OC, s.OH, s.OW}, x.dtype());
  if (x.dtype() == DType::kFloat32) {
    kernels::conv2d_forward(s, x.data<float>(), w.data<float>(),
                            b.defined() ? b.data<float>() : nullptr, y.data<float>(), for_training);
  } else {
    kernels::conv2d_forward_ref(s, x.data<double>(), w.data<double>(),
                                b.defined() ? b.data<double>() : nullptr, y.data<double>());
  }
  return y;
}

Tensor backward_data(const Conv2dShape& s, const Tensor& dy, const Tensor& w) {
  Tensor dx = Tensor::empty({s.N, s.C, s.H, s.W}, w.dtype());
  if (w.dtype() == DType::kFloat32) {
    kernels::conv2d_backward_data(s, dy.data<float>(), w.data<float>(), dx.data<float>());
  } else {
    kernels::conv2d_backward_data_ref(s, dy.data<double>(), w.data<double>(), dx.data<double>());
  }
  return dx;
}

// {dw, db}; db is undefined unless `with_bias`.
std::pair<Tensor, Tensor> backward_weight(const Conv2dShape& s, const Tensor& x, const Tensor& dy,
                                          bool with_bias) {
  Tensor dw = Tensor::empty({s.OC, s.C / s.G, s.KH, s.KW}, x.dtype());
  Tensor db = with_bias ? Tensor::empty({s.OC}, x.dtype()) : Tensor();
  if (x.dtype() == DType::kFloat32) {
    kernels::conv2d_backward_weight(s, x.data<float>(), dy.data<float>(), dw.data<float>(),
                                    with_bias ? db.data<float>() : nullptr);
  } else {
    kernels::conv2d_backward_weight_ref(s, x.data<double>(), dy.data<double>(), dw.data<double>(),
                                        with_bias ? db.data<double>() : nullptr);
  }
  return {dw, db};
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& params) {
  const Conv2dShape s = conv2d_shape(x, w, b, params);
  Tensor y = forward(s, x, w, b, needs_record({x, w, b}));

  // Saves detached aliases (a saved input must not own its producer's graph) and decides at
  // record time which gradients are needed, as PyTorch does.
  const bool need_dx = x.requires_grad(), need_dw = w.requires_grad();
  const bool need_db = b.defined() && b.requires_grad();
  record(y, "conv2d", {x, w, b},
         [x = x.detach(), w = w.detach(), s, need_dx, need_dw, need_db](const Tensor& dy) -> Grads {
           Tensor dx = need_dx ? backward_data(s, dy, w) : Tensor();
           // db comes with the weight kernel; a frozen weight with a trainable bias (rare)
           // still pays for dw, which is then dropped.
           auto [dw, db] = need_dw || need_db ? backward_weight(s, x, dy, need_db)
                                              : std::pair<Tensor, Tensor>();
           if (!need_dw) dw = Tensor();
           return {dx, dw, db};
         });
  if (op_tracing()) {
    trace_op("conv2d", {x, w, b}, {y},
             {{"stride", params.stride},
              {"padding", params.padding},
              {"dilation", params.dilation},
              {"groups", params.groups}});
  }
  return y;
}

}  // namespace qat::ops
