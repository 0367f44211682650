#include "core/kernels/fake_quant.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/kernels/simd.h"

namespace qat {

const char* rounding_mode_name(RoundingMode mode) {
  switch (mode) {
    case RoundingMode::kHalfEvenDiv:
      return "half_even_div";
    case RoundingMode::kHalfAway:
      return "half_away";
    case RoundingMode::kHalfEvenMul:
      return "half_even_mul";
  }
  return "unknown";
}

}  // namespace qat

namespace qat::kernels {
namespace {

// Below this many elements a loop stays on one thread.
constexpr int64_t kParallelGrain = 1 << 15;
// LSQ's dscale adds fixed-size blocks of a row in parallel, then the block sums in order.
constexpr int64_t kSumBlock = 1 << 14;
// A per-tensor fake quant hands the threads blocks of this many elements.
constexpr int64_t kRunBlock = 1 << 12;

// One channel's constants, hoisted out of the element loops.
template <class T>
struct Grid {
  T scale, inv_scale, zero_point, quant_min, quant_max;
  // x / s is pulled into [below, above] before rounding: one step outside the grid on each
  // side, so the clamped value and the STE mask stay what they were, and rounding needs no
  // range checks.
  T below, above;
};

template <class T>
std::vector<Grid<T>> make_grids(const T* scale, const int32_t* zero_point, int64_t quant_min,
                                int64_t quant_max, int64_t channels) {
  std::vector<Grid<T>> grids(channels);
  for (int64_t c = 0; c < channels; ++c) {
    // PyTorch: inv_scale = 1.0f / scale, in the element type's precision for float.
    const T zp = T(zero_point[c]);
    grids[c] = {scale[c],
                T(1) / scale[c],
                zp,
                T(quant_min),
                T(quant_max),
                T(quant_min) - zp - T(1),
                T(quant_max) - zp + T(1)};
  }
  return grids;
}

// x / s as the target computes it: PyTorch multiplies by the reciprocal, ONNX and TNN divide.
template <RoundingMode M, class T>
T scaled(T x, const Grid<T>& g) {
  if constexpr (M == RoundingMode::kHalfEvenMul) {
    return x * g.inv_scale;
  } else {
    return x / g.scale;
  }
}

// v pulled into [lo, hi]; NaN passes through.
template <class T>
T pull_into(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// std::nearbyint (ties to even, the default rounding mode) of a small |v| (< 2^22) without a
// libm call: adding and subtracting 1.5 * 2^(mantissa bits) leaves v rounded to an integer.
template <class T>
T round_half_even_small(T v) {
  constexpr T kMagic = std::is_same_v<T, float> ? T(12582912.0) : T(6755399441055744.0);
  return (v + kMagic) - kMagic;
}

// std::trunc of a small |w| (< 2^22) in float arithmetic only (no libm call, no integer
// conversion, so it vectorizes): floor |w| by rounding it to nearest and stepping back where that
// went up, then put w's sign back (signed zero included); NaN stays NaN.
template <class T>
T trunc_small(T w) {
  const T a = std::abs(w);
  const T r = round_half_even_small(a);
  return std::copysign(r > a ? r - T(1) : r, w);
}

// The grid value q, in the order of operations of each runtime (the zero point is added after
// rounding, except in TNN's float2int8(x / s + zp)); unclamped up to one step outside the grid
// (Grid::below / above), which the clamp and the mask cannot tell apart from further out.
// (Always inlined: the vectorized loops of fake_quant_run need it in their body.)
template <RoundingMode M, class T>
[[gnu::always_inline]] inline T quantize(T x, const Grid<T>& g) {
  if constexpr (M == RoundingMode::kHalfAway) {
    const T v = pull_into(x / g.scale, g.below, g.above) + g.zero_point;
    return trunc_small(v + (v >= T(0) ? T(0.5) : T(-0.5)));
  } else if constexpr (M == RoundingMode::kHalfEvenDiv) {
    return round_half_even_small(pull_into(x / g.scale, g.below, g.above)) + g.zero_point;
  } else {
    return g.zero_point + round_half_even_small(pull_into(x * g.inv_scale, g.below, g.above));
  }
}

template <class T>
T dequantize_clamped(T q, const Grid<T>& g) {
  return (std::min(std::max(q, g.quant_min), g.quant_max) - g.zero_point) * g.scale;
}

// Calls fn(std::integral_constant<RoundingMode, mode>) so each mode gets its own inlined loop.
template <class Fn>
void with_mode(RoundingMode mode, Fn&& fn) {
  switch (mode) {
    case RoundingMode::kHalfEvenDiv:
      fn(std::integral_constant<RoundingMode, RoundingMode::kHalfEvenDiv>());
      return;
    case RoundingMode::kHalfAway:
      fn(std::integral_constant<RoundingMode, RoundingMode::kHalfAway>());
      return;
    case RoundingMode::kHalfEvenMul:
      fn(std::integral_constant<RoundingMode, RoundingMode::kHalfEvenMul>());
      return;
  }
}

}  // namespace

// Fake-quantizes n elements that share one grid; returns how many fall outside it when a mask
// is written. Local pointers and a local copy of the grid (a lambda's captures would be reloaded
// after every store, which might alias them) and no branches, so `omp simd` vectorizes the loop.
template <RoundingMode M, class T>
QAT_SIMD_CLONES int64_t fake_quant_run(const T* x, int64_t n, const Grid<T>& grid, T* y,
                                       uint8_t* mask) {
  const Grid<T> g = grid;
  if (mask == nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = dequantize_clamped(quantize<M>(x[i], g), g);
    return 0;
  }
  // In the QAT_SIMD_CLONES copies, GCC 12 vectorizes a loop that mixes float math and byte
  // stores at 16 bytes only (a plain -mavx2 build does not have this problem). So the float math
  // (wide vectors) keeps the grid values of a block in a buffer that stays in L1, and a second
  // loop writes the mask bytes and counts them (an int32 count: an int64 one halves the vector
  // width).
  constexpr int64_t kBlock = 1024;
  T q[kBlock];
  int64_t outside = 0;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    const T* xb = x + begin;
    T* yb = y + begin;
    uint8_t* mb = mask + begin;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      q[i] = quantize<M>(xb[i], g);
      yb[i] = dequantize_clamped(q[i], g);
    }
    int32_t inside = 0;
#pragma omp simd reduction(+ : inside)
    for (int64_t i = 0; i < len; ++i) {
      const bool in_grid = (g.quant_min <= q[i]) & (q[i] <= g.quant_max);
      mb[i] = in_grid;
      inside += in_grid;
    }
    outside += len - inside;
  }
  return outside;
}

template <class T>
int64_t fake_quant_forward(RoundingMode mode, const T* x, const T* scale, const int32_t* zero_point,
                           int64_t quant_min, int64_t quant_max, int64_t outer, int64_t channels,
                           int64_t inner, T* y, uint8_t* mask) {
  const std::vector<Grid<T>> grids = make_grids(scale, zero_point, quant_min, quant_max, channels);
  int64_t outside = 0;
  with_mode(mode, [&](auto m) {
    constexpr RoundingMode M = decltype(m)::value;
    if (channels == 1) {
      // Per tensor: one grid, cut into blocks for the threads.
      const int64_t n = outer * inner;
      const int64_t blocks = (n + kRunBlock - 1) / kRunBlock;
#pragma omp parallel for schedule(static) reduction(+ : outside) if (n > kParallelGrain)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t begin = b * kRunBlock, len = std::min(kRunBlock, n - begin);
        outside += fake_quant_run<M>(x + begin, len, grids[0], y + begin,
                                     mask != nullptr ? mask + begin : nullptr);
      }
      return;
    }
    const int64_t rows = outer * channels;  // row r is channel r % channels
#pragma omp parallel for schedule(static) reduction(+ : outside) if (rows * inner > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t begin = r * inner;
      outside += fake_quant_run<M>(x + begin, inner, grids[r % channels], y + begin,
                                   mask != nullptr ? mask + begin : nullptr);
    }
  });
  return outside;
}

template <class T>
int64_t fake_quant_forward_ref(RoundingMode mode, const T* x, const T* scale,
                               const int32_t* zero_point, int64_t quant_min, int64_t quant_max,
                               int64_t outer, int64_t channels, int64_t inner, T* y,
                               uint8_t* mask) {
  const T lo = T(quant_min), hi = T(quant_max);
  int64_t outside = 0;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const T s = scale[c], zp = T(zero_point[c]);
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = (o * channels + c) * inner + i;
        T q = 0;
        switch (mode) {
          case RoundingMode::kHalfEvenDiv:
            q = std::nearbyint(x[k] / s) + zp;
            break;
          case RoundingMode::kHalfAway: {
            const T v = x[k] / s + zp;
            q = std::trunc(v + (v >= T(0) ? T(0.5) : T(-0.5)));
            break;
          }
          case RoundingMode::kHalfEvenMul:
            q = zp + std::nearbyint(x[k] * (T(1) / s));
            break;
        }
        y[k] = (std::min(std::max(q, lo), hi) - zp) * s;
        if (mask == nullptr) continue;
        mask[k] = lo <= q && q <= hi;
        outside += mask[k] == 0;
      }
    }
  }
  return outside;
}

template <class T>
void fake_quant_lsq_backward(RoundingMode mode, const T* x, const T* scale,
                             const int32_t* zero_point, int64_t quant_min, int64_t quant_max,
                             double grad_factor, int64_t outer, int64_t channels, int64_t inner,
                             const T* dy, T* dx, T* dscale) {
  const std::vector<Grid<T>> grids = make_grids(scale, zero_point, quant_min, quant_max, channels);
  const int64_t rows = outer * channels;
  const int64_t blocks_per_row = std::max<int64_t>(1, (inner + kSumBlock - 1) / kSumBlock);
  const int64_t tasks = rows * blocks_per_row;
  std::vector<double> partial(tasks);  // [outer, channels, blocks_per_row]
  with_mode(mode, [&](auto m) {
    constexpr RoundingMode M = decltype(m)::value;
#pragma omp parallel for schedule(static) if (rows * inner > kParallelGrain && tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t r = t / blocks_per_row, b = t % blocks_per_row;
      const Grid<T>& g = grids[r % channels];
      const int64_t begin = r * inner + b * kSumBlock;
      const int64_t end = r * inner + std::min(inner, (b + 1) * kSumBlock);
      double sum = 0;
      for (int64_t i = begin; i < end; ++i) {
        const T q = quantize<M>(x[i], g);
        T ds;
        if (q < g.quant_min) {
          ds = g.quant_min - g.zero_point;
        } else if (q > g.quant_max) {
          ds = g.quant_max - g.zero_point;
        } else {
          ds = (q - g.zero_point) - scaled<M>(x[i], g);
        }
        const bool inside = g.quant_min <= q && q <= g.quant_max;
        dx[i] = inside ? dy[i] : T(0);
        sum += static_cast<double>(dy[i] * ds);
      }
      partial[t] = sum;
    }
  });
  std::vector<double> total(channels, 0.0);
  for (int64_t t = 0; t < tasks; ++t) total[(t / blocks_per_row) % channels] += partial[t];
  for (int64_t c = 0; c < channels; ++c) dscale[c] = static_cast<T>(grad_factor * total[c]);
}

template <class T>
void fake_quant_lsq_backward_ref(RoundingMode mode, const T* x, const T* scale,
                                 const int32_t* zero_point, int64_t quant_min, int64_t quant_max,
                                 double grad_factor, int64_t outer, int64_t channels, int64_t inner,
                                 const T* dy, T* dx, T* dscale) {
  const T lo = T(quant_min), hi = T(quant_max);
  std::vector<double> total(channels, 0.0);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const T s = scale[c], zp = T(zero_point[c]);
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = (o * channels + c) * inner + i;
        T q = 0, x_over_s = 0;
        switch (mode) {
          case RoundingMode::kHalfEvenDiv:
            x_over_s = x[k] / s;
            q = std::nearbyint(x_over_s) + zp;
            break;
          case RoundingMode::kHalfAway: {
            x_over_s = x[k] / s;
            const T v = x_over_s + zp;
            q = std::trunc(v + (v >= T(0) ? T(0.5) : T(-0.5)));
            break;
          }
          case RoundingMode::kHalfEvenMul:
            x_over_s = x[k] * (T(1) / s);
            q = zp + std::nearbyint(x_over_s);
            break;
        }
        const T ds = q < lo ? lo - zp : q > hi ? hi - zp : (q - zp) - x_over_s;
        dx[k] = (lo <= q && q <= hi) ? dy[k] : T(0);
        total[c] += static_cast<double>(dy[k] * ds);
      }
    }
  }
  for (int64_t c = 0; c < channels; ++c) dscale[c] = static_cast<T>(grad_factor * total[c]);
}

#define QAT_INSTANTIATE_FAKE_QUANT(T)                                                            \
  template int64_t fake_quant_forward<T>(RoundingMode, const T*, const T*, const int32_t*,       \
                                         int64_t, int64_t, int64_t, int64_t, int64_t, T*,        \
                                         uint8_t*);                                              \
  template int64_t fake_quant_forward_ref<T>(RoundingMode, const T*, const T*, const int32_t*,   \
                                             int64_t, int64_t, int64_t, int64_t, int64_t, T*,    \
                                             uint8_t*);                                          \
  template void fake_quant_lsq_backward<T>(RoundingMode, const T*, const T*, const int32_t*,     \
                                           int64_t, int64_t, double, int64_t, int64_t, int64_t,  \
                                           const T*, T*, T*);                                    \
  template void fake_quant_lsq_backward_ref<T>(RoundingMode, const T*, const T*, const int32_t*, \
                                               int64_t, int64_t, double, int64_t, int64_t,       \
                                               int64_t, const T*, T*, T*);

QAT_INSTANTIATE_FAKE_QUANT(float)
QAT_INSTANTIATE_FAKE_QUANT(double)

#undef QAT_INSTANTIATE_FAKE_QUANT

}  // namespace qat::kernels
