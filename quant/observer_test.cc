#include "quant/observer.h"
#include "tests/testing/errors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace qat::quant {
namespace {

using qat::testing::error_of;

Tensor floats(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

std::vector<std::string> keys(const nn::StateDict& sd) {
  std::vector<std::string> out;
  for (const auto& entry : sd) out.push_back(entry.first);
  return out;
}

TEST(Observer, MinMaxKeepsRunningExtremes) {
  auto obs = std::make_shared<MinMaxObserver>();
  EXPECT_EQ(keys(obs->state_dict()), (std::vector<std::string>{"eps", "min_val", "max_val"}));
  EXPECT_EQ(obs->min_val().dim(), 0);
  EXPECT_EQ(obs->to_string(), "MinMaxObserver(min_val=inf, max_val=-inf)");
  const Tensor x = floats({-1.0f, 2.0f, 0.5f}, {3});
  EXPECT_TRUE(obs->forward(x).shares_storage(x));  // returns its input
  obs->forward(floats({-0.5f, 3.0f}, {2}).to(DType::kFloat64));
  obs->forward(Tensor::empty({0, 3}));  // ignored
  EXPECT_EQ(obs->min_val().item(), -1.0);
  EXPECT_EQ(obs->max_val().item(), 3.0);
  EXPECT_EQ(obs->to_string(), "MinMaxObserver(min_val=-1.0, max_val=3.0)");
  // quint8 [0, 255] affine by default.
  const auto [scale, zero_point] = obs->calculate_qparams();
  EXPECT_EQ(scale.to_vector<float>()[0], 4.0f / 255.0f);
  EXPECT_EQ(zero_point.to_vector<int32_t>()[0], 64);
  obs->reset_min_max_vals();
  EXPECT_EQ(obs->min_val().item(), INFINITY);
}

TEST(Observer, MovingAverageStartsFromTheFirstBatch) {
  auto obs =
      std::make_shared<MovingAverageMinMaxObserver>(ObserverOptions().averaging_constant(0.1));
  obs->forward(floats({-2.0f, 4.0f}, {2}));
  EXPECT_EQ(obs->min_val().item(), -2.0);
  EXPECT_EQ(obs->max_val().item(), 4.0);
  obs->forward(floats({-1.0f, 1.0f}, {2}));
  // float32, c rounded to float32: m + c * (batch - m)
  const float c = 0.1f;
  EXPECT_EQ(obs->min_val().item(), -2.0f + c * (-1.0f - -2.0f));
  EXPECT_EQ(obs->max_val().item(), 4.0f + c * (1.0f - 4.0f));
}

TEST(Observer, PerChannelResizesItsBuffersInPlace) {
  auto obs = std::make_shared<PerChannelMinMaxObserver>(
      ObserverOptions().qscheme(QScheme::kPerChannelSymmetric).dtype(QDType::kQInt8).ch_axis(1));
  const nn::StateDict sd = obs->state_dict();  // handles taken before the first observation
  EXPECT_EQ(sd[1].second.shape(), (Shape{0}));
  // x [2, 3, 2]: channel c = x[:, c, :]
  obs->forward(floats({1, 2, -3, 4, 5, 6, -7, 8, 9, 10, 11, -12}, {2, 3, 2}));
  EXPECT_EQ(sd[1].second.to_vector<float>(), (std::vector<float>{-7, -3, -12}));
  EXPECT_EQ(sd[2].second.to_vector<float>(), (std::vector<float>{8, 10, 11}));
  EXPECT_EQ(obs->to_string(),
            "PerChannelMinMaxObserver(min_val=tensor([-7.0, -3.0, -12.0]), "
            "max_val=tensor([8.0, 10.0, 11.0]))");
  const auto [scale, zero_point] = obs->calculate_qparams();
  EXPECT_EQ(scale.to_vector<float>(),
            (std::vector<float>{8.0f / 127.5f, 10.0f / 127.5f, 12.0f / 127.5f}));
  EXPECT_EQ(zero_point.to_vector<int32_t>(), (std::vector<int32_t>{0, 0, 0}));
  EXPECT_NE(error_of([&] {
              obs->forward(Tensor::zeros({2, 4}));
            }).find("expected 3 channels along dim 1 as before, got input [2, 4]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              obs->forward(Tensor::zeros({4}));
            }).find("ch_axis 1 out of range for an input of shape [4]"),
            std::string::npos);
  obs->reset_min_max_vals();
  EXPECT_EQ(sd[1].second.shape(), (Shape{0}));
}

TEST(Observer, MovingAveragePerChannelAlongTheLastAxis) {
  auto obs = std::make_shared<MovingAveragePerChannelMinMaxObserver>(
      ObserverOptions().qscheme(QScheme::kPerChannelAffine).ch_axis(-1).averaging_constant(0.5));
  obs->forward(floats({1, -2, 3, 4}, {2, 2}));  // channels: [1, 3], [-2, 4]
  obs->forward(floats({0, 0, 0, 0}, {2, 2}));
  EXPECT_EQ(obs->min_val().to_vector<float>(), (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(obs->max_val().to_vector<float>(), (std::vector<float>{1.5f, 2.0f}));
}

TEST(Observer, SetMinMaxAndTensorRtScale) {
  auto obs = std::make_shared<MovingAverageMinMaxObserver>(
      ObserverOptions()
          .dtype(QDType::kQInt8)
          .qscheme(QScheme::kPerTensorSymmetric)
          .quant_min(-128)
          .quant_max(127)
          .symmetric_scale(SymmetricScale::kQuantMax));
  obs->set_min_max(Tensor::scalar(-2.54), Tensor::scalar(1.0));
  EXPECT_EQ(obs->calculate_qparams().first.to_vector<float>()[0], 2.54f / 127.0f);
  EXPECT_NE(error_of([&] {
              obs->set_min_max(Tensor::scalar(1.0), Tensor::scalar(0.0));
            }).find("expected min <= max, got 1 > 0"),
            std::string::npos);
  auto pc = std::make_shared<PerChannelMinMaxObserver>();
  pc->set_min_max(Tensor::zeros({4}), Tensor::ones({4}));
  EXPECT_EQ(pc->max_val().shape(), (Shape{4}));
}

TEST(Observer, OptionsAreValidatedAsPyTorch) {
  EXPECT_NE(error_of([] {
              MinMaxObserver{ObserverOptions().qscheme(QScheme::kPerChannelAffine)};
            }).find("MinMaxObserver: expected a per-tensor qscheme, got torch.per_channel_affine"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              PerChannelMinMaxObserver{ObserverOptions()};
            }).find("expected a per-channel qscheme, got torch.per_tensor_affine"),
            std::string::npos);
  EXPECT_NE(
      error_of([] {
        MinMaxObserver{ObserverOptions().qscheme(QScheme::kPerTensorSymmetric).reduce_range(true)};
      }).find("cannot reduce range for symmetric quantization for quint8"),
      std::string::npos);
  EXPECT_NE(error_of([] {
              MinMaxObserver{ObserverOptions().symmetric_scale(SymmetricScale::kQuantMax)};
            }).find("kQuantMax needs a symmetric qscheme"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              MovingAverageMinMaxObserver{ObserverOptions().averaging_constant(0)};
            }).find("expected 0 < averaging_constant <= 1, got 0"),
            std::string::npos);
}

TEST(Observer, QuantRangeAndCheckpointRoundTrip) {
  auto obs = std::make_shared<MovingAverageMinMaxObserver>(
      ObserverOptions().quant_min(0).quant_max(255).reduce_range(true));
  EXPECT_EQ(obs->quant_min(), 0);
  EXPECT_EQ(obs->quant_max(), 127);
  EXPECT_TRUE(obs->rule().has_customized_qrange);
  obs->forward(floats({-1, 2}, {2}));
  auto fresh = std::make_shared<MovingAverageMinMaxObserver>(
      ObserverOptions().quant_min(0).quant_max(255).reduce_range(true));
  fresh->load_state_dict(obs->state_dict());
  EXPECT_EQ(fresh->calculate_qparams().first.item(), obs->calculate_qparams().first.item());
  // eps comes from the buffer, as PyTorch's self.eps.
  fresh->state_dict()[0].second.fill_(0.5);
  EXPECT_EQ(fresh->calculate_qparams().first.item(), 0.5);
}

}  // namespace
}  // namespace qat::quant
