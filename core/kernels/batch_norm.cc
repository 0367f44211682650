#include "core/kernels/batch_norm.h"

#include <cmath>
#include <vector>

// Why OpenMP loops and not oneDNN: for plain NCHW float data oneDNN 2.6 picks its generic C++
// `ncsp_bnorm` implementation; its JIT kernel wants nChw16c, which costs a reorder of x (and dy)
// in and of y (dx) out on every call. Measured on the 2-core dev box (shared, so +-30%), best of
// 20, ms, training forward (stats + normalize) / backward (dx, dgamma, dbeta):
//                        these loops   oneDNN nchw   oneDNN nChw16c + reorders
//   [64, 32, 32, 32]     0.35 / 0.49   1.75 / 2.17   0.91 / 1.36
//   [16, 64, 56, 56]     0.61 / 1.00   2.85 / 3.49   1.40 / 2.05
//
// Parallelism: reductions run one channel per thread, each in a fixed order, so the statistics
// and dgamma/dbeta are bit-identical for any thread count (C below the thread count leaves cores
// idle; the zoo's BNs all have C >= 16). Each row of S contiguous elements is summed in float
// SIMD lanes (`omp simd reduction` permits the reassociation), rows in double.
namespace qat::kernels {
namespace {

// Below this many elements an OpenMP fork/join costs more than it saves.
constexpr int64_t kParallelGrain = 32768;

double inv_std(float var, double eps) { return 1.0 / std::sqrt(static_cast<double>(var) + eps); }

// y = (x - mean[c]) * scale_of(c) + beta[c] over [N, C, S]: the one pass of both BN forwards.
template <class ScaleOf>
void normalize_channels(int64_t N, int64_t C, int64_t S, const float* x, const float* mean,
                        const float* beta, ScaleOf scale_of, float* y) {
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S >= kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const float mu = mean[c];
      const float scale = scale_of(c);
      const float shift = beta ? beta[c] : 0.0f;
      const float* xr = x + (n * C + c) * S;  // [S]
      float* yr = y + (n * C + c) * S;        // [S]
#pragma omp simd
      for (int64_t i = 0; i < S; ++i) yr[i] = (xr[i] - mu) * scale + shift;
    }
  }
}

// The two per-channel sums both backward passes need: sum(dy) and sum(dy * (x - mu)) over
// the N x S values of channel c, float within a row (vectorized), double across rows.
struct DySums {
  double dy = 0, dy_xmu = 0;
};

DySums dy_sums(int64_t N, int64_t C, int64_t S, const float* dy, const float* x, int64_t c,
               float mu) {
  DySums sums;
  for (int64_t n = 0; n < N; ++n) {
    const float* dyr = dy + (n * C + c) * S;  // [S]
    const float* xr = x + (n * C + c) * S;    // [S]
    float row_dy = 0, row_dy_xmu = 0;
#pragma omp simd reduction(+ : row_dy, row_dy_xmu)
    for (int64_t i = 0; i < S; ++i) {
      row_dy += dyr[i];
      row_dy_xmu += dyr[i] * (xr[i] - mu);
    }
    sums.dy += row_dy;
    sums.dy_xmu += row_dy_xmu;
  }
  return sums;
}

}  // namespace

void batch_norm_stats(int64_t N, int64_t C, int64_t S, const float* x, float* mean, float* var) {
  const int64_t M = N * S;
#pragma omp parallel for schedule(static) if (N * C * S >= kParallelGrain)
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0;
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = x + (n * C + c) * S;  // [S]
      float row = 0;
#pragma omp simd reduction(+ : row)
      for (int64_t i = 0; i < S; ++i) row += xr[i];
      sum += row;
    }
    // Second pass over the (now cached) channel: sum((x - mu)^2) does not cancel the way
    // sum(x^2) - M * mu^2 does when |mu| >> std.
    const float mu = static_cast<float>(sum / M);
    double sq = 0;
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = x + (n * C + c) * S;  // [S]
      float row = 0;
#pragma omp simd reduction(+ : row)
      for (int64_t i = 0; i < S; ++i) row += (xr[i] - mu) * (xr[i] - mu);
      sq += row;
    }
    mean[c] = mu;
    var[c] = static_cast<float>(sq / M);
  }
}

void batch_norm_forward(int64_t N, int64_t C, int64_t S, const float* x, const float* mean,
                        const float* var, const float* gamma, const float* beta, double eps,
                        float* y) {
  normalize_channels(
      N, C, S, x, mean, beta,
      [&](int64_t c) {
        return static_cast<float>((gamma ? gamma[c] : 1.0) * inv_std(var[c], eps));
      },
      y);
}

void batch_norm_backward(int64_t N, int64_t C, int64_t S, const float* dy, const float* x,
                         const float* mean, const float* var, const float* gamma, double eps,
                         bool training, float* dx, float* dgamma, float* dbeta) {
  const int64_t M = N * S;
  const bool need_sums = training || dgamma != nullptr || dbeta != nullptr;
#pragma omp parallel for schedule(static) if (N * C * S >= kParallelGrain)
  for (int64_t c = 0; c < C; ++c) {
    const float mu = mean[c];
    const double invstd = inv_std(var[c], eps);
    const DySums sums = need_sums ? dy_sums(N, C, S, dy, x, c, mu) : DySums{};
    const double sum_dy = sums.dy, sum_dy_xmu = sums.dy_xmu;
    if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xmu * invstd);  // sum(dy * xhat)
    if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
    if (!dx) continue;
    // dx = a * dy + b * (x - mu) + k: the formula in the header with xhat = (x - mu) * invstd
    // expanded into per-channel constants.
    const double a = (gamma ? gamma[c] : 1.0) * invstd;
    const float fa = static_cast<float>(a);
    const float fb = static_cast<float>(-a * invstd * invstd * sum_dy_xmu / M);
    const float fk = static_cast<float>(-a * sum_dy / M);
    for (int64_t n = 0; n < N; ++n) {
      const float* dyr = dy + (n * C + c) * S;  // [S]
      const float* xr = x + (n * C + c) * S;    // [S]
      float* dxr = dx + (n * C + c) * S;        // [S]
      if (training) {
#pragma omp simd
        for (int64_t i = 0; i < S; ++i) dxr[i] = fa * dyr[i] + fb * (xr[i] - mu) + fk;
      } else {
#pragma omp simd
        for (int64_t i = 0; i < S; ++i) dxr[i] = fa * dyr[i];
      }
    }
  }
}

// ---- batch norm of z = a * x + b (see the header)

void batch_norm_scaled_forward(int64_t N, int64_t C, int64_t S, const float* x, const float* mean,
                               const float* var, const float* a, const float* gamma,
                               const float* beta, double eps, float* y) {
  // BN of z = a * x + b: (x - mean_x) * gamma * a / sqrt(a^2 var_x + eps) + beta (b cancels).
  normalize_channels(
      N, C, S, x, mean, beta,
      [&](int64_t c) {
        const double ac = a[c];
        const double invstd_z = 1.0 / std::sqrt(ac * ac * var[c] + eps);
        return static_cast<float>((gamma ? gamma[c] : 1.0) * ac * invstd_z);
      },
      y);
}

void batch_norm_scaled_backward(int64_t N, int64_t C, int64_t S, const float* dy, const float* x,
                                const float* mean, const float* var, const float* a,
                                const float* gamma, double eps, float* dx, float* da, float* db,
                                float* dgamma, float* dbeta) {
  const int64_t M = N * S;
#pragma omp parallel for schedule(static) if (N * C * S >= kParallelGrain)
  for (int64_t c = 0; c < C; ++c) {
    const float mu = mean[c];
    const double ac = a[c];
    const double g = gamma ? gamma[c] : 1.0;
    const double invstd_z = 1.0 / std::sqrt(ac * ac * var[c] + eps);
    const DySums sums = dy_sums(N, C, S, dy, x, c, mu);
    const double sum_dy = sums.dy, sum_dy_xmu = sums.dy_xmu;
    // zhat = a * invstd_z * (x - mu), so sum(dy * zhat) = a * invstd_z * sum_dy_xmu.
    if (dgamma) dgamma[c] = static_cast<float>(ac * invstd_z * sum_dy_xmu);
    if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
    if (da) da[c] = static_cast<float>(g * eps * invstd_z * invstd_z * invstd_z * sum_dy_xmu);
    if (db) db[c] = 0.0f;
    if (!dx) continue;
    // dx = a * dz = A * dy + B * (x - mu) + K, BN's dz formula with per-channel constants.
    const double A = ac * g * invstd_z;
    const float fa = static_cast<float>(A);
    const float fb = static_cast<float>(-A * ac * ac * invstd_z * invstd_z * sum_dy_xmu / M);
    const float fk = static_cast<float>(-A * sum_dy / M);
    for (int64_t n = 0; n < N; ++n) {
      const float* dyr = dy + (n * C + c) * S;  // [S]
      const float* xr = x + (n * C + c) * S;    // [S]
      float* dxr = dx + (n * C + c) * S;        // [S]
#pragma omp simd
      for (int64_t i = 0; i < S; ++i) dxr[i] = fa * dyr[i] + fb * (xr[i] - mu) + fk;
    }
  }
}

// ---- reference loops

template <class T>
void batch_norm_stats_ref(int64_t N, int64_t C, int64_t S, const T* x, T* mean, T* var) {
  const int64_t M = N * S;
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) sum += x[(n * C + c) * S + i];
    const double mu = sum / M;
    double sq = 0;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < S; ++i) {
        const double d = x[(n * C + c) * S + i] - mu;
        sq += d * d;
      }
    }
    mean[c] = static_cast<T>(mu);
    var[c] = static_cast<T>(sq / M);
  }
}

template <class T>
void batch_norm_forward_ref(int64_t N, int64_t C, int64_t S, const T* x, const T* mean,
                            const T* var, const T* gamma, const T* beta, double eps, T* y) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
      const double g = gamma ? gamma[c] : 1.0;
      const double b = beta ? beta[c] : 0.0;
      for (int64_t i = 0; i < S; ++i) {
        const int64_t j = (n * C + c) * S + i;
        y[j] = static_cast<T>((x[j] - mean[c]) * invstd * g + b);
      }
    }
  }
}

template <class T>
void batch_norm_backward_ref(int64_t N, int64_t C, int64_t S, const T* dy, const T* x,
                             const T* mean, const T* var, const T* gamma, double eps, bool training,
                             T* dx, T* dgamma, T* dbeta) {
  const int64_t M = N * S;
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
    const double g = gamma ? gamma[c] : 1.0;
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < S; ++i) {
        const int64_t j = (n * C + c) * S + i;
        sum_dy += dy[j];
        sum_dy_xhat += dy[j] * (x[j] - mean[c]) * invstd;
      }
    }
    if (dgamma) dgamma[c] = static_cast<T>(sum_dy_xhat);
    if (dbeta) dbeta[c] = static_cast<T>(sum_dy);
    if (!dx) continue;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < S; ++i) {
        const int64_t j = (n * C + c) * S + i;
        const double xhat = (x[j] - mean[c]) * invstd;
        const double d = training ? dy[j] - sum_dy / M - xhat * sum_dy_xhat / M : dy[j];
        dx[j] = static_cast<T>(g * invstd * d);
      }
    }
  }
}

template void batch_norm_stats_ref<float>(int64_t, int64_t, int64_t, const float*, float*, float*);
template void batch_norm_stats_ref<double>(int64_t, int64_t, int64_t, const double*, double*,
                                           double*);
template void batch_norm_forward_ref<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                            const float*, const float*, const float*, double,
                                            float*);
template void batch_norm_forward_ref<double>(int64_t, int64_t, int64_t, const double*,
                                             const double*, const double*, const double*,
                                             const double*, double, double*);
template void batch_norm_backward_ref<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                             const float*, const float*, const float*, double, bool,
                                             float*, float*, float*);
template void batch_norm_backward_ref<double>(int64_t, int64_t, int64_t, const double*,
                                              const double*, const double*, const double*,
                                              const double*, double, bool, double*, double*,
                                              double*);

template <class T>
void batch_norm_scaled_forward_ref(int64_t N, int64_t C, int64_t S, const T* x, const T* a,
                                   const T* b, const T* gamma, const T* beta, double eps, T* y) {
  std::vector<double> z(N * C * S), mean(C), var(C);
  for (int64_t j = 0; j < N * C * S; ++j) {
    const int64_t c = (j / S) % C;
    z[j] = static_cast<double>(a[c]) * x[j] + (b ? b[c] : 0.0);
  }
  batch_norm_stats_ref(N, C, S, z.data(), mean.data(), var.data());
  std::vector<double> g(C, 1.0), bt(C, 0.0), out(N * C * S);
  for (int64_t c = 0; c < C; ++c) {
    if (gamma) g[c] = gamma[c];
    if (beta) bt[c] = beta[c];
  }
  batch_norm_forward_ref(N, C, S, z.data(), mean.data(), var.data(), g.data(), bt.data(), eps,
                         out.data());
  for (int64_t j = 0; j < N * C * S; ++j) y[j] = static_cast<T>(out[j]);
}

template <class T>
void batch_norm_scaled_backward_ref(int64_t N, int64_t C, int64_t S, const T* dy, const T* x,
                                    const T* a, const T* b, const T* gamma, double eps, T* dx,
                                    T* da, T* db, T* dgamma, T* dbeta) {
  const int64_t total = N * C * S;
  std::vector<double> z(total), dyd(total), dz(total), mean(C), var(C), g(C, 1.0);
  for (int64_t j = 0; j < total; ++j) {
    const int64_t c = (j / S) % C;
    z[j] = static_cast<double>(a[c]) * x[j] + (b ? b[c] : 0.0);
    dyd[j] = dy[j];
  }
  for (int64_t c = 0; c < C; ++c) {
    if (gamma) g[c] = gamma[c];
  }
  batch_norm_stats_ref(N, C, S, z.data(), mean.data(), var.data());
  std::vector<double> dg(C), dbt(C);
  batch_norm_backward_ref(N, C, S, dyd.data(), z.data(), mean.data(), var.data(), g.data(), eps,
                          /*training=*/true, dz.data(), dg.data(), dbt.data());
  std::vector<double> sum_dz(C, 0.0), sum_dz_x(C, 0.0);
  for (int64_t j = 0; j < total; ++j) {
    const int64_t c = (j / S) % C;
    sum_dz[c] += dz[j];
    sum_dz_x[c] += dz[j] * x[j];
    if (dx) dx[j] = static_cast<T>(a[c] * dz[j]);
  }
  for (int64_t c = 0; c < C; ++c) {
    if (da) da[c] = static_cast<T>(sum_dz_x[c]);
    if (db) db[c] = static_cast<T>(sum_dz[c]);
    if (dgamma) dgamma[c] = static_cast<T>(dg[c]);
    if (dbeta) dbeta[c] = static_cast<T>(dbt[c]);
  }
}

template void batch_norm_scaled_forward_ref<float>(int64_t, int64_t, int64_t, const float*,
                                                   const float*, const float*, const float*,
                                                   const float*, double, float*);
template void batch_norm_scaled_forward_ref<double>(int64_t, int64_t, int64_t, const double*,
                                                    const double*, const double*, const double*,
                                                    const double*, double, double*);
template void batch_norm_scaled_backward_ref<float>(int64_t, int64_t, int64_t, const float*,
                                                    const float*, const float*, const float*,
                                                    const float*, double, float*, float*, float*,
                                                    float*, float*);
template void batch_norm_scaled_backward_ref<double>(int64_t, int64_t, int64_t, const double*,
                                                     const double*, const double*, const double*,
                                                     const double*, double, double*, double*,
                                                     double*, double*, double*);

}  // namespace qat::kernels
