#pragma once

#include <cstdint>

#include "core/kernels/conv.h"

// Float32 conv / Gemm that sum in the order ONNX Runtime's CPU provider does (ORT 1.31, MLAS,
// x86-64 with AVX / AVX512F, one intra-op thread, graph optimizations disabled), so that a
// simulation reproduces ORT's outputs bit for bit. The reference twins of the other kernels are
// "the definition"; these are "the definition in MLAS's order". Plain loops; see the .cc for the
// order and the MLAS sources it follows.
//
// What MLAS does (onnxruntime/core/mlas/lib/convolve.cpp, sgemm.cpp,
// x86_64/FgemmKernelAvx512FCommon.h, x86_64/SgemmKernelM1Avx.S,
// x86_64/SgemmKernelM1TransposeBAvx.S):
//  - every conv is a GEMM per (sample, group): y[M = OC/G, N = OH*OW] = w[M, K] col[K, N] with
//    the im2col K order (input channel, kh, kw); 1x1 stride-1 unpadded convs read the input
//    directly; bias is added after the whole sum (MlasActivation), a Relu is a separate node;
//  - the GEMM cuts K into blocks (StrideK, 128 adapted to the shape); each block is one FMA
//    chain from 0 per output element, then added to the output: y = ((b0) + b1) + b2 ...;
//  - M = 1 GEMMs (depthwise convs, Gemm at batch 1) use AVX kernels without FMA: products
//    rounded, then added in groups of 4 (B not transposed) or in 8 lanes reduced pairwise
//    (B transposed);
//  - Gemm (transB = 1) copies the bias C into Y first and runs the GEMM with beta = 1, so the
//    bias is the first addend: y = (bias + b0) + b1 ...
// The two averaging reductions of the zoo models (GlobalAveragePool, ReduceMean) follow their
// own orders, below.
namespace qat::kernels {

// y = conv(x, w) + b with ONNX Conv semantics (the shape of conv.h, symmetric padding).
void conv2d_forward_mlas_order(const Conv2dShape& s,
                               const float* x,  // [N, C, H, W]
                               const float* w,  // [OC, C/G, KH, KW]
                               const float* b,  // [OC] or null
                               float* y);       // [N, OC, OH, OW]

// ONNX Gemm(x, w, b, transB = 1): y = x w^T + b.
void gemm_forward_mlas_order(int64_t N, int64_t K, int64_t M,
                             const float* x,  // [N, K]
                             const float* w,  // [M, K]
                             const float* b,  // [M] or null
                             float* y);       // [N, M]

// ONNX GlobalAveragePool: per plane, MlasPoolGlobalKernel's 4 lane sums over the first
// size / 4 * 4 elements, reduced (l0 + l2) + (l1 + l3), the rest added in order, divided by size.
void global_avg_pool_mlas_order(int64_t planes, int64_t size,
                                const float* x,  // [planes, size]
                                float* y);       // [planes]

// ONNX ReduceMean over trailing axes (ORT's ReduceAggregatorMean, fast "KR" path): per row an
// Eigen sum (SSE packets of 4 from the first 16-byte aligned element, two packet accumulators,
// the elements before and after added in order), divided by size. The alignment is that of ORT's
// own buffers: x itself 16-byte aligned (true for intermediate tensors, which ORT's allocator
// aligns to 64 bytes; a graph input fed by the caller may not be).
void reduce_mean_rows_ort_order(int64_t rows, int64_t size,
                                const float* x,  // [rows, size]
                                float* y);       // [rows]

}  // namespace qat::kernels
