#include "core/kernels/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include "core/kernels/simd.h"

namespace qat::kernels {
namespace {

// Below this many elements a loop stays on one thread: waking the pool costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;
// Full sums add fixed-size blocks in parallel, then the block sums in order, so the result does
// not depend on the thread count.
constexpr int64_t kSumBlock = 1 << 14;

// Calls fn with the functor for op, so each op gets its own inlined loop.
template <class T, class Fn>
void with_op(BinaryOp op, Fn&& fn) {
  switch (op) {
    case BinaryOp::kAdd:
      fn(std::plus<T>());
      return;
    case BinaryOp::kSub:
      fn(std::minus<T>());
      return;
    case BinaryOp::kMul:
      fn(std::multiplies<T>());
      return;
    case BinaryOp::kDiv:
      fn(std::divides<T>());
      return;
  }
}

// Strides of `small` broadcast to `big` (dims aligned at the right): 0 along repeated dims.
std::vector<int64_t> broadcast_strides(const Shape& small, const Shape& big) {
  std::vector<int64_t> strides(big.size(), 0);
  const std::vector<int64_t> own = contiguous_strides(small);
  const size_t lead = big.size() - small.size();
  for (size_t d = 0; d < small.size(); ++d)
    if (small[d] != 1) strides[lead + d] = own[d];
  return strides;
}

// Offset of flat (row-major) index i of `shape` in a buffer walked with `strides`.
int64_t strided_offset(int64_t i, const Shape& shape, const std::vector<int64_t>& strides) {
  int64_t offset = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    offset += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return offset;
}

// `big` viewed as [outer, mid, inner] such that `small`, broadcast to big, varies only along mid
// and is complete there. [C, 1, 1] in [N, C, H, W] is {N, C, H*W}; [K] in [N, K] is {N, K, 1};
// a single element is {1, 1, numel}. Empty when small repeats between two varying dims.
struct Channel {
  int64_t outer = 1, mid = 1, inner = 1;
};

std::optional<Channel> as_channel(const Shape& small, const Shape& big) {
  const int64_t lead = static_cast<int64_t>(big.size() - small.size());
  const int64_t rank = static_cast<int64_t>(big.size());
  int64_t first = rank, last = rank - 1;
  for (int64_t d = lead; d < rank; ++d) {
    if (small[d - lead] == 1) continue;
    first = std::min(first, d);
    last = d;
  }
  Channel c;
  if (first == rank) {  // a single element
    c.inner = shape_numel(big);
    return c;
  }
  for (int64_t d = first; d <= last; ++d)
    if (small[d - lead] != big[d]) return std::nullopt;
  for (int64_t d = 0; d < first; ++d) c.outer *= big[d];
  for (int64_t d = first; d <= last; ++d) c.mid *= big[d];
  for (int64_t d = last + 1; d < rank; ++d) c.inner *= big[d];
  return c;
}

// y[o, m, i] = g(full[o, m, i], ch[m]) for full: [outer, mid, inner], ch: [mid].
template <class T, class G>
void channel_loop(const T* full, const T* ch, T* y, const Channel& c, G g) {
  const int64_t rows = c.outer * c.mid;
  const int64_t n = rows * c.inner;
  if (c.mid == 1) {  // scalar operand: one flat loop
    const T s = ch[0];
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) y[i] = g(full[i], s);
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T s = ch[r % c.mid];
    const T* src = full + r * c.inner;
    T* dst = y + r * c.inner;
    for (int64_t i = 0; i < c.inner; ++i) dst[i] = g(src[i], s);
  }
}

template <class T>
double full_sum(const T* x, int64_t n) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(blocks);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    double s = 0;
    const int64_t end = std::min(n, (b + 1) * kSumBlock);
    for (int64_t i = b * kSumBlock; i < end; ++i) s += x[i];
    partial[b] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace

// ---- broadcasting binary ops

template <class T>
void binary(BinaryOp op, const T* a, const Shape& a_shape, const T* b, const Shape& b_shape, T* y,
            const Shape& y_shape) {
  const int64_t n = shape_numel(y_shape);
  // An operand broadcast to y with all of y's elements has y's layout (only size-1 dims differ).
  const bool a_full = shape_numel(a_shape) == n, b_full = shape_numel(b_shape) == n;
  with_op<T>(op, [&](auto f) {
    if (a_full && b_full) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
      return;
    }
    if (a_full) {
      if (std::optional<Channel> c = as_channel(b_shape, y_shape)) {
        channel_loop(a, b, y, *c, f);
        return;
      }
    }
    if (b_full) {
      if (std::optional<Channel> c = as_channel(a_shape, y_shape)) {
        channel_loop(b, a, y, *c, [f](T full, T ch) { return f(ch, full); });
        return;
      }
    }
    binary_ref(op, a, a_shape, b, b_shape, y, y_shape);
  });
}

template <class T>
void binary_ref(BinaryOp op, const T* a, const Shape& a_shape, const T* b, const Shape& b_shape,
                T* y, const Shape& y_shape) {
  const std::vector<int64_t> a_strides = broadcast_strides(a_shape, y_shape);
  const std::vector<int64_t> b_strides = broadcast_strides(b_shape, y_shape);
  const int64_t n = shape_numel(y_shape);
  with_op<T>(op, [&](auto f) {
    for (int64_t i = 0; i < n; ++i) {
      y[i] = f(a[strided_offset(i, y_shape, a_strides)], b[strided_offset(i, y_shape, b_strides)]);
    }
  });
}

template <class T>
void binary_scalar(BinaryOp op, const T* x, T s, T* y, int64_t n) {
  with_op<T>(op, [&](auto f) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) y[i] = f(x[i], s);
  });
}

template <class T>
void sum_to(const T* x, const Shape& x_shape, T* y, const Shape& y_shape) {
  const int64_t n = shape_numel(x_shape), m = shape_numel(y_shape);
  if (n == m) {
    std::copy(x, x + n, y);
    return;
  }
  const std::optional<Channel> c = as_channel(y_shape, x_shape);
  if (!c || n == 0) {
    sum_to_ref(x, x_shape, y, y_shape);
    return;
  }
  if (c->mid == 1) {
    y[0] = static_cast<T>(full_sum(x, n));
    return;
  }
  // One channel per iteration, each summed in a fixed order: deterministic at any thread count.
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t ch = 0; ch < c->mid; ++ch) {
    double s = 0;
    for (int64_t o = 0; o < c->outer; ++o) {
      const T* row = x + (o * c->mid + ch) * c->inner;
      for (int64_t i = 0; i < c->inner; ++i) s += row[i];
    }
    y[ch] = static_cast<T>(s);
  }
}

template <class T>
void sum_to_ref(const T* x, const Shape& x_shape, T* y, const Shape& y_shape) {
  const std::vector<int64_t> y_strides = broadcast_strides(y_shape, x_shape);
  std::vector<double> acc(shape_numel(y_shape), 0.0);
  const int64_t n = shape_numel(x_shape);
  for (int64_t i = 0; i < n; ++i) acc[strided_offset(i, x_shape, y_strides)] += x[i];
  for (size_t j = 0; j < acc.size(); ++j) y[j] = static_cast<T>(acc[j]);
}

template <class T>
void broadcast_to(const T* x, const Shape& x_shape, T* y, const Shape& y_shape) {
  const int64_t n = shape_numel(y_shape);
  if (shape_numel(x_shape) == n) {
    std::copy(x, x + n, y);
    return;
  }
  const std::optional<Channel> c = as_channel(x_shape, y_shape);
  if (!c) {
    broadcast_to_ref(x, x_shape, y, y_shape);
    return;
  }
  const int64_t rows = c->outer * c->mid;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) std::fill_n(y + r * c->inner, c->inner, x[r % c->mid]);
}

template <class T>
void broadcast_to_ref(const T* x, const Shape& x_shape, T* y, const Shape& y_shape) {
  const std::vector<int64_t> x_strides = broadcast_strides(x_shape, y_shape);
  const int64_t n = shape_numel(y_shape);
  for (int64_t i = 0; i < n; ++i) y[i] = x[strided_offset(i, y_shape, x_strides)];
}

// ---- activations

template <class T>
void clamp_forward(const T* x, T lo, T hi, T* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i] < lo ? lo : x[i];  // comparisons with NaN are false: NaN passes through
    y[i] = v > hi ? hi : v;
  }
}

// The masked backward passes below compute `keep ? dy : +0` as dy's bits ANDed with all ones or
// all zeros: bit-identical to the select (NaN/inf dy and -0 included), but without a branch, so
// the loops vectorize (and do not mispredict on random signs, as `y > 0 ? dy : 0` did: 0.5 s of
// mobilenet_v2's 1.3 s float step at 224 went to the branchy ReLU6 backward).
template <class T>
struct SameSizeUint;
template <>
struct SameSizeUint<float> {
  using type = uint32_t;
};
template <>
struct SameSizeUint<double> {
  using type = uint64_t;
};

template <class T>
inline T keep_or_zero(bool keep, T v) {
  using U = typename SameSizeUint<T>::type;
  U bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits &= U(0) - static_cast<U>(keep);  // all ones if keep, else 0
  std::memcpy(&v, &bits, sizeof bits);
  return v;
}

template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dx[i] = keep_or_zero(y[i] > T(0), dy[i]);
}

template <class T>
void clamp_backward(const T* x, T lo, T hi, bool inclusive, const T* dy, T* dx, int64_t n) {
  // Non-short-circuit `&`: both comparisons are cheap and a `&&` would be a branch.
  if (inclusive) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) dx[i] = keep_or_zero((lo <= x[i]) & (x[i] <= hi), dy[i]);
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) dx[i] = keep_or_zero((lo < x[i]) & (x[i] < hi), dy[i]);
  }
}

// ---- softmax and loss

// Each (o, i) lane holds C elements, inner apart. log_softmax = x - m - log(sum_c exp(x - m))
// with m = max_c x: the exponents are <= 0, so nothing overflows.
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t outer, int64_t C, int64_t inner) {
  const int64_t lanes = outer * inner;
#pragma omp parallel for schedule(static) if (lanes * C > kParallelGrain)
  for (int64_t l = 0; l < lanes; ++l) {
    const int64_t base = (l / inner) * C * inner + l % inner;
    const T* xs = x + base;
    T* ys = y + base;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t c = 0; c < C; ++c) m = std::max(m, xs[c * inner]);
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(xs[c * inner] - m);
    const T log_s = static_cast<T>(std::log(s));
    for (int64_t c = 0; c < C; ++c) ys[c * inner] = xs[c * inner] - m - log_s;
  }
}

template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t outer, int64_t C, int64_t inner) {
  const int64_t lanes = outer * inner;
#pragma omp parallel for schedule(static) if (lanes * C > kParallelGrain)
  for (int64_t l = 0; l < lanes; ++l) {
    const int64_t base = (l / inner) * C * inner + l % inner;
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += dy[base + c * inner];
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = base + c * inner;
      dx[k] = dy[k] - std::exp(y[k]) * static_cast<T>(s);
    }
  }
}

template <class T>
T nll_loss_forward(const T* logp, const int64_t* target, int64_t N, int64_t C, double eps) {
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T* row = logp + n * C;  // [C]
    double row_sum = 0;
    for (int64_t c = 0; c < C; ++c) row_sum += row[c];
    total -= (1 - eps) * row[target[n]] + eps / C * row_sum;
  }
  return static_cast<T>(total / N);
}

template <class T>
void nll_loss_backward(const int64_t* target, T dloss, int64_t N, int64_t C, double eps, T* dlogp) {
  const double g = static_cast<double>(dloss) / N;
  const T smooth = static_cast<T>(-g * eps / C), hit = static_cast<T>(-g * (1 - eps));
  std::fill_n(dlogp, N * C, smooth);
  for (int64_t n = 0; n < N; ++n) dlogp[n * C + target[n]] += hit;
}

// ---- dropout

void dropout_mask(uint8_t* mask, int64_t n, double p, Generator& gen) {
  for (int64_t i = 0; i < n; ++i) mask[i] = gen.bernoulli(1 - p) ? 1 : 0;
}

template <class T>
void masked_scale(const T* x, const uint8_t* mask, T scale, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) y[i] = keep_or_zero(mask[i] != 0, x[i] * scale);
}

// ---- reductions

namespace {

// Folds n values into the running lo / hi. `v < lo ? v : lo` skips NaNs (the comparison is false)
// and is exactly the vector minimum instruction, so sixteen independent lanes, combined at the
// end, vectorize; min and max are exact, so the lane order changes nothing but the sign of a
// zero extreme.
QAT_SIMD_CLONES void fold_min_max(const float* x, int64_t n, float& lo, float& hi) {
  constexpr int kLanes = 16;
  float lane_lo[kLanes], lane_hi[kLanes];
  std::fill_n(lane_lo, kLanes, lo);
  std::fill_n(lane_hi, kLanes, hi);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) {
      const float v = x[i + k];
      lane_lo[k] = v < lane_lo[k] ? v : lane_lo[k];
      lane_hi[k] = v > lane_hi[k] ? v : lane_hi[k];
    }
  }
  for (; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  for (int k = 0; k < kLanes; ++k) {
    lo = lane_lo[k] < lo ? lane_lo[k] : lo;
    hi = lane_hi[k] > hi ? lane_hi[k] : hi;
  }
}

}  // namespace

void min_max(const float* x, int64_t outer, int64_t channels, int64_t inner, float* mins,
             float* maxs) {
  if (channels == 1) {
    // The threads fold blocks; partials are never NaN, so the OpenMP min / max combine is exact.
    const int64_t n = outer * inner;
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    float lo = INFINITY, hi = -INFINITY;
#pragma omp parallel for schedule(static) reduction(min                 \
                                                    : lo) reduction(max \
                                                                    : hi) if (n > kParallelGrain)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * kSumBlock;
      fold_min_max(x + begin, std::min(kSumBlock, n - begin), lo, hi);
    }
    mins[0] = lo;
    maxs[0] = hi;
    return;
  }
#pragma omp parallel for schedule(static) if (outer * channels * inner > kParallelGrain)
  for (int64_t c = 0; c < channels; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t o = 0; o < outer; ++o) fold_min_max(x + (o * channels + c) * inner, inner, lo, hi);
    mins[c] = lo;
    maxs[c] = hi;
  }
}

void min_max_ref(const float* x, int64_t outer, int64_t channels, int64_t inner, float* mins,
                 float* maxs) {
  for (int64_t c = 0; c < channels; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        const float v = x[(o * channels + c) * inner + i];
        if (std::isnan(v)) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    mins[c] = lo;
    maxs[c] = hi;
  }
}

// ---- layout copies

template <class T>
void permute(const T* x, const Shape& x_shape, const std::vector<int64_t>& dims, T* y) {
  // Trailing dims that stay in place move as one contiguous block of `inner` elements (H * W
  // for channel_shuffle); the leading `keep` dims are walked with permuted source strides.
  int64_t keep = static_cast<int64_t>(dims.size()), inner = 1;
  while (keep > 0 && dims[keep - 1] == keep - 1) inner *= x_shape[--keep];
  const std::vector<int64_t> x_strides = contiguous_strides(x_shape);
  Shape outer_shape(keep);
  std::vector<int64_t> src_strides(keep);
  for (int64_t d = 0; d < keep; ++d) {
    outer_shape[d] = x_shape[dims[d]];
    src_strides[d] = x_strides[dims[d]];
  }
  const int64_t blocks = shape_numel(outer_shape);
#pragma omp parallel for schedule(static) if (blocks * inner > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const T* src = x + strided_offset(b, outer_shape, src_strides);
    std::copy(src, src + inner, y + b * inner);
  }
}

template <class T>
void copy_rows(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t rows,
               int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(src + r * src_stride, src + r * src_stride + cols, dst + r * dst_stride);
  }
}

// ---- instantiations: float trains, double runs gradcheck

template void binary(BinaryOp, const float*, const Shape&, const float*, const Shape&, float*,
                     const Shape&);
template void binary(BinaryOp, const double*, const Shape&, const double*, const Shape&, double*,
                     const Shape&);
template void binary_ref(BinaryOp, const float*, const Shape&, const float*, const Shape&, float*,
                         const Shape&);
template void binary_ref(BinaryOp, const double*, const Shape&, const double*, const Shape&,
                         double*, const Shape&);
template void binary_scalar(BinaryOp, const float*, float, float*, int64_t);
template void binary_scalar(BinaryOp, const double*, double, double*, int64_t);
template void sum_to(const float*, const Shape&, float*, const Shape&);
template void sum_to(const double*, const Shape&, double*, const Shape&);
template void sum_to_ref(const float*, const Shape&, float*, const Shape&);
template void sum_to_ref(const double*, const Shape&, double*, const Shape&);
template void broadcast_to(const float*, const Shape&, float*, const Shape&);
template void broadcast_to(const double*, const Shape&, double*, const Shape&);
template void broadcast_to_ref(const float*, const Shape&, float*, const Shape&);
template void broadcast_to_ref(const double*, const Shape&, double*, const Shape&);
template void clamp_forward(const float*, float, float, float*, int64_t);
template void clamp_forward(const double*, double, double, double*, int64_t);
template void relu_backward(const float*, const float*, float*, int64_t);
template void relu_backward(const double*, const double*, double*, int64_t);
template void clamp_backward(const float*, float, float, bool, const float*, float*, int64_t);
template void clamp_backward(const double*, double, double, bool, const double*, double*, int64_t);
template void log_softmax_forward(const float*, float*, int64_t, int64_t, int64_t);
template void log_softmax_forward(const double*, double*, int64_t, int64_t, int64_t);
template void log_softmax_backward(const float*, const float*, float*, int64_t, int64_t, int64_t);
template void log_softmax_backward(const double*, const double*, double*, int64_t, int64_t,
                                   int64_t);
template float nll_loss_forward(const float*, const int64_t*, int64_t, int64_t, double);
template double nll_loss_forward(const double*, const int64_t*, int64_t, int64_t, double);
template void nll_loss_backward(const int64_t*, float, int64_t, int64_t, double, float*);
template void nll_loss_backward(const int64_t*, double, int64_t, int64_t, double, double*);
template void masked_scale(const float*, const uint8_t*, float, float*, int64_t);
template void masked_scale(const double*, const uint8_t*, double, double*, int64_t);
template void permute(const float*, const Shape&, const std::vector<int64_t>&, float*);
template void permute(const double*, const Shape&, const std::vector<int64_t>&, double*);
template void copy_rows(const float*, int64_t, float*, int64_t, int64_t, int64_t);
template void copy_rows(const double*, int64_t, double*, int64_t, int64_t, int64_t);

}  // namespace qat::kernels
