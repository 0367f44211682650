#include <algorithm>

#include "core/kernels/conv.h"

namespace qat::kernels {
namespace {

// Calls tap(xi, wi, yi) with the flat indices of every (input, weight, output) triple that meets
// in y[n, oc, oh, ow] += x[n, g*C/G + ic, ih, iw] * w[oc, ic, kh, kw], where g = oc / (OC/G),
// ih = oh*SH - PH + kh*DH and iw = ow*SW - PW + kw*DW. Taps that land in the zero padding are
// skipped. The forward and both backward kernels are this one enumeration, so they are adjoint
// by construction.
template <class Tap>
void for_each_tap(const Conv2dShape& s, Tap tap) {
  const int64_t CG = s.C / s.G, OCG = s.OC / s.G;
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      const int64_t g = oc / OCG;
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t yi = ((n * s.OC + oc) * s.OH + oh) * s.OW + ow;
          for (int64_t ic = 0; ic < CG; ++ic) {
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
                if (iw < 0 || iw >= s.W) continue;
                const int64_t xi = ((n * s.C + g * CG + ic) * s.H + ih) * s.W + iw;
                const int64_t wi = ((oc * CG + ic) * s.KH + kh) * s.KW + kw;
                tap(xi, wi, yi);
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace

template <class T>
void conv2d_forward_ref(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t plane = s.OH * s.OW;
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      std::fill_n(y + (n * s.OC + oc) * plane, plane, b ? b[oc] : T(0));
    }
  }
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += x[xi] * w[wi]; });
}

template <class T>
void conv2d_backward_data_ref(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  std::fill_n(dx, s.N * s.C * s.H * s.W, T(0));
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) { dx[xi] += dy[yi] * w[wi]; });
}

template <class T>
void conv2d_backward_weight_ref(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* db) {
  std::fill_n(dw, s.OC * (s.C / s.G) * s.KH * s.KW, T(0));
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) { dw[wi] += dy[yi] * x[xi]; });
  if (!db) return;
  const int64_t plane = s.OH * s.OW;
  for (int64_t oc = 0; oc < s.OC; ++oc) {
    T sum = 0;
    for (int64_t n = 0; n < s.N; ++n) {
      const T* dy_plane = dy + (n * s.OC + oc) * plane;
      for (int64_t i = 0; i < plane; ++i) sum += dy_plane[i];
    }
    db[oc] = sum;
  }
}

template void conv2d_forward_ref<float>(const Conv2dShape&, const float*, const float*,
                                        const float*, float*);
template void conv2d_forward_ref<double>(const Conv2dShape&, const double*, const double*,
                                         const double*, double*);
template void conv2d_backward_data_ref<float>(const Conv2dShape&, const float*, const float*,
                                              float*);
template void conv2d_backward_data_ref<double>(const Conv2dShape&, const double*, const double*,
                                               double*);
template void conv2d_backward_weight_ref<float>(const Conv2dShape&, const float*, const float*,
                                                float*, float*);
template void conv2d_backward_weight_ref<double>(const Conv2dShape&, const double*, const double*,
                                                 double*, double*);

}  // namespace qat::kernels
