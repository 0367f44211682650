#include "quant/qparams.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "tests/testing/errors.h"
#include "tests/testing/compare.h"

namespace qat::quant {
namespace {

using qat::testing::error_of;

using testing::all_close;

Tensor floats(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

QParamsRule rule(QDType dtype, QScheme qscheme, int64_t quant_min, int64_t quant_max) {
  QParamsRule r;
  r.dtype = dtype;
  r.qscheme = qscheme;
  r.quant_min = quant_min;
  r.quant_max = quant_max;
  return r;
}

TEST(QParams, CalculateQminQmaxFollowsPyTorch) {
  using Range = std::pair<int64_t, int64_t>;
  EXPECT_EQ(calculate_qmin_qmax(std::nullopt, std::nullopt, QDType::kQUInt8, false), Range(0, 255));
  EXPECT_EQ(calculate_qmin_qmax(std::nullopt, std::nullopt, QDType::kQUInt8, true), Range(0, 127));
  EXPECT_EQ(calculate_qmin_qmax(std::nullopt, std::nullopt, QDType::kQInt8, false),
            Range(-128, 127));
  EXPECT_EQ(calculate_qmin_qmax(std::nullopt, std::nullopt, QDType::kQInt8, true), Range(-64, 63));
  // Customized ranges: fbgemm's quint8 [0, 255] + reduce_range -> [0, 127]; Python's floor
  // division halves -127 to -64.
  EXPECT_EQ(calculate_qmin_qmax(0, 255, QDType::kQUInt8, true), Range(0, 127));
  EXPECT_EQ(calculate_qmin_qmax(-127, 127, QDType::kQInt8, false), Range(-127, 127));
  EXPECT_EQ(calculate_qmin_qmax(-127, 127, QDType::kQInt8, true), Range(-64, 63));
  EXPECT_NE(error_of([] {
              calculate_qmin_qmax(1, 255, QDType::kQUInt8, false);
            }).find("quant_min <= 0 <= quant_max and quant_min < quant_max, got [1, 255]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              calculate_qmin_qmax(-200, 127, QDType::kQInt8, false);
            }).find("within torch.qint8's [-128, 127], got [-200, 127]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              calculate_qmin_qmax(0, std::nullopt, QDType::kQInt8, false);
            }).find("both quant_min and quant_max or neither, got only quant_min"),
            std::string::npos);
}

TEST(QParams, SymmetricScaleInFloat32) {
  // amax = max(-min, max) = 1: PyTorch divides by (127 - (-128)) / 2 = 127.5, TensorRT by 127.
  const Tensor lo = Tensor::scalar(-1.0), hi = Tensor::scalar(0.5);
  QParamsRule r = rule(QDType::kQInt8, QScheme::kPerTensorSymmetric, -128, 127);
  auto [scale, zero_point] = calculate_qparams(lo, hi, r);
  EXPECT_EQ(scale.shape(), (Shape{1}));
  EXPECT_EQ(scale.to_vector<float>()[0], 1.0f / 127.5f);
  EXPECT_EQ(zero_point.dtype(), DType::kInt32);
  EXPECT_EQ(zero_point.to_vector<int32_t>()[0], 0);
  r.symmetric_scale = SymmetricScale::kQuantMax;
  EXPECT_EQ(calculate_qparams(lo, hi, r).first.to_vector<float>()[0], 1.0f / 127.0f);
  // Narrow [-127, 127] makes the PyTorch rule amax / 127 as well.
  r = rule(QDType::kQInt8, QScheme::kPerTensorSymmetric, -127, 127);
  EXPECT_EQ(calculate_qparams(lo, hi, r).first.to_vector<float>()[0], 1.0f / 127.0f);
}

TEST(QParams, SymmetricQuint8ZeroPoint) {
  QParamsRule r = rule(QDType::kQUInt8, QScheme::kPerTensorSymmetric, 0, 255);
  EXPECT_EQ(calculate_qparams(Tensor::scalar(-1.0), Tensor::scalar(1.0), r)
                .second.to_vector<int32_t>()[0],
            128);
  r.quant_max = 127;
  r.has_customized_qrange = true;  // (0 + 127) // 2
  EXPECT_EQ(calculate_qparams(Tensor::scalar(-1.0), Tensor::scalar(1.0), r)
                .second.to_vector<int32_t>()[0],
            63);
}

TEST(QParams, AffineScaleAndZeroPoint) {
  const QParamsRule r = rule(QDType::kQUInt8, QScheme::kPerTensorAffine, 0, 255);
  // scale = (3 - (-1)) / 255, zero_point = 0 - round(-1 / scale) = round(63.75) = 64
  auto [scale, zero_point] = calculate_qparams(Tensor::scalar(-1.0), Tensor::scalar(3.0), r);
  const float expected = 4.0f / 255.0f;
  EXPECT_EQ(scale.to_vector<float>()[0], expected);
  EXPECT_EQ(zero_point.to_vector<int32_t>()[0],
            0 - static_cast<int32_t>(std::nearbyint(-1.0f / expected)));
  EXPECT_EQ(zero_point.to_vector<int32_t>()[0], 64);
  // The range always includes 0: all-positive data gets zero_point = quant_min.
  EXPECT_EQ(
      calculate_qparams(Tensor::scalar(2.0), Tensor::scalar(5.1), r).second.to_vector<int32_t>()[0],
      0);
  // min == max == 0: the scale is clamped to eps.
  EXPECT_EQ(
      calculate_qparams(Tensor::scalar(0.0), Tensor::scalar(0.0), r).first.to_vector<float>()[0],
      std::numeric_limits<float>::epsilon());
}

TEST(QParams, PerChannelAndUnobserved) {
  const QParamsRule r = rule(QDType::kQInt8, QScheme::kPerChannelSymmetric, -128, 127);
  auto [scale, zero_point] =
      calculate_qparams(floats({-1.0f, -0.0f, -3.0f}), floats({0.5f, 2.0f, 1.0f}), r);
  EXPECT_EQ(scale.to_vector<float>(),
            (std::vector<float>{1.0f / 127.5f, 2.0f / 127.5f, 3.0f / 127.5f}));
  EXPECT_EQ(zero_point.to_vector<int32_t>(), (std::vector<int32_t>{0, 0, 0}));
  // Never observed: PyTorch's defaults [1.0] and [0].
  for (const auto& [lo, hi] : {std::make_pair(Tensor::scalar(INFINITY), Tensor::scalar(-INFINITY)),
                               std::make_pair(Tensor::empty({0}), Tensor::empty({0}))}) {
    auto [s, z] = calculate_qparams(lo, hi, r);
    EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1.0f}));
    EXPECT_EQ(z.to_vector<int32_t>(), (std::vector<int32_t>{0}));
  }
  EXPECT_NE(error_of([&] {
              calculate_qparams(floats({1, 2}), floats({3, 1}), r);
            }).find("expected min_val <= max_val, got 2 > 1 in channel 1"),
            std::string::npos);
}

TEST(QParams, FromAmaxIsAmaxOver127) {
  const QParams qp = qparams_from_amax(Tensor::scalar(2.54), -128, 127, RoundingMode::kHalfEvenDiv);
  EXPECT_EQ(qp.scale.to_vector<float>(), (std::vector<float>{2.54f / 127.0f}));
  EXPECT_EQ(qp.zero_point.to_vector<int32_t>(), (std::vector<int32_t>{0}));
  EXPECT_FALSE(qp.per_channel());
  EXPECT_EQ(qp.rounding, RoundingMode::kHalfEvenDiv);
  const QParams pc =
      qparams_from_amax(floats({1.27f, 0.0f}), -127, 127, RoundingMode::kHalfAway, 0);
  EXPECT_EQ(pc.axis, std::optional<int64_t>(0));
  EXPECT_EQ(pc.scale.to_vector<float>(),
            (std::vector<float>{1.27f / 127.0f, std::numeric_limits<float>::epsilon()}));
  EXPECT_NE(error_of([] {
              qparams_from_amax(Tensor::scalar(-1.0), -128, 127, RoundingMode::kHalfEvenDiv);
            }).find("expected a finite amax >= 0, got -1"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              qparams_from_amax(floats({1, 2}), -128, 127, RoundingMode::kHalfEvenDiv);
            }).find("expected a one-element amax per tensor, got [2]"),
            std::string::npos);
}

TEST(QParams, FakeQuantizeDispatchesOnAxis) {
  QParams qp = qparams_from_amax(floats({1.27f, 12.7f}), -128, 127, RoundingMode::kHalfEvenDiv, 1);
  Tensor x = Tensor::from_vector(std::vector<float>{0.013f, 0.013f, 1.5f, 14.0f}, {2, 2});
  x.requires_grad_();
  const Tensor y = fake_quantize(x, qp);
  // column 0: s = 0.01, column 1: s = 0.1; the second row clips at 127 steps
  EXPECT_TRUE(all_close(
      y, Tensor::from_vector(std::vector<float>{0.01f, 0.0f, 1.27f, 12.7f}, {2, 2}), 1e-6, 1e-7));
  y.backward(Tensor::ones({2, 2}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1, 1, 0, 0}));
  qp.axis.reset();
  EXPECT_NE(error_of([&] { fake_quantize(x, qp); }).find("expected one-element scale"),
            std::string::npos);
}

}  // namespace
}  // namespace qat::quant
