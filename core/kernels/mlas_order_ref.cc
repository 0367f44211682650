#include "core/kernels/mlas_order_ref.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/check.h"

// Reproduces, bit for bit, the float32 sums of ONNX Runtime 1.31's CPU Conv and Gemm with one
// intra-op thread on x86-64 with AVX512F (MLAS picks its SGEMM kernel per ISA; the M = 1 kernels
// are AVX on every x86-64 machine with AVX). The order is the whole point of this file, so it is
// written out step by step after the MLAS sources named in each comment
// (microsoft/onnxruntime, onnxruntime/core/mlas/lib/...). Built with -ffp-contract=off: a
// product that MLAS rounds must not be fused into an FMA here, and an FMA is written as
// std::fma.
namespace qat::kernels {
namespace {

constexpr int64_t kStrideN = 128;  // MLAS_SGEMM_STRIDEN (mlasi.h)
constexpr int64_t kStrideK = 128;  // MLAS_SGEMM_STRIDEK (mlasi.h)

// A row-major matrix operand of MlasSgemmOperation: element (k, n) of B is b[k * ld + n], or
// b[n * ld + k] when transposed (CblasTrans).
struct MatrixB {
  const float* b;
  int64_t ld;
  bool transposed;
  float at(int64_t k, int64_t n) const { return transposed ? b[n * ld + k] : b[k * ld + n]; }
};

// The N and K slice sizes of MlasSgemmOperation and MlasConvOperation: 128 x 128, traded so
// that a slice holds 128 * 128 elements: N doubled (K halved) while K is small, K doubled (N
// halved, down to 16) while N is small. Only the K slices change a sum.
std::pair<int64_t, int64_t> strides(int64_t N, int64_t K) {
  int64_t stride_n = kStrideN, stride_k = kStrideK;
  if (N >= K) {
    while (stride_k / 2 >= K) {
      stride_n *= 2;
      stride_k /= 2;
    }
  } else {
    while (stride_n > 16 && stride_n / 2 >= N) {
      stride_k *= 2;
      stride_n /= 2;
    }
  }
  return {stride_n, stride_k};
}

// acc[i] = fma(a, b[i], acc[i]): one step of the AVX512F kernel's FMA chain
// (x86_64/FgemmKernelAvx512FCommon.h, vfmadd231ps with A broadcast). The clones only make it
// fast; every clone rounds once per element, as vfmadd231ps does.
__attribute__((target_clones("fma", "default"))) void fma_axpy(float a, const float* b, float* acc,
                                                               int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] = std::fma(a, b[i], acc[i]);
}

// The packed-B path of MlasSgemmOperation (sgemm.cpp) with the AVX512F kernel, beta 0 or 1:
// K is cut into blocks of StrideK (128, doubled while N is small, halved while K is small);
// each block is, per output element, an FMA chain that starts from 0 and runs over the block's
// k in order; the kernel then stores it (ZeroMode: the first block with beta = 0) or adds it to
// C with one rounding (vfmadd213ps with alpha = 1).
//   A [M, K] (lda), B [K, N], C [M, N] (ldc)
void sgemm_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, MatrixB B,
                  float beta, float* C, int64_t ldc) {
  const int64_t stride_k = strides(N, K).second;  // N slices leave the sums alone
  // Row k of B contiguous over n, for fma_axpy.
  std::vector<float> b_rows;
  if (B.transposed) {
    b_rows.resize(K * N);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) b_rows[k * N + n] = B.at(k, n);
  }
  const float* rows = B.transposed ? b_rows.data() : B.b;
  const int64_t ld_rows = B.transposed ? N : B.ld;
#pragma omp parallel for schedule(static) if (M * N * K >= (1 << 18))
  for (int64_t m = 0; m < M; ++m) {
    std::vector<float> acc(N);  // one K block's chain per output element
    float* c = C + m * ldc;
    for (int64_t k0 = 0; k0 < K; k0 += stride_k) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t k = k0; k < std::min(K, k0 + stride_k); ++k)
        fma_axpy(A[m * lda + k], rows + k * ld_rows, acc.data(), N);
      const bool zero_mode = k0 == 0 && beta == 0.0f;
      for (int64_t n = 0; n < N; ++n) c[n] = zero_mode ? acc[n] : acc[n] + c[n];
    }
  }
}

// MlasSgemmKernelM1Avx (x86_64/SgemmKernelM1Avx.S): M = 1, B not transposed, no FMA. Per output
// n, k runs in groups of 4, then 2, then 1; a group is ((p0 + p1) + p2) + p3 of rounded
// products, then added to C (to 0 for the first group when beta = 0).
//   A [K], B [K, N], C [N]
void sgemm_m1(int64_t N, int64_t K, const float* A, MatrixB B, float beta, float* C) {
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
  for (int64_t n = 0; n < N; ++n) {
    const auto p = [&](int64_t k) { return A[k] * B.at(k, n); };
    float c = beta == 0.0f ? 0.0f : C[n];
    bool zero = beta == 0.0f;
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      float g = p(k) + p(k + 1);
      g = g + p(k + 2);
      g = g + p(k + 3);
      c = g + (zero ? 0.0f : c);
      zero = false;
    }
    if ((K - k) & 2) {
      const float g = p(k) + p(k + 1);
      c = g + (zero ? 0.0f : c);
      zero = false;
      k += 2;
    }
    if ((K - k) & 1) c = p(k) + (zero ? 0.0f : c);
    C[n] = c;
  }
}

// MlasSgemmKernelM1TransposeBAvx (x86_64/SgemmKernelM1TransposeBAvx.S): count dot products
// C[r] = sum_k v[k] * rows[r * ld + k], no FMA. Eight lane sums l[j] over k = j mod 8 (rounded
// products added in k order), reduced by a shuffle tree that depends on how the row was batched:
// rows go 4 at a time, then 2, then 1, and
//   4: (((l0 + l1) + l2) + l3) + (((l4 + l5) + l6) + l7)
//   2: ((l0 + l2) + (l4 + l6)) + ((l1 + l3) + (l5 + l7))
//   1: ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
// then added to C (to 0 when beta = 0).
void sgemm_m1_transpose_b(int64_t count, int64_t K, const float* v, const float* rows, int64_t ld,
                          float beta, float* C) {
  const int64_t by4 = count / 4 * 4;
  const int64_t by2 = by4 + (count & 2);
  for (int64_t r = 0; r < count; ++r) {
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t k = 0; k < K; ++k) l[k % 8] = l[k % 8] + v[k] * rows[r * ld + k];
    float sum;
    if (r < by4) {
      sum = (((l[0] + l[1]) + l[2]) + l[3]) + (((l[4] + l[5]) + l[6]) + l[7]);
    } else if (r < by2) {
      sum = ((l[0] + l[2]) + (l[4] + l[6])) + ((l[1] + l[3]) + (l[5] + l[7]));
    } else {
      sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
    C[r] = sum + (beta == 0.0f ? 0.0f : C[r]);
  }
}

// MlasSgemmOperation (sgemm.cpp) with TransA = NoTrans, alpha = 1, beta 0 or 1: the M = 1
// kernels, the N = 1 column-vector case (A and B swapped into the M = 1 transposed kernel),
// else the packed path.
void sgemm_operation(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, MatrixB B,
                     float beta, float* C, int64_t ldc) {
  QAT_CHECK(beta == 0.0f || beta == 1.0f, "sgemm_operation: beta must be 0 or 1, got ", beta);
  if (M == 1) {
    if (B.transposed) {
      sgemm_m1_transpose_b(N, K, A, B.b, B.ld, beta, C);
    } else {
      sgemm_m1(N, K, A, B, beta, C);
    }
    return;
  }
  if (N == 1 && B.ld == 1 && ldc == 1) {
    sgemm_m1_transpose_b(M, K, B.b, A, lda, beta, C);
    return;
  }
  sgemm_packed(M, N, K, A, lda, B, beta, C, ldc);
}

// MlasConvIm2Col (convolve.cpp), all of it at once: col[k, n] for k = (c, kh, kw) of one group
// and n = (oh, ow), zero in the padding.
//   x [C/G, H, W] -> col [K = C/G * KH * KW, OH * OW]
std::vector<float> im2col(const Conv2dShape& s, const float* x) {
  const int64_t channels = s.C / s.G, out = s.OH * s.OW;
  std::vector<float> col(channels * s.KH * s.KW * out);
  float* dst = col.data();
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
          for (int64_t ow = 0; ow < s.OW; ++ow) {
            const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
            const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
            *dst++ = inside ? x[(c * s.H + ih) * s.W + iw] : 0.0f;
          }
        }
      }
    }
  }
  return col;
}

// MlasConvOperation (convolve.cpp), the ExpandThenGemmSegmented algorithm on one thread: N and
// K are cut into slices (the same StrideN / StrideK adaption as MlasSgemmOperation, on
// N = OH * OW and the conv's K) and every K slice is one MlasSgemmOperation call, beta = 0 for
// the first and 1 after.
//   w [M, K], col [K, N], y [M, N]
void conv_segmented(int64_t M, int64_t N, int64_t K, const float* w, const float* col, float* y) {
  const auto [stride_n, stride_k] = strides(N, K);
  for (int64_t n0 = 0; n0 < N; n0 += stride_n) {
    const int64_t count_n = std::min(stride_n, N - n0);
    for (int64_t k0 = 0; k0 < K; k0 += stride_k) {
      const int64_t count_k = std::min(stride_k, K - k0);
      sgemm_operation(M, count_n, count_k, w + k0, K, {col + k0 * N + n0, N, false},
                      k0 == 0 ? 0.0f : 1.0f, y + n0, N);
    }
  }
}

// One (sample, group) of MlasConv (convolve.cpp) before the bias: MlasConvPrepare's choice of
// algorithm, then its GEMMs. y [M = OC/G, OH * OW].
void conv_group(const Conv2dShape& s, const float* x, const float* w, float* y) {
  const int64_t M = s.OC / s.G, channels = s.C / s.G;
  const int64_t K = channels * s.KH * s.KW, N = s.OH * s.OW;
  const bool unit_stride_no_pad = s.SH == 1 && s.SW == 1 && s.PH == 0 && s.PW == 0;
  if (unit_stride_no_pad && K == channels) {  // pointwise: GemmDirect on the input itself
    sgemm_operation(M, N, K, w, K, {x, N, false}, 0.0f, y, N);
    return;
  }
  if (unit_stride_no_pad && channels == 1 && s.DH == 1 && s.DW == 1) {
    if (s.KW == s.W) {  // the kernel spans the input width: GemmDirect, B transposed
      sgemm_operation(M, N, K, w, K, {x, s.W, true}, 0.0f, y, N);
      return;
    }
    if (s.KH == s.H && s.KW == 1) {  // the kernel spans the input height: GemmDirect
      sgemm_operation(M, N, K, w, K, {x, s.W, false}, 0.0f, y, N);
      return;
    }
  }
  const std::vector<float> col = im2col(s, x);
  if (M > N) {  // ExpandThenGemm: one GEMM over the whole expansion
    sgemm_operation(M, N, K, w, K, {col.data(), N, false}, 0.0f, y, N);
  } else {
    conv_segmented(M, N, K, w, col.data(), y);
  }
}

}  // namespace

void conv2d_forward_mlas_order(const Conv2dShape& s, const float* x, const float* w, const float* b,
                               float* y) {
  QAT_CHECK(s.G > 0 && s.C % s.G == 0 && s.OC % s.G == 0, "conv2d_forward_mlas_order: groups ", s.G,
            " must divide C = ", s.C, " and OC = ", s.OC);
  const int64_t M = s.OC / s.G, channels = s.C / s.G, out = s.OH * s.OW;
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t g = 0; g < s.G; ++g) {
      const float* x_g = x + (n * s.C + g * channels) * s.H * s.W;  // [C/G, H, W]
      const float* w_g = w + g * M * channels * s.KH * s.KW;        // [M, C/G, KH, KW]
      float* y_g = y + (n * s.OC + g * M) * out;                    // [M, OH, OW]
      conv_group(s, x_g, w_g, y_g);
      // MlasActivation (activate.cpp): the bias after the whole sum; Relu / Clip are nodes of
      // their own with graph optimizations disabled.
      if (b == nullptr) continue;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t i = 0; i < out; ++i) y_g[m * out + i] = y_g[m * out + i] + b[g * M + m];
    }
  }
}

void gemm_forward_mlas_order(int64_t N, int64_t K, int64_t M, const float* x, const float* w,
                             const float* b, float* y) {
  // Gemm (providers/cpu/math/gemm.cc): Y = broadcast C, then MlasGemm with beta = 1.
  if (b != nullptr) {
    for (int64_t n = 0; n < N; ++n) std::copy(b, b + M, y + n * M);
  }
  sgemm_operation(N, M, K, x, K, {w, K, true}, b != nullptr ? 1.0f : 0.0f, y, M);
}

void global_avg_pool_mlas_order(int64_t planes, int64_t size, const float* x, float* y) {
  // MlasPoolGlobalKernel<MLAS_AVERAGE_POOLING> (pooling.cpp), MlasReduceAddFloat32x4 (mlasi.h).
  const auto count = static_cast<float>(size);
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * size;
    float l[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= size; i += 4)
      for (int j = 0; j < 4; ++j) l[j] = l[j] + in[i + j];
    float sum = (l[0] + l[2]) + (l[1] + l[3]);
    for (; i < size; ++i) sum = sum + in[i];
    y[p] = sum / count;
  }
}

void reduce_mean_rows_ort_order(int64_t rows, int64_t size, const float* x, float* y) {
  // Eigen's redux_impl for LinearVectorizedTraversal with SSE Packet4f (predux: (p0 + p2) +
  // (p1 + p3)), as ReduceAggregatorSum::aggall calls it; then ReduceAggregatorMean divides.
  constexpr int64_t kPacket = 4;
  const auto count = static_cast<float>(size);
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * size;
    const int64_t start = std::min(size, (kPacket - (r * size) % kPacket) % kPacket);
    const int64_t body = (size - start) / kPacket * kPacket;
    const int64_t body2 = (size - start) / (2 * kPacket) * (2 * kPacket);
    float sum;
    if (body == 0) {
      sum = in[0];
      for (int64_t i = 1; i < size; ++i) sum = sum + in[i];
    } else {
      float p0[kPacket], p1[kPacket];
      for (int64_t j = 0; j < kPacket; ++j) p0[j] = in[start + j];
      if (body > kPacket) {
        for (int64_t j = 0; j < kPacket; ++j) p1[j] = in[start + kPacket + j];
        for (int64_t i = start + 2 * kPacket; i < start + body2; i += 2 * kPacket) {
          for (int64_t j = 0; j < kPacket; ++j) {
            p0[j] = p0[j] + in[i + j];
            p1[j] = p1[j] + in[i + kPacket + j];
          }
        }
        for (int64_t j = 0; j < kPacket; ++j) p0[j] = p0[j] + p1[j];
        if (body > body2)
          for (int64_t j = 0; j < kPacket; ++j) p0[j] = p0[j] + in[start + body2 + j];
      }
      sum = (p0[0] + p0[2]) + (p0[1] + p0[3]);
      for (int64_t i = 0; i < start; ++i) sum = sum + in[i];
      for (int64_t i = start + body; i < size; ++i) sum = sum + in[i];
    }
    y[r] = sum / count;
  }
}

}  // namespace qat::kernels
