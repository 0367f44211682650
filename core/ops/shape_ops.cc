#include "core/ops/shape_ops.h"

#include <algorithm>
#include <numeric>

#include "core/autograd.h"
#include "core/kernels/elementwise.h"
#include "core/ops/op_helpers.h"
#include "core/trace_hook.h"

namespace qat::ops {
namespace {

using detail::dispatch_floating;
using detail::numel_between;
using detail::wrap_dim;

// A view of x with a new shape, recorded as `api`; the gradient is dy viewed back.
Tensor view_op(const char* api, const Tensor& x, const Shape& shape) {
  Tensor y = x.view(shape);
  record(y, api, {x},
         [x_shape = x.shape()](const Tensor& dy) -> Grads { return {dy.view(x_shape)}; });
  return y;
}

// y = x.permute(perm) for a validated permutation, recorded as `api`; the gradient is dy
// permuted back by the inverse.
Tensor permuted(const char* api, const Tensor& x, const std::vector<int64_t>& perm) {
  Shape shape(perm.size());
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    shape[i] = x.shape()[perm[i]];
    inverse[perm[i]] = static_cast<int64_t>(i);
  }
  Tensor y = Tensor::empty(shape, x.dtype());
  dispatch_floating(x.dtype(), api, [&](auto tag) {
    using T = decltype(tag);
    kernels::permute(x.data<T>(), x.shape(), perm, y.data<T>());
  });
  record(y, api, {x},
         [api, inverse](const Tensor& dy) -> Grads { return {permuted(api, dy, inverse)}; });
  return y;
}

// cat and split see each tensor as [outer, size(dim) * inner]: a piece is a block of columns.
Tensor cat_values(const std::vector<Tensor>& xs, int64_t dim) {
  Shape shape = xs[0].shape();
  shape[dim] = 0;
  for (const Tensor& x : xs) shape[dim] += x.size(dim);
  const int64_t outer = numel_between(shape, 0, dim);
  const int64_t inner = numel_between(shape, dim + 1, static_cast<int64_t>(shape.size()));
  Tensor y = Tensor::empty(shape, xs[0].dtype());
  dispatch_floating(y.dtype(), "cat", [&](auto tag) {
    using T = decltype(tag);
    int64_t column = 0;
    for (const Tensor& x : xs) {
      const int64_t cols = x.size(dim) * inner;
      kernels::copy_rows(x.data<T>(), cols, y.data<T>() + column, shape[dim] * inner, outer, cols);
      column += cols;
    }
  });
  return y;
}

std::vector<Tensor> split_values(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t outer = numel_between(x.shape(), 0, dim);
  const int64_t inner = numel_between(x.shape(), dim + 1, x.dim());
  std::vector<Tensor> pieces;
  dispatch_floating(x.dtype(), "split", [&](auto tag) {
    using T = decltype(tag);
    int64_t column = 0;
    for (int64_t size : sizes) {
      Shape shape = x.shape();
      shape[dim] = size;
      Tensor piece = Tensor::empty(shape, x.dtype());
      const int64_t cols = size * inner;
      kernels::copy_rows(x.data<T>() + column, x.size(dim) * inner, piece.data<T>(), cols, outer,
                         cols);
      column += cols;
      pieces.push_back(piece);
    }
  });
  return pieces;
}

// split with checked sizes, recorded as `api`. Outputs nobody used get a zero gradient.
std::vector<Tensor> split_op(const char* api, const Tensor& x, const std::vector<int64_t>& sizes,
                             int64_t dim) {
  std::vector<Tensor> pieces = split_values(x, sizes, dim);
  record_multi(pieces, api, {x},
               [x_shape = x.shape(), dtype = x.dtype(), sizes, dim](const Grads& dys) -> Grads {
                 std::vector<Tensor> parts(dys.begin(), dys.end());
                 for (size_t k = 0; k < parts.size(); ++k) {
                   if (parts[k].defined()) continue;
                   Shape shape = x_shape;
                   shape[dim] = sizes[k];
                   parts[k] = Tensor::zeros(shape, dtype);
                 }
                 return {cat_values(parts, dim)};
               });
  return pieces;
}

// The values of channel_shuffle: [N, g, C/g, H*W] -> [N, C/g, g, H*W].
Tensor shuffled(const Tensor& x, int64_t groups) {
  const Shape& s = x.shape();  // [N, C, H, W]
  Tensor y = Tensor::empty(s, x.dtype());
  dispatch_floating(x.dtype(), "channel_shuffle", [&](auto tag) {
    using T = decltype(tag);
    kernels::permute(x.data<T>(), {s[0], groups, s[1] / groups, s[2] * s[3]}, {0, 2, 1, 3},
                     y.data<T>());
  });
  return y;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor y = view_op("reshape", x, shape);
  if (op_tracing()) trace_op("reshape", {x}, {y}, {{"shape", shape}});
  return y;
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  Shape shape{1};  // as PyTorch: a 0-d tensor becomes [1]
  if (x.dim() > 0) {
    const int64_t start = wrap_dim("flatten", start_dim, x.dim());
    const int64_t end = wrap_dim("flatten", end_dim, x.dim());
    QAT_CHECK(start <= end, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim,
              " for shape ", shape_str(x.shape()));
    shape.assign(x.shape().begin(), x.shape().begin() + start);
    shape.push_back(numel_between(x.shape(), start, end + 1));
    shape.insert(shape.end(), x.shape().begin() + end + 1, x.shape().end());
  }
  Tensor y = view_op("flatten", x, shape);
  if (op_tracing()) trace_op("flatten", {x}, {y}, {{"start_dim", start_dim}, {"end_dim", end_dim}});
  return y;
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> perm(x.dim());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[wrap_dim("transpose", dim0, x.dim())], perm[wrap_dim("transpose", dim1, x.dim())]);
  Tensor y = permuted("transpose", x, perm);
  if (op_tracing()) trace_op("transpose", {x}, {y}, {{"dim0", dim0}, {"dim1", dim1}});
  return y;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  const int64_t rank = x.dim();
  QAT_CHECK(static_cast<int64_t>(dims.size()) == rank, "permute: expected ", rank,
            " dims for shape ", shape_str(x.shape()), ", got ", shape_str(dims));
  std::vector<int64_t> perm(rank);
  std::vector<bool> seen(rank, false);
  for (int64_t i = 0; i < rank; ++i) {
    perm[i] = wrap_dim("permute", dims[i], rank);
    QAT_CHECK(!seen[perm[i]], "permute: dim ", dims[i], " repeats in ", shape_str(dims));
    seen[perm[i]] = true;
  }
  Tensor y = permuted("permute", x, perm);
  if (op_tracing()) trace_op("permute", {x}, {y}, {{"dims", perm}});
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  QAT_CHECK(!xs.empty(), "cat: expected at least one tensor");
  const Shape& first = xs[0].shape();
  const int64_t d = wrap_dim("cat", dim, xs[0].dim());
  for (size_t k = 1; k < xs.size(); ++k) {
    QAT_CHECK(xs[k].dtype() == xs[0].dtype(), "cat: tensor ", k, " is ", dtype_name(xs[k].dtype()),
              " but tensor 0 is ", dtype_name(xs[0].dtype()));
    Shape expected = first;
    expected[d] = xs[k].dim() == xs[0].dim() ? xs[k].size(d) : -1;
    QAT_CHECK(xs[k].shape() == expected, "cat: tensor ", k, " has shape ", shape_str(xs[k].shape()),
              " but tensor 0 has ", shape_str(first), "; they must match except in dim ", d);
  }
  Tensor y = cat_values(xs, d);
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.size(d));
  record(y, "cat", xs,
         [sizes, d](const Tensor& dy) -> Grads { return split_values(dy, sizes, d); });
  if (op_tracing()) trace_op("cat", xs, {y}, {{"dim", d}});
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim("split", dim, x.dim());
  int64_t total = 0;
  for (int64_t size : sizes) {
    QAT_CHECK(size >= 0, "split: negative size in ", shape_str(sizes));
    total += size;
  }
  QAT_CHECK(total == x.size(d), "split: sizes ", shape_str(sizes), " sum to ", total, " but dim ",
            d, " of ", shape_str(x.shape()), " has size ", x.size(d));
  std::vector<Tensor> pieces = split_op("split", x, sizes, d);
  if (op_tracing()) trace_op("split", {x}, pieces, {{"sizes", sizes}, {"dim", d}});
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  QAT_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t d = wrap_dim("chunk", dim, x.dim());
  const int64_t size = x.size(d);
  // ceil(size / chunks) per piece; an empty dim still gives `chunks` empty pieces (PyTorch).
  const int64_t piece = (size + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  if (size == 0) sizes.assign(chunks, 0);
  for (int64_t start = 0; start < size; start += piece)
    sizes.push_back(std::min(piece, size - start));
  std::vector<Tensor> pieces = split_op("chunk", x, sizes, d);
  if (op_tracing()) trace_op("chunk", {x}, pieces, {{"chunks", chunks}, {"dim", d}});
  return pieces;
}

Tensor channel_shuffle(const Tensor& x, int64_t groups) {
  QAT_CHECK(x.dim() == 4, "channel_shuffle: expected [N, C, H, W], got ", shape_str(x.shape()));
  QAT_CHECK(groups > 0, "channel_shuffle: groups must be positive, got ", groups);
  QAT_CHECK(x.size(1) % groups == 0, "channel_shuffle: channels ", x.size(1),
            " are not divisible by groups ", groups);
  Tensor y = shuffled(x, groups);
  // Shuffling [g, C/g] -> [C/g, g] is undone by shuffling with C/g groups.
  record(y, "channel_shuffle", {x}, [inverse = x.size(1) / groups](const Tensor& dy) -> Grads {
    return {shuffled(dy, inverse)};
  });
  if (op_tracing()) trace_op("channel_shuffle", {x}, {y}, {{"groups", groups}});
  return y;
}

}  // namespace qat::ops
