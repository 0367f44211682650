#pragma once

#include <cstdint>
#include <vector>

#include "core/random.h"
#include "core/shape.h"

// Elementwise math, reductions, softmax and layout copies on raw contiguous buffers.
// Every function is a template on the element type T, instantiated for float and double in
// elementwise.cc. Kernels with fast paths (binary, sum_to, broadcast_to) have a plain-loop *_ref
// twin that handles any broadcast; the others are single plain loops and are their own reference.
namespace qat::kernels {

enum class BinaryOp { kAdd, kSub, kMul, kDiv };

// ---- broadcasting binary ops

// y = a op b with NumPy broadcasting; y_shape must be the broadcast of a_shape and b_shape.
// Fast paths: same shape, one operand a single element, one operand a "channel" of the other
// (e.g. [N, C, H, W] op [C, 1, 1] or [1, C, 1, 1], [N, K] op [K]).
template <class T>
void binary(BinaryOp op, const T* a, const Shape& a_shape, const T* b, const Shape& b_shape, T* y,
            const Shape& y_shape);
template <class T>
void binary_ref(BinaryOp op, const T* a, const Shape& a_shape, const T* b, const Shape& b_shape,
                T* y, const Shape& y_shape);

// y = x op s for a scalar s.
template <class T>
void binary_scalar(BinaryOp op, const T* x, T s, T* y, int64_t n);

// Sums x over the dims where y_shape broadcasts: the adjoint of broadcast_to, i.e. the gradient
// of a broadcast input. y_shape must broadcast to x_shape. Accumulates in double.
template <class T>
void sum_to(const T* x, const Shape& x_shape, T* y, const Shape& y_shape);
template <class T>
void sum_to_ref(const T* x, const Shape& x_shape, T* y, const Shape& y_shape);

// Copies x into the larger y, repeating it along broadcast dims (torch.Tensor.expand + copy).
template <class T>
void broadcast_to(const T* x, const Shape& x_shape, T* y, const Shape& y_shape);
template <class T>
void broadcast_to_ref(const T* x, const Shape& x_shape, T* y, const Shape& y_shape);

// ---- activations

// y = min(max(x, lo), hi); NaN stays NaN. relu is clamp(x, 0, +inf).
template <class T>
void clamp_forward(const T* x, T lo, T hi, T* y, int64_t n);
// dx = dy where y > 0, from the saved output y = relu(x) (y > 0 exactly where x > 0).
template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n);
// dx = dy where lo < x < hi (inclusive == false, hardtanh_backward) or lo <= x <= hi (clamp).
template <class T>
void clamp_backward(const T* x, T lo, T hi, bool inclusive, const T* dy, T* dx, int64_t n);

// ---- softmax and loss; x viewed as [outer, C, inner] with softmax over C

template <class T>
void log_softmax_forward(const T* x, T* y, int64_t outer, int64_t C, int64_t inner);
// dx = dy - exp(y) * sum_C(dy), from the forward output y.
template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t outer, int64_t C, int64_t inner);

// Label-smoothed negative log likelihood, mean over N (targets already range-checked):
// loss = mean_n[(1 - eps) * -logp[n, t_n] + eps * mean_c(-logp[n, c])].
template <class T>
T nll_loss_forward(const T* logp, const int64_t* target, int64_t N, int64_t C, double eps);
// dlogp[n, c] = dloss / N * -((1 - eps) * [c == t_n] + eps / C).
template <class T>
void nll_loss_backward(const int64_t* target, T dloss, int64_t N, int64_t C, double eps, T* dlogp);

// ---- dropout

// mask[i] = 1 with probability 1 - p, else 0. Serial: Generator is not thread-safe.
void dropout_mask(uint8_t* mask, int64_t n, double p, Generator& gen);
// y = mask ? x * scale : 0. Forward (x) and backward (dy) both use it, scale = 1 / (1 - p).
template <class T>
void masked_scale(const T* x, const uint8_t* mask, T scale, T* y, int64_t n);

// ---- reductions

// Per-channel minimum and maximum of x viewed as [outer, channels, inner] (channels = 1: the
// whole tensor), as torch.aminmax over all dims but one: NaNs are skipped, and a channel without
// a number gets +inf / -inf. When a channel's extreme is zero, its sign may depend on the
// order (min(-0, +0) keeps the first).
void min_max(const float* x, int64_t outer, int64_t channels, int64_t inner, float* mins,
             float* maxs);
void min_max_ref(const float* x, int64_t outer, int64_t channels, int64_t inner, float* mins,
                 float* maxs);

// ---- layout copies

// y = x.permute(dims): y_shape[i] = x_shape[dims[i]].
template <class T>
void permute(const T* x, const Shape& x_shape, const std::vector<int64_t>& dims, T* y);
// Copies a [rows, cols] block between buffers whose rows start src_stride / dst_stride elements
// apart; cat and split are one call per piece on the [outer, size(dim) * inner] view.
template <class T>
void copy_rows(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t rows,
               int64_t cols);

}  // namespace qat::kernels
