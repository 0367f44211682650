#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qat {

// Element types a Tensor can hold. kFloat64 exists so gradcheck can run the reference kernels
// in double; int64 holds labels and BN's num_batches_tracked; int8/uint8/int32 hold quantized data.
enum class DType { kFloat32, kFloat64, kInt8, kUInt8, kInt32, kInt64 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "float32", "int64", ...
bool is_floating(DType dtype);

// C++ type -> DType, for the typed accessors (Tensor::data<T>()).
template <class T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kFloat64;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::kInt8;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::kUInt8;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kInt32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::kInt64;
};

}  // namespace qat
