#include "core/kernels/conv.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "tests/testing/compare.h"

namespace qat::kernels {
namespace {

struct Case {
  std::string name;
  Conv2dShape s;
};

// {N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, G}; OH/OW are filled in by with_output.
Conv2dShape with_output(Conv2dShape s) {
  s.OH = conv2d_output_size(s.H, s.KH, s.SH, s.PH, s.DH);
  s.OW = conv2d_output_size(s.W, s.KW, s.SW, s.PW, s.DW);
  return s;
}

// Odd sizes everywhere so no layout or blocking assumption hides a bug. C/G and OC/G of 16+
// make oneDNN choose channel-blocked layouts, which exercises the reorders.
std::vector<Case> cases() {
  return {
      {"Basic3x3", with_output({2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1})},
      {"Stride2OddSize", with_output({1, 4, 9, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1})},
      {"Stride2LastRowUnused", with_output({3, 5, 8, 8, 3, 3, 3, 2, 2, 0, 0, 1, 1, 1})},
      {"Dilation2", with_output({3, 3, 11, 10, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1})},
      {"Groups2", with_output({2, 4, 8, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2})},
      {"Depthwise", with_output({2, 8, 9, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, 8})},
      {"DepthwiseMultiplier2", with_output({1, 4, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4})},
      {"Pointwise1x1", with_output({3, 16, 5, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1})},
      {"Downsample1x1Stride2", with_output({2, 8, 9, 9, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1})},
      {"NonSquareKernel", with_output({1, 3, 6, 11, 4, 2, 5, 1, 2, 0, 2, 1, 1, 1})},
      {"Mixed", with_output({3, 6, 13, 8, 4, 5, 3, 3, 2, 2, 1, 2, 1, 2})},
      {"Stem7x7", with_output({1, 3, 32, 32, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1})},
      {"Blocked", with_output({2, 32, 14, 13, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1})},
      {"BlockedGroups", with_output({1, 64, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, 2})},
      {"BlockedDepthwise", with_output({2, 32, 15, 15, 32, 3, 3, 2, 2, 1, 1, 1, 1, 32})},
  };
}

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

Shape x_shape(const Conv2dShape& s) { return {s.N, s.C, s.H, s.W}; }
Shape w_shape(const Conv2dShape& s) { return {s.OC, s.C / s.G, s.KH, s.KW}; }
Shape y_shape(const Conv2dShape& s) { return {s.N, s.OC, s.OH, s.OW}; }

// Float sums of up to a few hundred products in different orders.
constexpr double kRtol = 1e-4, kAtol = 1e-4;

class Conv2dKernel : public ::testing::TestWithParam<Case> {};

TEST_P(Conv2dKernel, ForwardMatchesReference) {
  const Conv2dShape& s = GetParam().s;
  const Tensor x = random_tensor(x_shape(s), 1), w = random_tensor(w_shape(s), 2);
  const Tensor b = random_tensor({s.OC}, 3);
  for (bool with_bias : {false, true}) {
    for (bool for_training : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "bias " << with_bias << ", training " << for_training);
      const float* b_data = with_bias ? b.data<float>() : nullptr;
      Tensor y = Tensor::empty(y_shape(s)), y_ref = Tensor::empty(y_shape(s));
      conv2d_forward(s, x.data<float>(), w.data<float>(), b_data, y.data<float>(), for_training);
      conv2d_forward_ref(s, x.data<float>(), w.data<float>(), b_data, y_ref.data<float>());
      EXPECT_TRUE(testing::all_close(y, y_ref, kRtol, kAtol));
    }
  }
}

TEST_P(Conv2dKernel, BackwardDataMatchesReference) {
  const Conv2dShape& s = GetParam().s;
  const Tensor dy = random_tensor(y_shape(s), 4), w = random_tensor(w_shape(s), 5);
  // Garbage in the outputs: the kernels must overwrite, not accumulate.
  Tensor dx = Tensor::full(x_shape(s), 7.0), dx_ref = Tensor::full(x_shape(s), -7.0);
  conv2d_backward_data(s, dy.data<float>(), w.data<float>(), dx.data<float>());
  conv2d_backward_data_ref(s, dy.data<float>(), w.data<float>(), dx_ref.data<float>());
  EXPECT_TRUE(testing::all_close(dx, dx_ref, kRtol, kAtol));
}

TEST_P(Conv2dKernel, BackwardWeightAndBiasMatchReference) {
  const Conv2dShape& s = GetParam().s;
  const Tensor x = random_tensor(x_shape(s), 6), dy = random_tensor(y_shape(s), 7);
  for (bool with_bias : {false, true}) {
    SCOPED_TRACE(::testing::Message() << "bias " << with_bias);
    Tensor dw = Tensor::full(w_shape(s), 7.0), dw_ref = Tensor::full(w_shape(s), -7.0);
    Tensor db = Tensor::full({s.OC}, 7.0), db_ref = Tensor::full({s.OC}, -7.0);
    conv2d_backward_weight(s, x.data<float>(), dy.data<float>(), dw.data<float>(),
                           with_bias ? db.data<float>() : nullptr);
    conv2d_backward_weight_ref(s, x.data<float>(), dy.data<float>(), dw_ref.data<float>(),
                               db_ref.data<float>());
    EXPECT_TRUE(testing::all_close(dw, dw_ref, kRtol, kAtol));
    if (with_bias) {
      EXPECT_TRUE(testing::all_close(db, db_ref, kRtol, kAtol));
    } else {
      EXPECT_EQ(db.to_vector<float>(), std::vector<float>(s.OC, 7.0f)) << "db was written";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv2dKernel, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

TEST(Conv2dOutputSize, FollowsPyTorchFormula) {
  EXPECT_EQ(conv2d_output_size(224, 7, 2, 3, 1), 112);
  EXPECT_EQ(conv2d_output_size(8, 3, 2, 0, 1), 3);    // floor: the last row is never reached
  EXPECT_EQ(conv2d_output_size(11, 3, 1, 2, 2), 11);  // dilated extent 5, padding 2
  EXPECT_EQ(conv2d_output_size(2, 3, 1, 0, 1), 0);    // kernel larger than the input
  EXPECT_EQ(conv2d_output_size(1, 3, 2, 0, 1), 0);    // negative span must not round up to 1
}

TEST(Conv2dKernelCache, RepeatedCallsGiveIdenticalResults) {
  const Conv2dShape s = with_output({2, 16, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1});
  const Tensor x = random_tensor(x_shape(s), 8), w = random_tensor(w_shape(s), 9);
  Tensor y1 = Tensor::empty(y_shape(s)), y2 = Tensor::empty(y_shape(s));
  conv2d_forward(s, x.data<float>(), w.data<float>(), nullptr, y1.data<float>(), true);
  conv2d_forward(s, x.data<float>(), w.data<float>(), nullptr, y2.data<float>(), true);
  EXPECT_EQ(y1.to_vector<float>(), y2.to_vector<float>());
}

}  // namespace
}  // namespace qat::kernels
