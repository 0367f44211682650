// float32 fast paths of core/kernels/pool.h. Max and avg pooling run oneDNN's pooling_v2
// primitives wherever oneDNN computes what PyTorch computes, and OpenMP loops where it does not:
//  - max: oneDNN starts its running max at the lowest float and never takes a NaN, while PyTorch
//    propagates NaN and gives -inf for an all -inf window. Inputs holding NaN or values <= the
//    lowest float, and dilated windows whose taps all fall in padding, take the OpenMP kernel.
//  - avg with count_include_pad: oneDNN divides by KH * KW, PyTorch by the window clipped to the
//    padded input. They differ when ceil_mode's last window runs past the padded input, and those
//    shapes take the OpenMP kernel.
// Adaptive average pooling (bins of varying size) has no oneDNN primitive and is OpenMP only.
#include "core/kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>

#include "core/check.h"
#include "core/kernels/onednn/engine.h"

namespace qat::kernels {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;

// Work (outputs times taps) below which the OpenMP loops stay serial.
constexpr int64_t kParallelGrain = 1 << 15;
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- geometry shared by the OpenMP kernels

// Taps j in [begin, end) of a window whose taps sit at start + j * dil lie inside [0, in).
// PyTorch's output sizes guarantee start < in. Empty when begin >= end.
struct TapRange {
  int64_t begin, end;
};

// The tap range of every output row (or column).
std::vector<TapRange> window_taps(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p,
                                  int64_t dil) {
  std::vector<TapRange> taps(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * s - p;
    taps[o] = {start < 0 ? (-start + dil - 1) / dil : 0, std::min(k, (in - start + dil - 1) / dil)};
  }
  return taps;
}

// Per output row (or column), the avg divisor's factor: the window clipped to the padded input
// [-p, in + p) with count_include_pad, else its taps inside the input.
std::vector<int64_t> avg_divisors(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p,
                                  bool count_include_pad) {
  const std::vector<TapRange> taps = window_taps(in, out, k, s, p, 1);
  std::vector<int64_t> divisors(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * s - p;
    divisors[o] =
        count_include_pad ? std::min(start + k, in + p) - start : taps[o].end - taps[o].begin;
  }
  return divisors;
}

// PyTorch's adaptive bins [floor(o * in / out), ceil((o + 1) * in / out)).
std::vector<TapRange> adaptive_bins(int64_t in, int64_t out) {
  std::vector<TapRange> bins(out);
  for (int64_t o = 0; o < out; ++o) bins[o] = {o * in / out, ((o + 1) * in + out - 1) / out};
  return bins;
}

// ---- OpenMP kernels, one plane [H, W] per iteration

// PyTorch's CPU loop: the running max starts at -inf with the first tap as argmax, and a later tap
// replaces it when strictly greater or NaN. `argmax` may be null (inference).
void max_pool2d_forward_omp(const float* x, float* y, int64_t* argmax, const Pool2dDims& d) {
  const std::vector<TapRange> rows = window_taps(d.H, d.OH, d.KH, d.SH, d.PH, d.DH);
  const std::vector<TapRange> cols = window_taps(d.W, d.OW, d.KW, d.SW, d.PW, d.DW);
  const int64_t planes = d.N * d.C;
#pragma omp parallel for schedule(static) if (planes * d.OH * d.OW * d.KH * d.KW >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * d.H * d.W;  // [H, W]
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      const int64_t h0 = oh * d.SH - d.PH;
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const int64_t w0 = ow * d.SW - d.PW;
        const TapRange r = rows[oh], c = cols[ow];
        float best = -kInf;
        int64_t best_i = r.begin < r.end && c.begin < c.end
                             ? (h0 + r.begin * d.DH) * d.W + w0 + c.begin * d.DW
                             : -1;
        for (int64_t kh = r.begin; kh < r.end; ++kh) {
          const int64_t row = (h0 + kh * d.DH) * d.W;
          for (int64_t kw = c.begin; kw < c.end; ++kw) {
            const int64_t i = row + w0 + kw * d.DW;
            if (xp[i] > best || std::isnan(xp[i])) {
              best = xp[i];
              best_i = i;
            }
          }
        }
        const int64_t o = (p * d.OH + oh) * d.OW + ow;
        y[o] = best;
        if (argmax) argmax[o] = best_i;
      }
    }
  }
}

void max_pool2d_backward_omp(const float* dy, float* dx, const int64_t* argmax,
                             const Pool2dDims& d) {
  const int64_t planes = d.N * d.C;
#pragma omp parallel for schedule(static) if (planes * d.H * d.W >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* dyp = dy + p * d.OH * d.OW;       // [OH, OW]
    const int64_t* ap = argmax + p * d.OH * d.OW;  // [OH, OW]
    float* dxp = dx + p * d.H * d.W;               // [H, W]
    std::fill(dxp, dxp + d.H * d.W, 0.0f);
    for (int64_t o = 0; o < d.OH * d.OW; ++o) {
      if (ap[o] >= 0) dxp[ap[o]] += dyp[o];
    }
  }
}

void avg_pool2d_forward_omp(const float* x, float* y, const Pool2dDims& d, bool count_include_pad) {
  const std::vector<TapRange> rows = window_taps(d.H, d.OH, d.KH, d.SH, d.PH, 1);
  const std::vector<TapRange> cols = window_taps(d.W, d.OW, d.KW, d.SW, d.PW, 1);
  const std::vector<int64_t> row_div = avg_divisors(d.H, d.OH, d.KH, d.SH, d.PH, count_include_pad);
  const std::vector<int64_t> col_div = avg_divisors(d.W, d.OW, d.KW, d.SW, d.PW, count_include_pad);
  const int64_t planes = d.N * d.C;
#pragma omp parallel for schedule(static) if (planes * d.OH * d.OW * d.KH * d.KW >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * d.H * d.W;  // [H, W]
    float* yp = y + p * d.OH * d.OW;      // [OH, OW]
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      const int64_t h0 = oh * d.SH - d.PH;
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const int64_t w0 = ow * d.SW - d.PW;
        float sum = 0.0f;
        for (int64_t ih = h0 + rows[oh].begin; ih < h0 + rows[oh].end; ++ih) {
          for (int64_t iw = w0 + cols[ow].begin; iw < w0 + cols[ow].end; ++iw) {
            sum += xp[ih * d.W + iw];
          }
        }
        yp[oh * d.OW + ow] = sum / static_cast<float>(row_div[oh] * col_div[ow]);
      }
    }
  }
}

void avg_pool2d_backward_omp(const float* dy, float* dx, const Pool2dDims& d,
                             bool count_include_pad) {
  const std::vector<TapRange> rows = window_taps(d.H, d.OH, d.KH, d.SH, d.PH, 1);
  const std::vector<TapRange> cols = window_taps(d.W, d.OW, d.KW, d.SW, d.PW, 1);
  const std::vector<int64_t> row_div = avg_divisors(d.H, d.OH, d.KH, d.SH, d.PH, count_include_pad);
  const std::vector<int64_t> col_div = avg_divisors(d.W, d.OW, d.KW, d.SW, d.PW, count_include_pad);
  const int64_t planes = d.N * d.C;
#pragma omp parallel for schedule(static) if (planes * d.OH * d.OW * d.KH * d.KW >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* dyp = dy + p * d.OH * d.OW;  // [OH, OW]
    float* dxp = dx + p * d.H * d.W;          // [H, W]
    std::fill(dxp, dxp + d.H * d.W, 0.0f);
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      const int64_t h0 = oh * d.SH - d.PH;
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const int64_t w0 = ow * d.SW - d.PW;
        const float g = dyp[oh * d.OW + ow] / static_cast<float>(row_div[oh] * col_div[ow]);
        for (int64_t ih = h0 + rows[oh].begin; ih < h0 + rows[oh].end; ++ih) {
          for (int64_t iw = w0 + cols[ow].begin; iw < w0 + cols[ow].end; ++iw) {
            dxp[ih * d.W + iw] += g;
          }
        }
      }
    }
  }
}

// ---- when oneDNN differs from PyTorch

// One pass over x: does it hold NaN or a value <= the lowest float (-inf, or the lowest float
// itself, which ties with oneDNN's starting max)?
bool has_nan_or_lowest(const float* x, int64_t n) {
  int found = 0;
#pragma omp parallel for simd schedule(static) reduction(| : found) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) found |= !(x[i] > std::numeric_limits<float>::lowest());
  return found != 0;
}

// With dilation all taps of a window can fall in padding (H = 1, KH = 2, PH = 1, DH = 2: taps
// at -1 and 1). PyTorch then gives -inf, oneDNN the lowest float.
bool has_window_without_input(const Pool2dDims& d) {
  const auto empty = [](const TapRange& r) { return r.begin >= r.end; };
  const std::vector<TapRange> rows = window_taps(d.H, d.OH, d.KH, d.SH, d.PH, d.DH);
  const std::vector<TapRange> cols = window_taps(d.W, d.OW, d.KW, d.SW, d.PW, d.DW);
  return std::any_of(rows.begin(), rows.end(), empty) ||
         std::any_of(cols.begin(), cols.end(), empty);
}

// Right padding that gives oneDNN `out` windows: ceil_mode's extra windows become extra right
// padding. Never below p, since oneDNN's output size rounds down as floor mode does.
int64_t onednn_pad_r(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, int64_t dil) {
  const int64_t last_end = (out - 1) * s + (k - 1) * dil + 1;  // in padded coordinates
  return std::max(p, last_end - in - p);
}

bool onednn_avg_matches_pytorch(const Pool2dDims& d, bool count_include_pad) {
  return !count_include_pad || (onednn_pad_r(d.H, d.OH, d.KH, d.SH, d.PH, 1) == d.PH &&
                                onednn_pad_r(d.W, d.OW, d.KW, d.SW, d.PW, 1) == d.PW);
}

// ---- oneDNN: md -> pd -> primitive, cached per shape

struct ForwardPrimitive {
  dnnl::pooling_v2_forward::primitive_desc pd;
  dnnl::pooling_v2_forward prim;
};

struct BackwardPrimitive {
  dnnl::pooling_v2_backward::primitive_desc pd;
  dnnl::pooling_v2_backward prim;
};

// Everything a pooling_v2 desc takes. oneDNN's dilation is the gap between taps (0 = dense).
struct OnednnArgs {
  memory::desc src_md, dst_md;
  memory::dims strides, kernel, dilation, padding_l, padding_r;
};

OnednnArgs onednn_args(const Pool2dDims& d) {
  const auto f32 = memory::data_type::f32;
  const auto nchw = memory::format_tag::nchw;
  return {memory::desc({d.N, d.C, d.H, d.W}, f32, nchw),
          memory::desc({d.N, d.C, d.OH, d.OW}, f32, nchw),
          {d.SH, d.SW},
          {d.KH, d.KW},
          {d.DH - 1, d.DW - 1},
          {d.PH, d.PW},
          {onednn_pad_r(d.H, d.OH, d.KH, d.SH, d.PH, d.DH),
           onednn_pad_r(d.W, d.OW, d.KW, d.SW, d.PW, d.DW)}};
}

std::string cache_key(const char* direction, prop_kind prop, algorithm alg, const Pool2dDims& d) {
  const std::string tag = std::string("pool2d_") + direction + ":" +
                          std::to_string(static_cast<int>(prop)) + ":" +
                          std::to_string(static_cast<int>(alg));
  return onednn::dims_key(
      tag,
      {{d.N, d.C, d.H, d.W}, {d.OH, d.OW}, {d.KH, d.KW}, {d.SH, d.SW}, {d.PH, d.PW}, {d.DH, d.DW}});
}

const ForwardPrimitive& forward_primitive(prop_kind prop, algorithm alg, const Pool2dDims& d) {
  static onednn::Cache<ForwardPrimitive> cache;
  return cache.get_or_create(cache_key("fwd", prop, alg, d), [&] {
    const OnednnArgs a = onednn_args(d);
    const dnnl::pooling_v2_forward::desc desc(prop, alg, a.src_md, a.dst_md, a.strides, a.kernel,
                                              a.dilation, a.padding_l, a.padding_r);
    const dnnl::pooling_v2_forward::primitive_desc pd(desc, onednn::engine());
    return ForwardPrimitive{pd, dnnl::pooling_v2_forward(pd)};
  });
}

// Hinted by the training forward pd, which also fixes the max workspace layout.
const BackwardPrimitive& backward_primitive(algorithm alg, const Pool2dDims& d) {
  static onednn::Cache<BackwardPrimitive> cache;
  return cache.get_or_create(cache_key("bwd", prop_kind::backward_data, alg, d), [&] {
    const ForwardPrimitive& hint = forward_primitive(prop_kind::forward_training, alg, d);
    const OnednnArgs a = onednn_args(d);
    const dnnl::pooling_v2_backward::desc desc(alg, a.src_md, a.dst_md, a.strides, a.kernel,
                                               a.dilation, a.padding_l, a.padding_r);
    const dnnl::pooling_v2_backward::primitive_desc pd(desc, onednn::engine(), hint.pd);
    return BackwardPrimitive{pd, dnnl::pooling_v2_backward(pd)};
  });
}

// y = pool(x). With `workspace` (max only) a training forward that fills oneDNN's workspace.
// oneDNN memory takes non-const handles; it only reads src.
void onednn_forward(algorithm alg, const float* x, float* y, const Pool2dDims& d,
                    std::vector<uint8_t>* workspace) {
  const prop_kind prop = workspace ? prop_kind::forward_training : prop_kind::forward_inference;
  const ForwardPrimitive& fwd = forward_primitive(prop, alg, d);
  const memory src_mem(fwd.pd.src_desc(), onednn::engine(), const_cast<float*>(x));
  const memory dst_mem(fwd.pd.dst_desc(), onednn::engine(), y);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_DST, dst_mem}};
  if (workspace) {
    workspace->resize(fwd.pd.workspace_desc().get_size());
    args.emplace(DNNL_ARG_WORKSPACE,
                 memory(fwd.pd.workspace_desc(), onednn::engine(), workspace->data()));
  }
  onednn::execute(fwd.prim, args);
}

void onednn_backward(algorithm alg, const float* dy, float* dx, const Pool2dDims& d,
                     const std::vector<uint8_t>* workspace) {
  const BackwardPrimitive& bwd = backward_primitive(alg, d);
  const memory diff_dst_mem(bwd.pd.diff_dst_desc(), onednn::engine(), const_cast<float*>(dy));
  const memory diff_src_mem(bwd.pd.diff_src_desc(), onednn::engine(), dx);
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, diff_dst_mem},
                                       {DNNL_ARG_DIFF_SRC, diff_src_mem}};
  if (workspace) {
    args.emplace(DNNL_ARG_WORKSPACE, memory(bwd.pd.workspace_desc(), onednn::engine(),
                                            const_cast<uint8_t*>(workspace->data())));
  }
  onednn::execute(bwd.prim, args);
}

// Runs fn, turning oneDNN's dnnl::error into the project's qat::Error.
template <class Fn>
void rethrow_onednn_errors(const char* api, Fn&& fn) {
  try {
    fn();
  } catch (const dnnl::error& e) {
    throw Error(std::string(api) + ": oneDNN failed: " + e.what());
  }
}

algorithm avg_algorithm(bool count_include_pad) {
  return count_include_pad ? algorithm::pooling_avg_include_padding
                           : algorithm::pooling_avg_exclude_padding;
}

}  // namespace

void max_pool2d_forward(const float* x, float* y, const Pool2dDims& d, MaxPool2dWorkspace* ws) {
  if (has_window_without_input(d) || has_nan_or_lowest(x, d.N * d.C * d.H * d.W)) {
    if (ws) {
      ws->from_onednn = false;
      ws->argmax.resize(d.N * d.C * d.OH * d.OW);
    }
    max_pool2d_forward_omp(x, y, ws ? ws->argmax.data() : nullptr, d);
    return;
  }
  if (ws) ws->from_onednn = true;
  rethrow_onednn_errors("max_pool2d_forward", [&] {
    onednn_forward(algorithm::pooling_max, x, y, d, ws ? &ws->onednn_bytes : nullptr);
  });
}

void max_pool2d_backward(const float* dy, float* dx, const Pool2dDims& d,
                         const MaxPool2dWorkspace& ws) {
  if (!ws.from_onednn) {
    max_pool2d_backward_omp(dy, dx, ws.argmax.data(), d);
    return;
  }
  rethrow_onednn_errors("max_pool2d_backward", [&] {
    onednn_backward(algorithm::pooling_max, dy, dx, d, &ws.onednn_bytes);
  });
}

void avg_pool2d_forward(const float* x, float* y, const Pool2dDims& d, bool count_include_pad) {
  if (!onednn_avg_matches_pytorch(d, count_include_pad)) {
    avg_pool2d_forward_omp(x, y, d, count_include_pad);
    return;
  }
  rethrow_onednn_errors("avg_pool2d_forward", [&] {
    onednn_forward(avg_algorithm(count_include_pad), x, y, d, nullptr);
  });
}

void avg_pool2d_backward(const float* dy, float* dx, const Pool2dDims& d, bool count_include_pad) {
  if (!onednn_avg_matches_pytorch(d, count_include_pad)) {
    avg_pool2d_backward_omp(dy, dx, d, count_include_pad);
    return;
  }
  rethrow_onednn_errors("avg_pool2d_backward", [&] {
    onednn_backward(avg_algorithm(count_include_pad), dy, dx, d, nullptr);
  });
}

void adaptive_avg_pool2d_forward(const float* x, float* y, int64_t N, int64_t C, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW) {
  const std::vector<TapRange> rows = adaptive_bins(H, OH), cols = adaptive_bins(W, OW);
  const int64_t planes = N * C;
#pragma omp parallel for schedule(static) if (planes * std::max(H * W, OH * OW) >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;  // [H, W]
    float* yp = y + p * OH * OW;      // [OH, OW]
    for (int64_t oh = 0; oh < OH; ++oh) {
      for (int64_t ow = 0; ow < OW; ++ow) {
        float sum = 0.0f;
        for (int64_t ih = rows[oh].begin; ih < rows[oh].end; ++ih) {
          for (int64_t iw = cols[ow].begin; iw < cols[ow].end; ++iw) sum += xp[ih * W + iw];
        }
        const int64_t count = (rows[oh].end - rows[oh].begin) * (cols[ow].end - cols[ow].begin);
        yp[oh * OW + ow] = sum / static_cast<float>(count);
      }
    }
  }
}

void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t N, int64_t C, int64_t H,
                                  int64_t W, int64_t OH, int64_t OW) {
  const std::vector<TapRange> rows = adaptive_bins(H, OH), cols = adaptive_bins(W, OW);
  const int64_t planes = N * C;
#pragma omp parallel for schedule(static) if (planes * std::max(H * W, OH * OW) >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* dyp = dy + p * OH * OW;  // [OH, OW]
    float* dxp = dx + p * H * W;          // [H, W]
    std::fill(dxp, dxp + H * W, 0.0f);
    for (int64_t oh = 0; oh < OH; ++oh) {
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t count = (rows[oh].end - rows[oh].begin) * (cols[ow].end - cols[ow].begin);
        const float g = dyp[oh * OW + ow] / static_cast<float>(count);
        for (int64_t ih = rows[oh].begin; ih < rows[oh].end; ++ih) {
          for (int64_t iw = cols[ow].begin; iw < cols[ow].end; ++iw) dxp[ih * W + iw] += g;
        }
      }
    }
  }
}

}  // namespace qat::kernels
