#pragma once

#include <cstdint>

// Batch-normalization kernels on raw contiguous NCHW buffers, viewed as [N, C, S] with S = H * W
// (S = 1 for [N, C] input). gamma/beta may be null (affine=false: 1 and 0). The running-stat
// update is the op's job (core/ops/batch_norm.cc); kernels only see the statistics they use.
// The fast entry points are OpenMP loops (float only); the *_ref twins are plain loops for tests
// and for the float64 gradcheck path.
namespace qat::kernels {

// ---- OpenMP (float32)

// Per-channel batch mean and biased variance (divide by N * S >= 1), two-pass for accuracy.
void batch_norm_stats(int64_t N, int64_t C, int64_t S,
                      const float* x,  // [N, C, S]
                      float* mean,     // [C]
                      float* var);     // [C]

// y = (x - mean) / sqrt(var + eps) * gamma + beta, with batch stats (training) or running
// stats (eval).
void batch_norm_forward(int64_t N, int64_t C, int64_t S,
                        const float* x,      // [N, C, S]
                        const float* mean,   // [C]
                        const float* var,    // [C]
                        const float* gamma,  // [C] or null
                        const float* beta,   // [C] or null
                        double eps,
                        float* y);  // [N, C, S]

// Gradients given dy, with the mean/var the forward normalized with; null outputs are skipped.
// training: mean/var were batch statistics, so dx includes their gradient
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat));
// eval: they were constants, dx = gamma * invstd * dy.
// Both: dgamma = sum(dy * xhat), dbeta = sum(dy), sums over N and S.
void batch_norm_backward(int64_t N, int64_t C, int64_t S,
                         const float* dy,     // [N, C, S]
                         const float* x,      // [N, C, S]
                         const float* mean,   // [C]
                         const float* var,    // [C]
                         const float* gamma,  // [C] or null
                         double eps, bool training,
                         float* dx,      // [N, C, S] or null
                         float* dgamma,  // [C] or null
                         float* dbeta);  // [C] or null

// ---- batch norm of a per-channel affine input, z = a * x + b, with z's batch statistics
// (ConvBn2d's conv(x, W * s) / s + bias without materializing z). mean/var are x's batch
// statistics; z's are a * mean + b and a^2 * var, and b cancels from the output, so the kernels
// never see it:
//   y = (x - mean) * gamma * a / sqrt(a^2 var + eps) + beta.
// Backward (batch statistics): dx = a * dz with dz BN's input gradient for z, dgamma and dbeta
// as BN's, and from the per-channel sums it already makes (no extra pass; dz sums to 0):
//   da = sum(dz * x) = gamma * eps * invstd_z^3 * sum(dy * (x - mean)),  db = sum(dz) = 0.
void batch_norm_scaled_forward(int64_t N, int64_t C, int64_t S,
                               const float* x,      // [N, C, S]
                               const float* mean,   // [C], of x
                               const float* var,    // [C], of x (biased)
                               const float* a,      // [C]
                               const float* gamma,  // [C] or null
                               const float* beta,   // [C] or null
                               double eps,
                               float* y);  // [N, C, S]

void batch_norm_scaled_backward(int64_t N, int64_t C, int64_t S,
                                const float* dy,     // [N, C, S]
                                const float* x,      // [N, C, S]
                                const float* mean,   // [C], of x
                                const float* var,    // [C], of x
                                const float* a,      // [C]
                                const float* gamma,  // [C] or null
                                double eps,
                                float* dx,      // [N, C, S] or null
                                float* da,      // [C] or null
                                float* db,      // [C] or null
                                float* dgamma,  // [C] or null
                                float* dbeta);  // [C] or null

// ---- reference loops (explicitly instantiated for float and double; accumulate in double)

template <class T>
void batch_norm_stats_ref(int64_t N, int64_t C, int64_t S,
                          const T* x,  // [N, C, S]
                          T* mean,     // [C]
                          T* var);     // [C]

template <class T>
void batch_norm_forward_ref(int64_t N, int64_t C, int64_t S,
                            const T* x,      // [N, C, S]
                            const T* mean,   // [C]
                            const T* var,    // [C]
                            const T* gamma,  // [C] or null
                            const T* beta,   // [C] or null
                            double eps,
                            T* y);  // [N, C, S]

template <class T>
void batch_norm_backward_ref(int64_t N, int64_t C, int64_t S,
                             const T* dy,     // [N, C, S]
                             const T* x,      // [N, C, S]
                             const T* mean,   // [C]
                             const T* var,    // [C]
                             const T* gamma,  // [C] or null
                             double eps, bool training,
                             T* dx,      // [N, C, S] or null
                             T* dgamma,  // [C] or null
                             T* dbeta);  // [C] or null

// The reference twins materialize z = a * x + b and run BN's formulas on it literally
// (dx = a * dz, da = sum(dz * x), db = sum(dz)).
template <class T>
void batch_norm_scaled_forward_ref(int64_t N, int64_t C, int64_t S,
                                   const T* x,      // [N, C, S]
                                   const T* a,      // [C]
                                   const T* b,      // [C] or null (0)
                                   const T* gamma,  // [C] or null
                                   const T* beta,   // [C] or null
                                   double eps,
                                   T* y);  // [N, C, S]

template <class T>
void batch_norm_scaled_backward_ref(int64_t N, int64_t C, int64_t S,
                                    const T* dy,     // [N, C, S]
                                    const T* x,      // [N, C, S]
                                    const T* a,      // [C]
                                    const T* b,      // [C] or null (0)
                                    const T* gamma,  // [C] or null
                                    double eps,
                                    T* dx,      // [N, C, S] or null
                                    T* da,      // [C] or null
                                    T* db,      // [C] or null
                                    T* dgamma,  // [C] or null
                                    T* dbeta);  // [C] or null

}  // namespace qat::kernels
