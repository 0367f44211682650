#include "core/kernels/mlas_order_ref.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/kernels/conv.h"

// The fixtures are ONNX Runtime 1.31.1's outputs (onnxruntime-node, CPU provider, graph
// optimizations disabled, 1 intra-op thread, x86-64 AVX512F) for one-node models Conv(x, w, b) /
// Gemm(x, w, b, transB = 1) whose x, w, b are graph inputs (as after DequantizeLinear: no
// prepacked weights), fed with the deterministic inputs below (the same float32 arithmetic in
// numpy). Each case takes a different MLAS path; a float sum in any other order misses them (the
// test checks that a plain float loop does). tests/golden/gen_mlas_order_fixtures.py builds the
// models, runs them and prints every value below; its --check compares them with this file.
namespace qat::kernels {
namespace {

// ((i * mul) % mod - mod / 2) / denom in float32, the fixtures' inputs.
std::vector<float> sequence(int64_t n, int64_t mul, int64_t mod, float denom) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * mul) % mod - mod / 2) / denom;
  return v;
}
std::vector<float> x_values(int64_t n) { return sequence(n, 7919, 2001, 997.0f); }
std::vector<float> w_values(int64_t n) { return sequence(n, 104729, 1999, 9973.0f); }
std::vector<float> b_values(int64_t n) { return sequence(n, 31, 201, 37.0f); }

// FNV-1a over the float32 bit patterns.
uint64_t fnv1a(const std::vector<float>& v) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const float f : v) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    h = (h ^ bits) * 0x100000001b3ull;
  }
  return h;
}

struct ConvCase {
  std::string name;
  Conv2dShape s;       // {N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, G}
  uint64_t ort_fnv1a;  // of ONNX Runtime's output
};

Conv2dShape with_output(Conv2dShape s) {
  s.OH = conv2d_output_size(s.H, s.KH, s.SH, s.PH, s.DH);
  s.OW = conv2d_output_size(s.W, s.KW, s.SW, s.PW, s.DW);
  return s;
}

std::vector<ConvCase> conv_cases() {
  return {
      // M = 1 per group, no FMA, groups of 4 k (K = 9: 4, 4, 1).
      {"Depthwise", with_output({1, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2}), 0x8c5e1769382a7318ull},
      // 1x1 output of a pointwise conv: N = 1, A and B swapped into the transposed M = 1 kernel.
      {"Pointwise1x1Spatial", with_output({1, 512, 1, 1, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1}),
       0xb2ace4edc1de982full},
      // im2col in slices, K = 144 > 128: two K blocks added to the output.
      {"SegmentedKBlocks", with_output({1, 16, 12, 12, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1}),
       0x78eaf1b4d5c47819ull},
      // OC > OH * OW: the whole expansion, one GEMM.
      {"ExpandThenGemm", with_output({1, 64, 4, 4, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1}),
       0x4a036e2908696494ull},
      // GemmDirect on the input, batch 2.
      {"Pointwise", with_output({2, 200, 3, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1}),
       0x7c03de70952de872ull},
      // One input channel, kernel as wide / high as the input: GemmDirect without im2col.
      {"FullWidth", with_output({1, 1, 5, 4, 3, 3, 4, 1, 1, 0, 0, 1, 1, 1}), 0x6c9b44955006456bull},
      {"FullWidthDepthwise", with_output({1, 2, 6, 9, 2, 2, 9, 1, 1, 0, 0, 1, 1, 2}),
       0x43b94f9abed902dbull},
      {"FullHeight", with_output({1, 1, 5, 4, 3, 5, 1, 1, 1, 0, 0, 1, 1, 1}),
       0x5e7bb92f8a27ffc1ull},
  };
}

class MlasOrderConvTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(MlasOrderConvTest, EqualsOnnxRuntimeBitForBit) {
  const Conv2dShape& s = GetParam().s;
  const std::vector<float> x = x_values(s.N * s.C * s.H * s.W);
  const std::vector<float> w = w_values(s.OC * (s.C / s.G) * s.KH * s.KW);
  const std::vector<float> b = b_values(s.OC);
  std::vector<float> y(s.N * s.OC * s.OH * s.OW);
  conv2d_forward_mlas_order(s, x.data(), w.data(), b.data(), y.data());
  EXPECT_EQ(fnv1a(y), GetParam().ort_fnv1a);

  // The definition (double) agrees to float32 rounding noise.
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), bd(b.begin(), b.end());
  std::vector<double> yd(y.size());
  conv2d_forward_ref<double>(s, xd.data(), wd.data(), bd.data(), yd.data());
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_NEAR(y[i], yd[i], 1e-5 * (1 + std::fabs(yd[i]))) << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, MlasOrderConvTest, ::testing::ValuesIn(conv_cases()),
                         [](const ::testing::TestParamInfo<ConvCase>& info) {
                           return info.param.name;
                         });

// The float32 conv2d_forward_ref (another order) misses the fixtures: they do test the order.
TEST(MlasOrderConv, PlainFloatLoopDiffers) {
  int differing_cases = 0;
  for (const ConvCase& c : conv_cases()) {
    const Conv2dShape& s = c.s;
    const std::vector<float> x = x_values(s.N * s.C * s.H * s.W);
    const std::vector<float> w = w_values(s.OC * (s.C / s.G) * s.KH * s.KW);
    const std::vector<float> b = b_values(s.OC);
    std::vector<float> y(s.N * s.OC * s.OH * s.OW);
    conv2d_forward_ref<float>(s, x.data(), w.data(), b.data(), y.data());
    differing_cases += fnv1a(y) != c.ort_fnv1a;
  }
  EXPECT_GE(differing_cases, 6);
}

// Gemm at batch 1: the transposed M = 1 kernel, 8 lane sums reduced by a tree that depends on
// the output's position (rows 0-3 by 4, rows 4-5 by 2, row 6 alone); bias added last.
TEST(MlasOrderGemm, Batch1EqualsOnnxRuntime) {
  const int64_t N = 1, K = 300, M = 7;
  const std::vector<float> x = x_values(N * K), w = w_values(M * K), b = b_values(M);
  std::vector<float> y(N * M);
  gemm_forward_mlas_order(N, K, M, x.data(), w.data(), b.data(), y.data());
  const std::vector<float> ort = {-0x1.274544p+1f, -0x1.98d4dp+0f, -0x1.55a1e4p-1f, -0x1.74e62ep-2f,
                                  0x1.3a634ep-1f,  0x1.e49b9ep+0f, 0x1.1c5792p+1f};
  for (int64_t i = 0; i < M; ++i) EXPECT_EQ(y[i], ort[i]) << i;
}

// Gemm at batch 3, K = 2100 with N = 5: K blocks of 1024 (the K stride doubles while N is
// small), each an FMA chain, added to the bias copied into Y first.
TEST(MlasOrderGemm, KBlocksEqualOnnxRuntime) {
  const int64_t N = 3, K = 2100, M = 5;
  const std::vector<float> x = x_values(N * K), w = w_values(M * K), b = b_values(M);
  std::vector<float> y(N * M);
  gemm_forward_mlas_order(N, K, M, x.data(), w.data(), b.data(), y.data());
  const std::vector<float> ort = {
      -0x1.11e7c8p+1f, -0x1.2b917cp+0f, -0x1.78f5bcp+0f, 0x1.440f0ep-3f,  0x1.cbf2c4p-1f,
      -0x1.208186p+1f, -0x1.19c7e6p+1f, -0x1.68d0b2p+0f, -0x1.b00334p-3f, 0x1.a3431p-1f,
      -0x1.2c45d8p+1f, -0x1.1829eap+1f, -0x1.f35c04p-2f, 0x1.7ec48p-4f,   0x1.b16844p-2f};
  for (int64_t i = 0; i < N * M; ++i) EXPECT_EQ(y[i], ort[i]) << i;
}

TEST(MlasOrderGemm, NoBiasIsTheSumAlone) {
  const int64_t N = 2, K = 5, M = 3;
  const std::vector<float> x = {1, 2, 3, 4, 5, -1, 0, 1, 0, -1};
  const std::vector<float> w = {1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1};
  std::vector<float> y(N * M, 123.0f);
  gemm_forward_mlas_order(N, K, M, x.data(), w.data(), nullptr, y.data());
  EXPECT_EQ(y, (std::vector<float>{1, 5, 15, -1, 1, -1}));
}

// GlobalAveragePool and ReduceMean(axes = [2, 3]) of x [2, 3, 7, 7] (an intermediate tensor in
// the fixture model, as in a real one: Mul(x, 1) first, so ORT's aligned buffer is reduced): the
// same input, two orders, two results; a plain float loop matches neither everywhere.
TEST(MlasOrderReductions, EqualOnnxRuntime) {
  const int64_t rows = 6, size = 49;
  const std::vector<float> x = x_values(rows * size);
  std::vector<float> pool(rows), mean(rows);
  global_avg_pool_mlas_order(rows, size, x.data(), pool.data());
  reduce_mean_rows_ort_order(rows, size, x.data(), mean.data());
  const std::vector<float> ort_pool = {-0x1.292414p-6f, 0x1.7ba488p-6f, 0x1.81581ap-6f,
                                       0x1.870ba2p-6f,  0x1.8cbf3p-6f,  0x1.9272bcp-6f};
  const std::vector<float> ort_mean = {-0x1.292412p-6f, 0x1.7ba48ep-6f, 0x1.815818p-6f,
                                       0x1.870ba4p-6f,  0x1.8cbf32p-6f, 0x1.9272c2p-6f};
  EXPECT_EQ(pool, ort_pool);
  EXPECT_EQ(mean, ort_mean);
}

}  // namespace
}  // namespace qat::kernels
