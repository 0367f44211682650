// Reference pooling: serial plain loops that test every tap against the bounds, written to be
// obviously PyTorch's semantics rather than fast.
#include <cmath>
#include <limits>

#include "core/kernels/pool.h"

namespace qat::kernels {
namespace {

// Division rounding toward -inf (C++ rounds toward zero), as PyTorch's div_rtn.
int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// Adaptive bin [start, end) of output index i when `in` positions pool to `out`.
int64_t bin_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// Visits each input tap (ih, iw) of output (oh, ow) in scan order, skipping padding.
template <class Fn>
void for_each_tap(const Pool2dDims& d, int64_t oh, int64_t ow, Fn&& fn) {
  for (int64_t kh = 0; kh < d.KH; ++kh) {
    const int64_t ih = oh * d.SH - d.PH + kh * d.DH;
    if (ih < 0 || ih >= d.H) continue;
    for (int64_t kw = 0; kw < d.KW; ++kw) {
      const int64_t iw = ow * d.SW - d.PW + kw * d.DW;
      if (iw < 0 || iw >= d.W) continue;
      fn(ih, iw);
    }
  }
}

// Index ih * W + iw of the max of window (oh, ow) in plane x [H, W]; -1 when the window holds no
// input. The first tap always counts (so an all -inf window still has an argmax), later ones
// replace it when strictly greater or NaN.
template <class T>
int64_t window_argmax(const T* x, const Pool2dDims& d, int64_t oh, int64_t ow) {
  int64_t best = -1;
  for_each_tap(d, oh, ow, [&](int64_t ih, int64_t iw) {
    const T v = x[ih * d.W + iw];
    if (best < 0 || v > x[best] || std::isnan(v)) best = ih * d.W + iw;
  });
  return best;
}

// PyTorch's avg divisor: the window clipped to the padded input [-P, H + P) with
// count_include_pad, else the number of its taps inside the input.
int64_t avg_divisor(const Pool2dDims& d, int64_t oh, int64_t ow, bool count_include_pad) {
  if (!count_include_pad) {
    int64_t taps = 0;
    for_each_tap(d, oh, ow, [&](int64_t, int64_t) { ++taps; });
    return taps;
  }
  int64_t rows = 0, cols = 0;
  for (int64_t kh = 0; kh < d.KH; ++kh) rows += oh * d.SH - d.PH + kh < d.H + d.PH;
  for (int64_t kw = 0; kw < d.KW; ++kw) cols += ow * d.SW - d.PW + kw < d.W + d.PW;
  return rows * cols;
}

}  // namespace

int64_t pool2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                           int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  int64_t out = floor_div(span + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

template <class T>
void max_pool2d_forward_ref(const T* x, T* y, const Pool2dDims& d) {
  for (int64_t p = 0; p < d.N * d.C; ++p) {
    const T* xp = x + p * d.H * d.W;  // [H, W]
    T* yp = y + p * d.OH * d.OW;      // [OH, OW]
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const int64_t best = window_argmax(xp, d, oh, ow);
        yp[oh * d.OW + ow] = best < 0 ? -std::numeric_limits<T>::infinity() : xp[best];
      }
    }
  }
}

template <class T>
void max_pool2d_backward_ref(const T* x, const T* dy, T* dx, const Pool2dDims& d) {
  for (int64_t i = 0; i < d.N * d.C * d.H * d.W; ++i) dx[i] = T(0);
  for (int64_t p = 0; p < d.N * d.C; ++p) {
    const T* xp = x + p * d.H * d.W;      // [H, W]
    const T* dyp = dy + p * d.OH * d.OW;  // [OH, OW]
    T* dxp = dx + p * d.H * d.W;          // [H, W]
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const int64_t best = window_argmax(xp, d, oh, ow);
        if (best >= 0) dxp[best] += dyp[oh * d.OW + ow];
      }
    }
  }
}

template <class T>
void avg_pool2d_forward_ref(const T* x, T* y, const Pool2dDims& d, bool count_include_pad) {
  for (int64_t p = 0; p < d.N * d.C; ++p) {
    const T* xp = x + p * d.H * d.W;  // [H, W]
    T* yp = y + p * d.OH * d.OW;      // [OH, OW]
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        T sum = 0;
        for_each_tap(d, oh, ow, [&](int64_t ih, int64_t iw) { sum += xp[ih * d.W + iw]; });
        yp[oh * d.OW + ow] = sum / T(avg_divisor(d, oh, ow, count_include_pad));
      }
    }
  }
}

template <class T>
void avg_pool2d_backward_ref(const T* dy, T* dx, const Pool2dDims& d, bool count_include_pad) {
  for (int64_t i = 0; i < d.N * d.C * d.H * d.W; ++i) dx[i] = T(0);
  for (int64_t p = 0; p < d.N * d.C; ++p) {
    const T* dyp = dy + p * d.OH * d.OW;  // [OH, OW]
    T* dxp = dx + p * d.H * d.W;          // [H, W]
    for (int64_t oh = 0; oh < d.OH; ++oh) {
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const T g = dyp[oh * d.OW + ow] / T(avg_divisor(d, oh, ow, count_include_pad));
        for_each_tap(d, oh, ow, [&](int64_t ih, int64_t iw) { dxp[ih * d.W + iw] += g; });
      }
    }
  }
}

template <class T>
void adaptive_avg_pool2d_forward_ref(const T* x, T* y, int64_t N, int64_t C, int64_t H, int64_t W,
                                     int64_t OH, int64_t OW) {
  for (int64_t p = 0; p < N * C; ++p) {
    const T* xp = x + p * H * W;  // [H, W]
    T* yp = y + p * OH * OW;      // [OH, OW]
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
        T sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * W + iw];
        }
        yp[oh * OW + ow] = sum / T((h1 - h0) * (w1 - w0));
      }
    }
  }
}

template <class T>
void adaptive_avg_pool2d_backward_ref(const T* dy, T* dx, int64_t N, int64_t C, int64_t H,
                                      int64_t W, int64_t OH, int64_t OW) {
  for (int64_t i = 0; i < N * C * H * W; ++i) dx[i] = T(0);
  for (int64_t p = 0; p < N * C; ++p) {
    const T* dyp = dy + p * OH * OW;  // [OH, OW]
    T* dxp = dx + p * H * W;          // [H, W]
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
        const T g = dyp[oh * OW + ow] / T((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) dxp[ih * W + iw] += g;
        }
      }
    }
  }
}

template void max_pool2d_forward_ref<float>(const float*, float*, const Pool2dDims&);
template void max_pool2d_backward_ref<float>(const float*, const float*, float*, const Pool2dDims&);
template void avg_pool2d_forward_ref<float>(const float*, float*, const Pool2dDims&, bool);
template void avg_pool2d_backward_ref<float>(const float*, float*, const Pool2dDims&, bool);
template void adaptive_avg_pool2d_forward_ref<float>(const float*, float*, int64_t, int64_t,
                                                     int64_t, int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward_ref<float>(const float*, float*, int64_t, int64_t,
                                                      int64_t, int64_t, int64_t, int64_t);

template void max_pool2d_forward_ref<double>(const double*, double*, const Pool2dDims&);
template void max_pool2d_backward_ref<double>(const double*, const double*, double*,
                                              const Pool2dDims&);
template void avg_pool2d_forward_ref<double>(const double*, double*, const Pool2dDims&, bool);
template void avg_pool2d_backward_ref<double>(const double*, double*, const Pool2dDims&, bool);
template void adaptive_avg_pool2d_forward_ref<double>(const double*, double*, int64_t, int64_t,
                                                      int64_t, int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward_ref<double>(const double*, double*, int64_t, int64_t,
                                                       int64_t, int64_t, int64_t, int64_t);

}  // namespace qat::kernels
