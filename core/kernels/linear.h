#pragma once

#include <cstdint>

// Fully connected layer kernels on raw contiguous row-major buffers, with the semantics of
// torch.nn.functional.linear: y = x w^T + b. The fast entry points run Eigen GEMMs (float only);
// the *_ref twins are plain loops for tests and for the float64 gradcheck path.
namespace qat::kernels {

// ---- Eigen (float32)

// y = x w^T + b; `b` may be null.
void linear_forward(int64_t N, int64_t K, int64_t M,
                    const float* x,  // [N, K]
                    const float* w,  // [M, K]
                    const float* b,  // [M] or null
                    float* y);       // [N, M]

// dx = dy w (overwrites dx).
void linear_backward_data(int64_t N, int64_t K, int64_t M,
                          const float* dy,  // [N, M]
                          const float* w,   // [M, K]
                          float* dx);       // [N, K]

// dw = dy^T x (overwrites dw).
void linear_backward_weight(int64_t N, int64_t K, int64_t M,
                            const float* dy,  // [N, M]
                            const float* x,   // [N, K]
                            float* dw);       // [M, K]

// db = dy summed over N (overwrites db).
void linear_backward_bias(int64_t N, int64_t M,
                          const float* dy,  // [N, M]
                          float* db);       // [M]

// ---- reference loops (explicitly instantiated for float and double; accumulate in double)

template <class T>
void linear_forward_ref(int64_t N, int64_t K, int64_t M,
                        const T* x,  // [N, K]
                        const T* w,  // [M, K]
                        const T* b,  // [M] or null
                        T* y);       // [N, M]

template <class T>
void linear_backward_data_ref(int64_t N, int64_t K, int64_t M,
                              const T* dy,  // [N, M]
                              const T* w,   // [M, K]
                              T* dx);       // [N, K]

template <class T>
void linear_backward_weight_ref(int64_t N, int64_t K, int64_t M,
                                const T* dy,  // [N, M]
                                const T* x,   // [N, K]
                                T* dw);       // [M, K]

template <class T>
void linear_backward_bias_ref(int64_t N, int64_t M,
                              const T* dy,  // [N, M]
                              T* db);       // [M]

}  // namespace qat::kernels
