#pragma once

// Chainable option setter, as LibTorch's TORCH_ARG:
//   struct Conv2dOptions { QAT_ARG(int64_t, stride) = 1; };
//   Conv2dOptions().stride(2).padding(1)
#define QAT_ARG(T, name)                       \
 public:                                       \
  auto& name(const T& new_##name) {            \
    name##_ = new_##name;                      \
    return *this;                              \
  }                                            \
  const T& name() const noexcept { return name##_; } \
                                               \
 private:                                      \
  T name##_
