#include "graph/int_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels/conv.h"
#include "core/kernels/mlas_order_ref.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "graph/executor.h"

namespace qat::graph {
namespace {

using Tensors = std::vector<Tensor>;

// QuantizeLinear then DequantizeLinear (ONNX opset 13): rint(x / s) + zp, saturated to
// [quant_min, quant_max], minus zp, times s; `rounding` replaces rint(x / s) when set
// (SimulateOptions::rounding).
Tensor quantize_dequantize(const Tensor& x, quant::QParams qparams,
                           std::optional<RoundingMode> rounding) {
  qparams.rounding = rounding.value_or(RoundingMode::kHalfEvenDiv);
  return quant::fake_quantize(x, qparams);
}

Tensor apply_activation(const Tensor& x, quant::FusedActivation activation) {
  switch (activation) {
    case quant::FusedActivation::kNone:
      return x;
    case quant::FusedActivation::kReLU:
      return ops::relu(x);
    case quant::FusedActivation::kReLU6:
      return ops::relu6(x);
  }
  return x;
}

ops::Conv2dParams conv_params(const IntNode& node) {
  ops::Conv2dParams params;
  params.stride = pair_attr(node.attrs, "stride");
  params.padding = pair_attr(node.attrs, "padding");
  params.dilation = pair_attr(node.attrs, "dilation");
  params.groups = node.attrs.get_int("groups");
  return params;
}

// conv2d(x, w) + b summed in ONNX Runtime's order (kernels/mlas_order_ref.h), float32 NCHW.
Tensor conv2d_onnxruntime(const IntNode& node, const Tensor& x, const Tensor& w, const Tensor& b) {
  const ops::Conv2dParams p = conv_params(node);
  QAT_CHECK(x.dim() == 4 && x.dtype() == DType::kFloat32,
            "conv2d: expected a float32 NCHW input, got ", shape_str(x.shape()));
  kernels::Conv2dShape s{x.size(0),    x.size(1),     x.size(2),     x.size(3),   w.size(0),
                         w.size(2),    w.size(3),     p.stride[0],   p.stride[1], p.padding[0],
                         p.padding[1], p.dilation[0], p.dilation[1], p.groups};
  s.OH = kernels::conv2d_output_size(s.H, s.KH, s.SH, s.PH, s.DH);
  s.OW = kernels::conv2d_output_size(s.W, s.KW, s.SW, s.PW, s.DW);
  QAT_CHECK(s.C == w.size(1) * s.G && s.OH > 0 && s.OW > 0, "conv2d: input ", shape_str(x.shape()),
            " does not fit weight ", shape_str(w.shape()), " with ", s.G, " groups");
  Tensor y = Tensor::empty({s.N, s.OC, s.OH, s.OW});
  kernels::conv2d_forward_mlas_order(s, x.data<float>(), w.data<float>(),
                                     b.defined() ? b.data<float>() : nullptr, y.data<float>());
  return y;
}

// ONNX Gemm(x, w, b, transB = 1) summed in ONNX Runtime's order, float32 [N, K] -> [N, M].
Tensor linear_onnxruntime(const Tensor& x, const Tensor& w, const Tensor& b) {
  QAT_CHECK(x.dim() == 2 && x.dtype() == DType::kFloat32 && x.size(1) == w.size(1),
            "linear: expected a float32 [N, ", w.size(1), "] input, got ", shape_str(x.shape()));
  Tensor y = Tensor::empty({x.size(0), w.size(0)});
  kernels::gemm_forward_mlas_order(x.size(0), x.size(1), w.size(0), x.data<float>(),
                                   w.data<float>(), b.defined() ? b.data<float>() : nullptr,
                                   y.data<float>());
  return y;
}

// A conv2d / linear node on its (dequantized) input, TensorRT's way: float32 on the
// dequantized int8 weight plus the float bias, summed as `accumulation` says.
Tensor run_layer(const IntNode& node, const Tensor& x, const SimulateOptions& options) {
  const IntLayer& layer = *node.layer;
  const bool ort = options.accumulation == Accumulation::kOnnxRuntime;
  Tensor y;
  if (node.op == "conv2d") {
    y = ort ? conv2d_onnxruntime(node, x, layer.dequantized_weight(), layer.bias)
            : ops::conv2d(x, layer.dequantized_weight(), layer.bias, conv_params(node));
  } else {
    y = ort ? linear_onnxruntime(x, layer.dequantized_weight(), layer.bias)
            : ops::linear(x, layer.dequantized_weight(), layer.bias);
  }
  y = apply_activation(y, layer.activation);
  return layer.output ? quantize_dequantize(y, *layer.output, options.rounding) : y;
}

// The averaging reductions whose float32 order ORT fixes too, for Accumulation::kOnnxRuntime:
// adaptive_avg_pool2d to 1x1 (GlobalAveragePool) and mean over the trailing axes of an NCHW
// tensor (ReduceMean over H, W). Undefined for any other node: it runs as run_function().
Tensor run_reduction_onnxruntime(const IntNode& node, const Tensor& x) {
  if (x.dim() != 4 || x.dtype() != DType::kFloat32) return Tensor();
  const int64_t planes = x.size(0) * x.size(1), size = x.size(2) * x.size(3);
  if (node.op == "adaptive_avg_pool2d" &&
      pair_attr(node.attrs, "output_size") == std::array<int64_t, 2>{1, 1}) {
    Tensor y = Tensor::empty({x.size(0), x.size(1), 1, 1});
    kernels::global_avg_pool_mlas_order(planes, size, x.data<float>(), y.data<float>());
    return y;
  }
  if (node.op == "mean") {
    std::vector<int64_t> dims = node.attrs.get_ints("dims");
    for (int64_t& d : dims) d = d < 0 ? d + 4 : d;
    std::sort(dims.begin(), dims.end());
    if (dims != std::vector<int64_t>{2, 3}) return Tensor();
    Tensor y = node.attrs.get_bool("keepdim") ? Tensor::empty({x.size(0), x.size(1), 1, 1})
                                              : Tensor::empty({x.size(0), x.size(1)});
    kernels::reduce_mean_rows_ort_order(planes, size, x.data<float>(), y.data<float>());
    return y;
  }
  return Tensor();
}

Tensors run_tensorrt_node(const IntNode& node, const Tensors& in, const Tensor& input,
                          const SimulateOptions& options) {
  if (node.op == "input") return {input};
  if (node.op == "output") return {};
  if (node.op == "quantize") {
    return {quantize_dequantize(in.at(0), *node.qparams, options.rounding)};
  }
  if (node.layer) return {run_layer(node, in.at(0), options)};
  if (options.accumulation == Accumulation::kOnnxRuntime && in.size() == 1) {
    const Tensor y = run_reduction_onnxruntime(node, in[0]);
    if (y.defined()) return {y};
  }
  return run_function(node.op, in, node.attrs);
}

// One step of the tensorrt simulation; an error names the node.
Tensors run_tensorrt_step(const IntNode& node, const Tensors& in, const Tensor& input,
                          const SimulateOptions& options) {
  try {
    return run_tensorrt_node(node, in, input, options);
  } catch (const Error& e) {
    throw Error("simulate: node '" + node.name + "' (" + node.op + "): " + e.what());
  }
}

// ----- tnn: int8 blobs and the kernels of tnn_format.md §3.4 -----

float scalar_scale(const quant::QParams& qparams) {
  QAT_CHECK(qparams.scale.numel() == 1, "a tnn blob scale must be per tensor");
  return qparams.scale.data<float>()[0];
}

// float2int8(x / s) of float32 x.
Tensor quantize_tnn(const Tensor& x, float s) {
  const Tensor x32 = x.to(DType::kFloat32);
  Tensor q = Tensor::empty(x.shape(), DType::kInt8);
  const float* in = x32.data<float>();
  int8_t* out = q.data<int8_t>();
  const int64_t n = q.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = float2int8(in[i] / s);
  return q;
}

// float2int8(q * s_in / s_out) of int8 q.
Tensor requantize(const Tensor& q, float s_in, float s_out) {
  Tensor r = Tensor::empty(q.shape(), DType::kInt8);
  const int8_t* in = q.data<int8_t>();
  int8_t* out = r.data<int8_t>();
  const int64_t n = r.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = float2int8(static_cast<float>(in[i]) * s_in / s_out);
  return r;
}

// q * s of int8 q, float32.
Tensor dequantize(const Tensor& q, float s) {
  Tensor x = Tensor::empty(q.shape());
  const int8_t* in = q.data<int8_t>();
  float* out = x.data<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) * s;
  return x;
}

// The int32 accumulators of a conv2d / linear node on int8 input x: sum x_q * w_q over the
// window (zero padding) plus bias_int32, [N, OC, OH, OW] or [N, OC]. Plain integer loops: the
// reference twin of accumulate_float32.
Tensor accumulate_reference(const IntNode& node, const Tensor& x) {
  const IntLayer& layer = *node.layer;
  const int8_t* in = x.data<int8_t>();
  const int8_t* w = layer.weight.data<int8_t>();
  const int32_t* bias = layer.bias_int32.defined() ? layer.bias_int32.data<int32_t>() : nullptr;
  const int64_t batch = x.size(0);
  const int64_t out_channels = layer.weight.size(0);
  if (node.op == "linear") {
    const int64_t k = layer.weight.size(1);
    QAT_CHECK(x.numel() == batch * k, "linear: input ", shape_str(x.shape()), " for ", k,
              " input features");
    Tensor acc = Tensor::empty({batch, out_channels}, DType::kInt32);
    int32_t* out = acc.data<int32_t>();
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t oc = 0; oc < out_channels; ++oc) {
        int32_t sum = bias ? bias[oc] : 0;
        for (int64_t i = 0; i < k; ++i) sum += in[n * k + i] * w[oc * k + i];
        out[n * out_channels + oc] = sum;
      }
    }
    return acc;
  }
  const auto [stride_h, stride_w] = pair_attr(node.attrs, "stride");
  const auto [pad_h, pad_w] = pair_attr(node.attrs, "padding");
  const auto [dilation_h, dilation_w] = pair_attr(node.attrs, "dilation");
  const int64_t groups = node.attrs.get_int("groups");
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t group_in = layer.weight.size(1), kernel_h = layer.weight.size(2),
                kernel_w = layer.weight.size(3);
  const int64_t group_out = out_channels / groups;
  QAT_CHECK(channels == group_in * groups, "conv2d: ", channels, " input channels for weight ",
            shape_str(layer.weight.shape()), " and ", groups, " groups");
  const int64_t out_h = node.output_shapes.at(0).at(2), out_w = node.output_shapes.at(0).at(3);
  Tensor acc = Tensor::empty({batch, out_channels, out_h, out_w}, DType::kInt32);
  int32_t* out = acc.data<int32_t>();
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oc = 0; oc < out_channels; ++oc) {
      const int64_t first_in = (oc / group_out) * group_in;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        for (int64_t ow = 0; ow < out_w; ++ow) {
          int32_t sum = bias ? bias[oc] : 0;
          for (int64_t ic = 0; ic < group_in; ++ic) {
            for (int64_t kh = 0; kh < kernel_h; ++kh) {
              const int64_t ih = oh * stride_h - pad_h + kh * dilation_h;
              if (ih < 0 || ih >= height) continue;
              for (int64_t kw = 0; kw < kernel_w; ++kw) {
                const int64_t iw = ow * stride_w - pad_w + kw * dilation_w;
                if (iw < 0 || iw >= width) continue;
                sum += in[((n * channels + first_in + ic) * height + ih) * width + iw] *
                       w[((oc * group_in + ic) * kernel_h + kh) * kernel_w + kw];
              }
            }
          }
          out[((n * out_channels + oc) * out_h + oh) * out_w + ow] = sum;
        }
      }
    }
  }
  return acc;
}

// The number of elements per (sample, channel) of a [N, C, ...] tensor.
int64_t per_channel_inner(const Tensor& t) { return t.numel() / (t.size(0) * t.size(1)); }

// Codes as float32 (exact: every int8 is a float32) in `shape`, and max |code|.
Tensor codes_as_float(const Tensor& q, const Shape& shape, float* max_abs) {
  Tensor out = Tensor::empty(shape);
  const int8_t* in = q.data<int8_t>();
  float* v = out.data<float>();
  int max_code = 0;
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) {
    v[i] = static_cast<float>(in[i]);
    max_code = std::max(max_code, std::abs(static_cast<int>(in[i])));
  }
  *max_abs = static_cast<float>(max_code);
  return out;
}

// accumulate_reference computed with the float32 oneDNN conv / Eigen GEMM on the codes
// (quant::exact_accumulators), or undefined when the weight has no exact split.
Tensor accumulate_float32(const IntNode& node, const Tensor& x) {
  const IntLayer& layer = *node.layer;
  const int64_t batch = x.size(0);
  float x_max = 0.0f;
  const Tensor xf = node.op == "linear" ? codes_as_float(x, {batch, x.numel() / batch}, &x_max)
                                        : codes_as_float(x, x.shape(), &x_max);
  return quant::exact_accumulators(layer.weight, x_max, layer.bias_int32, [&](const Tensor& w) {
    return node.op == "linear" ? ops::linear(xf, w, Tensor())
                               : ops::conv2d(xf, w, Tensor(), conv_params(node));
  });
}

// The int32 accumulators of a conv2d / linear node (accumulate_reference): the exact float32
// path unless the options ask for the reference loops or the 2^24 bound fails.
Tensor accumulate(const IntNode& node, const Tensor& x, const SimulateOptions& options) {
  QAT_CHECK(x.dtype() == DType::kInt8, "tnn runs ", node.op, " on an int8 input only");
  if (!options.reference_kernels) {
    Tensor acc = accumulate_float32(node, x);
    if (acc.defined()) return acc;
  }
  return accumulate_reference(node, x);
}

// A conv / FC output: v = acc * (s_acc[c] / s_out) in float32, then the fused activation and
// float2int8.
Tensor requantize_layer_output(const IntNode& node, const Tensor& acc,
                               const SimulateOptions& options) {
  const IntLayer& layer = *node.layer;
  const float s_out = scalar_scale(*layer.output);
  return options.reference_kernels
             ? quant::tnn_requantize(acc, layer.accumulator_scale, s_out, layer.activation)
             : quant::tnn_requantize_planes(acc, layer.accumulator_scale, s_out, layer.activation);
}

// The fused 1x1 conv + add of tnn_format.md §3.5: one rounding of
// acc * (s_acc[c] / s_add) + other * (s_other / s_add).
Tensor fused_conv_add(const IntNode& conv, const Tensor& acc, const Tensor& other, float s_other,
                      float s_add) {
  QAT_CHECK(other.shape() == acc.shape(), "conv + add: the other input is ",
            shape_str(other.shape()), ", the conv output ", shape_str(acc.shape()));
  const float* s_acc = conv.layer->accumulator_scale.data<float>();
  const float other_multiplier = s_other / s_add;
  const int32_t* a = acc.data<int32_t>();
  const int8_t* b = other.data<int8_t>();
  const int64_t channels = acc.size(1), inner = per_channel_inner(acc);
  Tensor q = Tensor::empty(acc.shape(), DType::kInt8);
  int8_t* out = q.data<int8_t>();
  for (int64_t plane = 0; plane < acc.size(0) * channels; ++plane) {
    const float multiplier = s_acc[plane % channels] / s_add;
    for (int64_t i = plane * inner; i < (plane + 1) * inner; ++i) {
      out[i] = float2int8(static_cast<float>(a[i]) * multiplier +
                          static_cast<float>(b[i]) * other_multiplier);
    }
  }
  return q;
}

// float2int8((a * s_a + b * s_b) / s_out).
Tensor add_int8(const Tensor& a, const Tensor& b, float s_a, float s_b, float s_out) {
  QAT_CHECK(a.shape() == b.shape(), "add: the int8 inputs must have one shape, got ",
            shape_str(a.shape()), " and ", shape_str(b.shape()));
  Tensor q = Tensor::empty(a.shape(), DType::kInt8);
  const int8_t* x = a.data<int8_t>();
  const int8_t* y = b.data<int8_t>();
  int8_t* out = q.data<int8_t>();
  const int64_t n = q.numel();
  for (int64_t i = 0; i < n; ++i) {
    out[i] = float2int8((static_cast<float>(x[i]) * s_a + static_cast<float>(y[i]) * s_b) / s_out);
  }
  return q;
}

// Per-tensor concat: each input requantized to s_out, then joined along `dim`.
Tensor cat_int8(const Tensors& in, const std::vector<float>& s_in, float s_out, int64_t dim) {
  Shape shape = in.at(0).shape();
  if (dim < 0) dim += static_cast<int64_t>(shape.size());
  shape[dim] = 0;
  for (const Tensor& t : in) shape[dim] += t.size(dim);
  int64_t outer = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= shape[d];
  Tensor q = Tensor::empty(shape, DType::kInt8);
  int8_t* out = q.data<int8_t>();
  const int64_t out_row = q.numel() / outer;
  int64_t offset = 0;
  for (size_t k = 0; k < in.size(); ++k) {
    const Tensor r = requantize(in[k], s_in[k], s_out);
    const int64_t row = r.numel() / outer;
    const int8_t* src = r.data<int8_t>();
    for (int64_t o = 0; o < outer; ++o) std::copy_n(src + o * row, row, out + o * out_row + offset);
    offset += row;
  }
  return q;
}

Tensor relu_int8(const Tensor& x) {
  Tensor q = Tensor::empty(x.shape(), DType::kInt8);
  const int8_t* in = x.data<int8_t>();
  int8_t* out = q.data<int8_t>();
  const int64_t n = q.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = std::max<int8_t>(in[i], 0);
  return q;
}

// Max pool of int8 x [N, C, H, W] to the traced output size (ceil_mode included); padding never
// wins the max.
Tensor max_pool_int8(const IntNode& node, const Tensor& x) {
  const auto [kernel_h, kernel_w] = pair_attr(node.attrs, "kernel");
  const auto [stride_h, stride_w] = pair_attr(node.attrs, "stride");
  const auto [pad_h, pad_w] = pair_attr(node.attrs, "padding");
  const auto [dilation_h, dilation_w] = pair_attr(node.attrs, "dilation");
  const int64_t planes = x.size(0) * x.size(1), height = x.size(2), width = x.size(3);
  const int64_t out_h = node.output_shapes.at(0).at(2), out_w = node.output_shapes.at(0).at(3);
  Tensor q = Tensor::empty({x.size(0), x.size(1), out_h, out_w}, DType::kInt8);
  const int8_t* in = x.data<int8_t>();
  int8_t* out = q.data<int8_t>();
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t oh = 0; oh < out_h; ++oh) {
      for (int64_t ow = 0; ow < out_w; ++ow) {
        int8_t best = std::numeric_limits<int8_t>::min();
        for (int64_t kh = 0; kh < kernel_h; ++kh) {
          const int64_t ih = oh * stride_h - pad_h + kh * dilation_h;
          if (ih < 0 || ih >= height) continue;
          for (int64_t kw = 0; kw < kernel_w; ++kw) {
            const int64_t iw = ow * stride_w - pad_w + kw * dilation_w;
            if (iw < 0 || iw >= width) continue;
            best = std::max(best, in[(p * height + ih) * width + iw]);
          }
        }
        out[(p * out_h + oh) * out_w + ow] = best;
      }
    }
  }
  return q;
}

// One output row / column of an average pool: the input range [begin, end).
struct Window {
  int64_t begin;
  int64_t end;
};

// The windows of an average pool along one axis of `size` inputs and `out` outputs:
// avg_pool2d (padding 0) or adaptive_avg_pool2d (PyTorch's bins floor(o * size / out) to
// ceil((o + 1) * size / out)).
std::vector<Window> pool_windows(const IntNode& node, int axis, int64_t size, int64_t out) {
  std::vector<Window> windows;
  for (int64_t o = 0; o < out; ++o) {
    if (node.op == "adaptive_avg_pool2d") {
      windows.push_back({o * size / out, ((o + 1) * size + out - 1) / out});
    } else {
      const int64_t kernel = node.attrs.get_ints("kernel").at(axis);
      const int64_t begin = o * node.attrs.get_ints("stride").at(axis);
      windows.push_back({begin, std::min(begin + kernel, size)});
    }
  }
  return windows;
}

// TNN's int8 average: trunc(sum q / count) (C++ integer division truncates toward zero).
Tensor average_pool_int8(const IntNode& node, const Tensor& x) {
  if (node.op == "avg_pool2d") {
    const auto [pad_h, pad_w] = pair_attr(node.attrs, "padding");
    QAT_CHECK(pad_h == 0 && pad_w == 0, "tnn int8 avg_pool2d with padding is not simulated");
  }
  const int64_t planes = x.size(0) * x.size(1), height = x.size(2), width = x.size(3);
  const int64_t out_h = node.output_shapes.at(0).at(2), out_w = node.output_shapes.at(0).at(3);
  const std::vector<Window> rows = pool_windows(node, 0, height, out_h);
  const std::vector<Window> cols = pool_windows(node, 1, width, out_w);
  Tensor q = Tensor::empty({x.size(0), x.size(1), out_h, out_w}, DType::kInt8);
  const int8_t* in = x.data<int8_t>();
  int8_t* out = q.data<int8_t>();
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t oh = 0; oh < out_h; ++oh) {
      for (int64_t ow = 0; ow < out_w; ++ow) {
        int32_t sum = 0;
        for (int64_t ih = rows[oh].begin; ih < rows[oh].end; ++ih) {
          for (int64_t iw = cols[ow].begin; iw < cols[ow].end; ++iw)
            sum += in[(p * height + ih) * width + iw];
        }
        const auto count =
            static_cast<int32_t>((rows[oh].end - rows[oh].begin) * (cols[ow].end - cols[ow].begin));
        out[(p * out_h + oh) * out_w + ow] = static_cast<int8_t>(sum / count);
      }
    }
  }
  return q;
}

// The int8 inputs of `node`, dequantized for a float op.
Tensors dequantized_inputs(const IntModel& model, const IntNode& node, const Tensors& in) {
  Tensors out;
  for (size_t k = 0; k < in.size(); ++k) {
    const Value v = node.inputs[k];
    const std::optional<float> s = model.nodes[v.node].output_scales.at(v.output);
    out.push_back(s ? dequantize(in[k], *s) : in[k]);
  }
  return out;
}

Tensors run_tnn_node(const IntModel& model, const IntNode& node, const Tensors& in,
                     const Tensor& input, const SimulateOptions& options) {
  if (node.op == "input") return {input};
  if (node.op == "output") return {};
  const bool int8_output = !node.output_scales.empty() && node.output_scales[0].has_value();
  if (node.op == "quantize") {
    const float s = scalar_scale(*node.qparams);
    const std::optional<float> s_in =
        model.nodes[node.inputs[0].node].output_scales.at(node.inputs[0].output);
    return {s_in ? requantize(in[0], *s_in, s) : quantize_tnn(in[0], s)};
  }
  if (node.layer) return {requantize_layer_output(node, accumulate(node, in[0], options), options)};
  if (!int8_output) return run_function(node.op, dequantized_inputs(model, node, in), node.attrs);
  const float s_out = *node.output_scales[0];
  if (node.op == "add") {
    return {add_int8(in[0], in[1], node.input_scales[0], node.input_scales[1], s_out)};
  }
  if (node.op == "cat") return {cat_int8(in, node.input_scales, s_out, node.attrs.get_int("dim"))};
  if (node.op == "relu") return {relu_int8(in[0])};
  if (node.op == "max_pool2d") return {max_pool_int8(node, in[0])};
  if (node.op == "avg_pool2d" || node.op == "adaptive_avg_pool2d") {
    return {average_pool_int8(node, in[0])};
  }
  throw Error("tnn has no int8 " + node.op);
}

// The output of the int8 add `add` fused with the 1x1 conv node `fused_conv` (§3.5).
Tensors run_tnn_fused_add(const IntModel& model, const IntNode& add, int fused_conv,
                          const std::vector<Tensors>& values, const SimulateOptions& options) {
  const IntNode& conv = model.nodes[fused_conv];
  const int other = add.inputs[0].node == fused_conv ? 1 : 0;
  const Value x = conv.inputs[0];
  const Value y = add.inputs[other];
  return {fused_conv_add(conv, accumulate(conv, values[x.node].at(x.output), options),
                         values[y.node].at(y.output), add.input_scales[other],
                         *add.output_scales[0])};
}

// One step of the tnn simulation (simulate_tnn_node) with the load fusions precomputed.
Tensors run_tnn_step(const IntModel& model, int index, const std::vector<Tensors>& values,
                     const Tensor& input, int fused_conv, const SimulateOptions& options) {
  const IntNode& node = model.nodes.at(index);
  Tensors in;
  for (const Value& v : node.inputs) in.push_back(values.at(v.node).at(v.output));
  try {
    return fused_conv >= 0 ? run_tnn_fused_add(model, node, fused_conv, values, options)
                           : run_tnn_node(model, node, in, input, options);
  } catch (const Error& e) {
    throw Error("simulate: node '" + node.name + "' (" + node.op + "): " + e.what());
  }
}

// tnn_load_fusions(model) when the options apply them, else no fusion.
std::vector<int> fusions_if(const IntModel& model, const SimulateOptions& options) {
  return options.apply_tnn_load_fusions ? tnn_load_fusions(model)
                                        : std::vector<int>(model.nodes.size(), -1);
}

Tensor simulate_tnn(const IntModel& model, const Tensor& input, const SimulateOptions& options) {
  const std::vector<int> fused_conv = fusions_if(model, options);
  std::vector<Tensors> values(model.nodes.size());
  Tensor result;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const IntNode& node = model.nodes[i];
    values[i] = run_tnn_step(model, static_cast<int>(i), values, input, fused_conv[i], options);
    if (node.op != "output") continue;
    const Value v = node.inputs.at(0);
    const std::optional<float> s = model.nodes[v.node].output_scales.at(v.output);
    const Tensor& out = values[v.node].at(v.output);
    result = s ? dequantize(out, *s) : out;
  }
  QAT_CHECK(result.defined(), "simulate: the model has no output node");
  return result;
}

Tensor simulate_tensorrt(const IntModel& model, const Tensor& input,
                         const SimulateOptions& options) {
  std::vector<Tensors> values(model.nodes.size());
  Tensor result;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const IntNode& node = model.nodes[i];
    Tensors in;
    for (const Value& v : node.inputs) in.push_back(values.at(v.node).at(v.output));
    if (node.op == "output") result = in.at(0);
    values[i] = run_tensorrt_step(node, in, input, options);
  }
  QAT_CHECK(result.defined(), "simulate: the model has no output node");
  return result;
}

}  // namespace

Tensor IntLayer::dequantized_weight() const {
  const int64_t channels = weight.size(0);
  const int64_t inner = weight.numel() / channels;
  const bool per_tensor = !weight_qparams.per_channel();
  QAT_CHECK(
      per_tensor ? weight_qparams.scale.numel() == 1 : weight_qparams.scale.numel() == channels,
      "IntLayer: ", channels, " output channels but ", weight_qparams.scale.numel(),
      per_tensor ? " per-tensor" : "", " weight scales");
  Tensor out = Tensor::empty(weight.shape());
  const int8_t* q = weight.data<int8_t>();
  const float* scale = weight_qparams.scale.data<float>();
  const std::vector<int32_t> zero_point =
      weight_qparams.zero_point.to(DType::kInt32).to_vector<int32_t>();
  float* w = out.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const float s = scale[per_tensor ? 0 : c];
    const int32_t zp = zero_point.at(per_tensor ? 0 : c);
    for (int64_t i = c * inner; i < (c + 1) * inner; ++i)
      w[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zp) * s;
  }
  return out;
}

bool runs_qdq(quant::Target target) { return target != quant::Target::kTNN; }

int IntModel::find(const std::string& name) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == name) return static_cast<int>(i);
  return -1;
}

const IntNode& IntModel::node(const std::string& name) const {
  const int index = find(name);
  QAT_CHECK(index >= 0, "IntModel: no node called '", name, "'");
  return nodes[index];
}

// fused_conv[i]: the conv node that TNN fuses into the add node i at load (§3.5), or -1.
std::vector<int> tnn_load_fusions(const IntModel& model) {
  std::vector<int> readers(model.nodes.size(), 0);
  for (const IntNode& node : model.nodes)
    for (const Value& v : node.inputs) ++readers[v.node];
  std::vector<int> fused_conv(model.nodes.size(), -1);
  for (size_t i = 1; i < model.nodes.size(); ++i) {
    const IntNode& add = model.nodes[i];
    const IntNode& conv = model.nodes[i - 1];
    const auto conv_index = static_cast<int>(i - 1);
    if (add.op != "add" || add.output_scales.empty() || !add.output_scales[0]) continue;
    if (conv.op != "conv2d" || !conv.layer->output || readers[i - 1] != 1) continue;
    if (conv.layer->activation != quant::FusedActivation::kNone) continue;
    const Shape& w = conv.layer->weight.shape();
    const bool pointwise = w[2] == 1 && w[3] == 1 && conv.attrs.get_int("groups") == 1 &&
                           pair_attr(conv.attrs, "stride") == std::array<int64_t, 2>{1, 1} &&
                           pair_attr(conv.attrs, "padding") == std::array<int64_t, 2>{0, 0};
    const bool reads_conv = add.inputs[0].node == conv_index || add.inputs[1].node == conv_index;
    if (pointwise && reads_conv) fused_conv[i] = conv_index;
  }
  return fused_conv;
}

Tensor simulate(const IntModel& model, const Tensor& input, const SimulateOptions& options) {
  NoGradGuard no_grad;
  return model.target == quant::Target::kTNN ? simulate_tnn(model, input, options)
                                             : simulate_tensorrt(model, input, options);
}

std::vector<Tensor> simulate_tensorrt_node(const IntModel& model, int index,
                                           const std::vector<Tensor>& inputs, const Tensor& input,
                                           const SimulateOptions& options) {
  QAT_CHECK(runs_qdq(model.target), "simulate_tensorrt_node: the model's target is '",
            quant::target_name(model.target),
            "', not 'tensorrt' or a PyTorch preset (fbgemm, qnnpack, qnnpack_perchannel)");
  QAT_CHECK(index >= 0 && index < static_cast<int>(model.nodes.size()),
            "simulate_tensorrt_node: no node ", index, " in a model of ", model.nodes.size());
  const IntNode& node = model.nodes[index];
  QAT_CHECK(inputs.size() == node.inputs.size(), "simulate_tensorrt_node: node '", node.name,
            "' reads ", node.inputs.size(), " inputs, got ", inputs.size());
  NoGradGuard no_grad;
  return run_tensorrt_step(node, inputs, input, options);
}

std::vector<Tensor> simulate_tnn_node(const IntModel& model, int index,
                                      const std::vector<std::vector<Tensor>>& values,
                                      const Tensor& input, const SimulateOptions& options) {
  QAT_CHECK(model.target == quant::Target::kTNN, "simulate_tnn_node: the model's target is '",
            quant::target_name(model.target), "', not 'tnn'");
  NoGradGuard no_grad;
  return run_tnn_step(model, index, values, input, fusions_if(model, options).at(index), options);
}

}  // namespace qat::graph
