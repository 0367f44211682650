#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace qat {

class Node;
class Tensor;

// A block of 64-byte aligned memory shared by a tensor and its views (from core/allocator.h).
class Storage {
 public:
  explicit Storage(size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const noexcept { return data_; }
  size_t nbytes() const noexcept { return nbytes_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  size_t capacity_ = 0;  // what the allocator handed out (core/allocator.h)
};

// What a Tensor handle points to. Always contiguous (row-major); a view differs from its base
// only in shape and byte offset.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset_bytes = 0;
  Shape shape;
  DType dtype = DType::kFloat32;
  bool requires_grad = false;  // set on leaves; non-leaves require grad iff grad_fn is set
  std::shared_ptr<Node> grad_fn;
  int output_nr = 0;  // which output of grad_fn this tensor is
  std::shared_ptr<TensorImpl> grad;
};

// A shared handle to an n-dimensional array, as torch::Tensor. Copies alias; the only writers of
// an existing tensor are the in-place methods ending in `_`. Differentiable functions live in
// qat::ops (core/ops/*.h); the methods here do not record autograd history.
class Tensor {
 public:
  Tensor() = default;  // undefined
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories
  static Tensor empty(const Shape& shape, DType dtype = DType::kFloat32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::kFloat32);
  static Tensor ones(const Shape& shape, DType dtype = DType::kFloat32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::kFloat32);
  static Tensor scalar(double value, DType dtype = DType::kFloat32);  // 0-d
  // Copies `values` (size must equal the shape's numel).
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // 0, 1, ..., n-1
  static Tensor arange(int64_t n, DType dtype = DType::kFloat32);

  // ---- metadata
  bool defined() const noexcept { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  std::string to_string() const;  // "Tensor[2, 3] float32" (+ values when small)

  // ---- data access (checks the dtype)
  template <class T>
  T* data();
  template <class T>
  const T* data() const;
  void* raw_data() const;
  // Value of a one-element tensor as double.
  double item() const;
  // Copies the elements out, converted to T.
  template <class T>
  std::vector<T> to_vector() const;

  // ---- no-autograd views and copies
  // Same storage, new shape (one -1 is inferred). Autograd-aware reshape is ops::reshape.
  Tensor view(const Shape& shape) const;
  // Rows [start, start+length) of dim 0, sharing storage.
  Tensor slice0(int64_t start, int64_t length) const;
  Tensor clone() const;           // deep copy, no grad history, requires_grad false
  Tensor detach() const;          // shares storage, no grad history
  Tensor to(DType dtype) const;   // converted copy (returns *this if dtype matches)
  bool shares_storage(const Tensor& other) const;

  // ---- in-place writes (never recorded by autograd)
  Tensor& copy_(const Tensor& src);  // same numel; converts dtype
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other (same shape)
  Tensor& mul_(double factor);
  // New shape with fresh, uninitialized storage when the shape differs, as torch's resize_.
  // The handle (and every copy of it) sees the change; views taken before do not.
  Tensor& resize_(const Shape& shape);

  // ---- autograd
  bool requires_grad() const;  // leaf flag, or has grad_fn
  Tensor& requires_grad_(bool value = true);  // leaves only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad);  // undefined clears (zero_grad's set_to_none)
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  // Backpropagates from this tensor. `grad` defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor()) const;

  TensorImpl& impl() const {
    QAT_CHECK(impl_ != nullptr, "use of an undefined Tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const noexcept { return impl_; }

 private:
  void check_dtype(DType expected) const;

  std::shared_ptr<TensorImpl> impl_;
};

// ---- template definitions

template <class T>
T* Tensor::data() {
  check_dtype(DTypeOf<T>::value);
  return static_cast<T*>(raw_data());
}

template <class T>
const T* Tensor::data() const {
  check_dtype(DTypeOf<T>::value);
  return static_cast<const T*>(raw_data());
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  QAT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
            values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, DTypeOf<T>::value);
  T* out = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return t;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor converted = to(DTypeOf<T>::value);
  const T* p = converted.data<T>();
  return std::vector<T>(p, p + converted.numel());
}

}  // namespace qat
