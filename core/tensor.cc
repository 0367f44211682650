#include "core/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/allocator.h"
#include "core/autograd.h"

namespace qat {
namespace {

template <class Fn>
void dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      fn(float{});
      return;
    case DType::kFloat64:
      fn(double{});
      return;
    case DType::kInt8:
      fn(int8_t{});
      return;
    case DType::kUInt8:
      fn(uint8_t{});
      return;
    case DType::kInt32:
      fn(int32_t{});
      return;
    case DType::kInt64:
      fn(int64_t{});
      return;
  }
}

// Converts n elements between any two dtypes. Float -> int truncates toward zero, like a C cast
// (PyTorch's .to(int) does the same); quantization code rounds explicitly before converting.
void convert_elements(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
  dispatch_dtype(src_dtype, [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch_dtype(dst_dtype, [&](auto dst_tag) {
      using D = decltype(dst_tag);
      const S* s = static_cast<const S*>(src);
      D* d = static_cast<D*>(dst);
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
    });
  });
}

}  // namespace

Storage::Storage(size_t nbytes) : nbytes_(nbytes) {
  Block block = allocate_block(nbytes);
  data_ = block.data;
  capacity_ = block.capacity;
}

Storage::~Storage() { free_block({data_, capacity_}); }

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t s : shape) QAT_CHECK(s >= 0, "negative size in shape ", shape_str(shape));
  size_t nbytes = 0;
  QAT_CHECK(
      !__builtin_mul_overflow(static_cast<size_t>(shape_numel(shape)), dtype_size(dtype), &nbytes),
      "a ", dtype_name(dtype), " tensor of shape ", shape_str(shape), " is too large");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(nbytes);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(i);
  });
  return t;
}

int64_t Tensor::size(int64_t d) const { return impl().shape[normalize_dim(d, dim())]; }

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor" << shape_str(shape()) << " " << dtype_name(dtype());
  if (numel() <= 16) {
    os << " {";
    std::vector<double> v = to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    os << "}";
  }
  return os.str();
}

void* Tensor::raw_data() const {
  const TensorImpl& t = impl();
  return static_cast<char*>(t.storage->data()) + t.offset_bytes;
}

void Tensor::check_dtype(DType expected) const {
  QAT_CHECK(dtype() == expected, "expected a ", dtype_name(expected), " tensor, got ",
            dtype_name(dtype()), " of shape ", shape_str(shape()));
}

double Tensor::item() const {
  QAT_CHECK(numel() == 1, "item() needs a one-element tensor, got shape ", shape_str(shape()));
  double v = 0;
  convert_elements(raw_data(), dtype(), &v, DType::kFloat64, 1);
  return v;
}

Tensor Tensor::view(const Shape& new_shape) const {
  Shape resolved = new_shape;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1) {
      QAT_CHECK(infer_at < 0, "view: only one dimension can be -1, got ", shape_str(new_shape));
      infer_at = static_cast<int64_t>(i);
    } else {
      QAT_CHECK(resolved[i] >= 0, "view: invalid size in ", shape_str(new_shape));
      known *= resolved[i];
    }
  }
  if (infer_at >= 0) {
    QAT_CHECK(known > 0 && numel() % known == 0, "view: shape ", shape_str(new_shape),
              " is invalid for input of size ", numel());
    resolved[infer_at] = numel() / known;
  }
  QAT_CHECK(shape_numel(resolved) == numel(), "view: shape ", shape_str(new_shape),
            " is invalid for input of shape ", shape_str(shape()));
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  v->offset_bytes = impl().offset_bytes;
  v->shape = resolved;
  v->dtype = dtype();
  return Tensor(std::move(v));
}

Tensor Tensor::slice0(int64_t start, int64_t length) const {
  QAT_CHECK(dim() >= 1, "slice0 needs at least one dimension");
  QAT_CHECK(start >= 0 && length >= 0 && start + length <= shape()[0], "slice0: rows [", start,
            ", ", start + length, ") out of range for shape ", shape_str(shape()));
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  int64_t row = dim() == 1 ? 1 : shape_numel(Shape(shape().begin() + 1, shape().end()));
  v->offset_bytes = impl().offset_bytes + static_cast<size_t>(start * row) * dtype_size(dtype());
  v->shape = shape();
  v->shape[0] = length;
  v->dtype = dtype();
  return Tensor(std::move(v));
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype());
  std::memcpy(out.raw_data(), raw_data(), nbytes());
  return out;
}

Tensor Tensor::detach() const {
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  v->offset_bytes = impl().offset_bytes;
  v->shape = shape();
  v->dtype = dtype();
  return Tensor(std::move(v));
}

Tensor Tensor::to(DType new_dtype) const {
  if (new_dtype == dtype()) return *this;
  Tensor out = empty(shape(), new_dtype);
  convert_elements(raw_data(), dtype(), out.raw_data(), new_dtype, numel());
  return out;
}

bool Tensor::shares_storage(const Tensor& other) const {
  return defined() && other.defined() && impl().storage == other.impl().storage;
}

Tensor& Tensor::copy_(const Tensor& src) {
  QAT_CHECK(src.numel() == numel(), "copy_: source shape ", shape_str(src.shape()),
            " does not match destination shape ", shape_str(shape()));
  if (src.dtype() == dtype()) {
    std::memmove(raw_data(), src.raw_data(), nbytes());
  } else {
    convert_elements(src.raw_data(), src.dtype(), raw_data(), dtype(), numel());
  }
  return *this;
}

Tensor& Tensor::fill_(double value) {
  int64_t n = numel();
  dispatch_dtype(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(raw_data());
    T v = static_cast<T>(value);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = v;
  });
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  QAT_CHECK(other.shape() == shape(), "add_: shape ", shape_str(other.shape()), " does not match ",
            shape_str(shape()));
  QAT_CHECK(other.dtype() == dtype(), "add_: dtype ", dtype_name(other.dtype()), " does not match ",
            dtype_name(dtype()));
  int64_t n = numel();
  dispatch_dtype(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(raw_data());
    const T* q = static_cast<const T*>(other.raw_data());
    if constexpr (std::is_floating_point_v<T>) {
      T a = static_cast<T>(alpha);
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) p[i] += a * q[i];
    } else {
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(p[i] + alpha * q[i]);
    }
  });
  return *this;
}

Tensor& Tensor::mul_(double factor) {
  int64_t n = numel();
  dispatch_dtype(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(raw_data());
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(p[i] * factor);
  });
  return *this;
}

Tensor& Tensor::resize_(const Shape& new_shape) {
  if (new_shape == shape()) return *this;
  TensorImpl& t = impl();
  t.storage = empty(new_shape, t.dtype).impl().storage;
  t.offset_bytes = 0;
  t.shape = new_shape;
  return *this;
}

bool Tensor::requires_grad() const { return impl().requires_grad || impl().grad_fn != nullptr; }

Tensor& Tensor::requires_grad_(bool value) {
  QAT_CHECK(is_leaf(), "requires_grad_ can only be set on a leaf tensor");
  QAT_CHECK(!value || is_floating(dtype()), "only floating-point tensors can require grad, got ",
            dtype_name(dtype()));
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(impl().grad); }

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined()) {
    QAT_CHECK(grad.shape() == shape(), "set_grad: gradient shape ", shape_str(grad.shape()),
              " does not match tensor shape ", shape_str(shape()));
  }
  impl().grad = grad.impl_ptr();
}

void Tensor::backward(const Tensor& grad) const { run_backward(*this, grad); }

}  // namespace qat
