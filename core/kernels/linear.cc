#include "core/kernels/linear.h"

#include <Eigen/Core>

namespace qat::kernels {
namespace {

// Row-major views of the caller's buffers (no copies, no ownership). Eigen's GEMM runs on the
// OpenMP pool when the product is large enough (it is built with -fopenmp).
using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix>;
using MatrixMap = Eigen::Map<RowMajorMatrix>;

}  // namespace

void linear_forward(int64_t N, int64_t K, int64_t M, const float* x, const float* w, const float* b,
                    float* y) {
  MatrixMap y_mat(y, N, M);
  y_mat.noalias() = ConstMatrixMap(x, N, K) * ConstMatrixMap(w, M, K).transpose();
  if (b) y_mat.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, M);
}

void linear_backward_data(int64_t N, int64_t K, int64_t M, const float* dy, const float* w,
                          float* dx) {
  MatrixMap(dx, N, K).noalias() = ConstMatrixMap(dy, N, M) * ConstMatrixMap(w, M, K);
}

void linear_backward_weight(int64_t N, int64_t K, int64_t M, const float* dy, const float* x,
                            float* dw) {
  MatrixMap(dw, M, K).noalias() = ConstMatrixMap(dy, N, M).transpose() * ConstMatrixMap(x, N, K);
}

void linear_backward_bias(int64_t N, int64_t M, const float* dy, float* db) {
  Eigen::Map<Eigen::RowVectorXf>(db, M) = ConstMatrixMap(dy, N, M).colwise().sum();
}

// ---- reference loops

template <class T>
void linear_forward_ref(int64_t N, int64_t K, int64_t M, const T* x, const T* w, const T* b, T* y) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t m = 0; m < M; ++m) {
      double acc = b ? b[m] : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(x[n * K + k]) * w[m * K + k];
      y[n * M + m] = static_cast<T>(acc);
    }
  }
}

template <class T>
void linear_backward_data_ref(int64_t N, int64_t K, int64_t M, const T* dy, const T* w, T* dx) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      double acc = 0;
      for (int64_t m = 0; m < M; ++m) acc += static_cast<double>(dy[n * M + m]) * w[m * K + k];
      dx[n * K + k] = static_cast<T>(acc);
    }
  }
}

template <class T>
void linear_backward_weight_ref(int64_t N, int64_t K, int64_t M, const T* dy, const T* x, T* dw) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += static_cast<double>(dy[n * M + m]) * x[n * K + k];
      dw[m * K + k] = static_cast<T>(acc);
    }
  }
}

template <class T>
void linear_backward_bias_ref(int64_t N, int64_t M, const T* dy, T* db) {
  for (int64_t m = 0; m < M; ++m) {
    double acc = 0;
    for (int64_t n = 0; n < N; ++n) acc += dy[n * M + m];
    db[m] = static_cast<T>(acc);
  }
}

template void linear_forward_ref<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                        const float*, float*);
template void linear_forward_ref<double>(int64_t, int64_t, int64_t, const double*, const double*,
                                         const double*, double*);
template void linear_backward_data_ref<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                              float*);
template void linear_backward_data_ref<double>(int64_t, int64_t, int64_t, const double*,
                                               const double*, double*);
template void linear_backward_weight_ref<float>(int64_t, int64_t, int64_t, const float*,
                                                const float*, float*);
template void linear_backward_weight_ref<double>(int64_t, int64_t, int64_t, const double*,
                                                 const double*, double*);
template void linear_backward_bias_ref<float>(int64_t, int64_t, const float*, float*);
template void linear_backward_bias_ref<double>(int64_t, int64_t, const double*, double*);

}  // namespace qat::kernels
