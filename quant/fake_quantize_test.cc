#include "quant/fake_quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/ops/fake_quant.h"
#include "quant/calibrator.h"
#include "tests/testing/compare.h"

namespace qat::quant {
namespace {

using testing::all_close;

Tensor floats(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

Tensor floats(const std::vector<float>& v) { return floats(v, {static_cast<int64_t>(v.size())}); }

std::shared_ptr<FakeQuantize> fbgemm_activation(
    const FakeQuantizeOptions& options = FakeQuantizeOptions()) {
  return std::make_shared<FakeQuantize>(
      std::make_shared<MovingAverageMinMaxObserver>(
          ObserverOptions().quant_min(0).quant_max(255).reduce_range(true)),
      options);
}

std::shared_ptr<FakeQuantize> per_channel_weight(
    const FakeQuantizeOptions& options = FakeQuantizeOptions()) {
  return std::make_shared<FakeQuantize>(std::make_shared<MovingAveragePerChannelMinMaxObserver>(
                                            ObserverOptions()
                                                .dtype(QDType::kQInt8)
                                                .qscheme(QScheme::kPerChannelSymmetric)
                                                .quant_min(-128)
                                                .quant_max(127)),
                                        options);
}

TEST(FakeQuantize, StateDictHasPyTorchKeysAndDtypes) {
  auto fq = fbgemm_activation();
  const nn::StateDict sd = fq->state_dict();
  const std::vector<std::pair<std::string, DType>> expected = {
      {"fake_quant_enabled", DType::kUInt8},
      {"observer_enabled", DType::kUInt8},
      {"scale", DType::kFloat32},
      {"zero_point", DType::kInt32},
      {"activation_post_process.eps", DType::kFloat32},
      {"activation_post_process.min_val", DType::kFloat32},
      {"activation_post_process.max_val", DType::kFloat32}};
  ASSERT_EQ(sd.size(), expected.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(sd[i].first, expected[i].first);
    EXPECT_EQ(sd[i].second.dtype(), expected[i].second) << sd[i].first;
  }
  EXPECT_EQ(sd[0].second.shape(), (Shape{1}));
  EXPECT_TRUE(fq->parameters().empty());
  EXPECT_EQ(fq->quant_min(), 0);
  EXPECT_EQ(fq->quant_max(), 127);
  EXPECT_EQ(fq->ch_axis(), -1);
}

TEST(FakeQuantize, ObservesThenQuantizes) {
  auto fq = fbgemm_activation();
  Tensor x = floats({-1.0f, 0.3f, 2.0f, 5.0f});
  x.requires_grad_();
  const Tensor y = fq->forward(x);
  // min -1, max 5 -> scale 6 / 127, zero point round(127 / 6) = 21
  const float scale = 6.0f / 127.0f;
  EXPECT_EQ(fq->scale().to_vector<float>(), (std::vector<float>{scale}));
  EXPECT_EQ(fq->zero_point().to_vector<int32_t>(), (std::vector<int32_t>{21}));
  const Tensor expected = ops::fake_quantize_per_tensor_affine(
      x.detach(), fq->scale(), fq->zero_point(), 0, 127, RoundingMode::kHalfEvenMul);
  EXPECT_TRUE(all_close(y, expected, 0, 0));
  ops::sum(y).backward();
  EXPECT_TRUE(x.grad().defined());
}

TEST(FakeQuantize, SwitchesFreezeAndBypass) {
  auto fq = fbgemm_activation();
  fq->forward(floats({-1.0f, 1.0f}));
  const std::vector<float> frozen = fq->scale().to_vector<float>();
  fq->disable_observer();
  EXPECT_FALSE(fq->observer_enabled());
  EXPECT_EQ(fq->state_dict()[1].second.to_vector<int32_t>(), (std::vector<int32_t>{0}));
  fq->forward(floats({-10.0f, 10.0f}));
  EXPECT_EQ(fq->scale().to_vector<float>(), frozen);
  EXPECT_EQ(fq->activation_post_process()->max_val().item(), 1.0);
  fq->disable_fake_quant();
  const Tensor x = floats({0.123f});
  EXPECT_TRUE(fq->forward(x).shares_storage(x));
  // PyTorch observes in eval() too: only the switch stops it.
  fq->enable_observer();
  fq->enable_fake_quant();
  fq->eval();
  fq->forward(floats({-10.0f, 10.0f}));
  EXPECT_NE(fq->scale().to_vector<float>(), frozen);
}

TEST(FakeQuantize, PerChannelScaleGrowsToTheChannelCount) {
  auto fq = per_channel_weight();
  const Tensor scale_handle = fq->state_dict()[2].second;
  const Tensor w = floats({1, -2, 0.5f, 0.25f, 3, 3, -1, 0}, {4, 2});
  const Tensor y = fq->forward(w);
  EXPECT_EQ(scale_handle.shape(), (Shape{4}));
  EXPECT_EQ(fq->zero_point().shape(), (Shape{4}));
  EXPECT_EQ(scale_handle.to_vector<float>()[1], 0.5f / 127.5f);
  const QParams qp = fq->qparams();
  EXPECT_EQ(qp.axis, std::optional<int64_t>(0));
  EXPECT_EQ(qp.quant_min, -128);
  EXPECT_EQ(qp.rounding, RoundingMode::kHalfEvenMul);
  EXPECT_FALSE(qp.scale.shares_storage(fq->scale()));  // a snapshot
  EXPECT_TRUE(all_close(y, fake_quantize(w, qp), 0, 0));
  // A checkpoint with per-channel state loads into a fresh module (its [1] scale and [0]
  // min/max are resized to the checkpoint's [4]) and gives the same output.
  auto other = per_channel_weight();
  other->load_state_dict(fq->state_dict());
  EXPECT_EQ(other->scale().to_vector<float>(), fq->scale().to_vector<float>());
  other->disable_observer();
  fq->disable_observer();
  EXPECT_TRUE(all_close(other->forward(w), fq->forward(w), 0, 0));
}

TEST(FakeQuantize, CalibratedAmaxGivesTensorRtScale) {
  auto fq =
      std::make_shared<FakeQuantize>(std::make_shared<MovingAverageMinMaxObserver>(
                                         ObserverOptions()
                                             .dtype(QDType::kQInt8)
                                             .qscheme(QScheme::kPerTensorSymmetric)
                                             .quant_min(-128)
                                             .quant_max(127)
                                             .symmetric_scale(SymmetricScale::kQuantMax)),
                                     FakeQuantizeOptions().rounding(RoundingMode::kHalfEvenDiv));
  // amax = 127 / 64: scale 1 / 64 exactly, so 2.5 * s is an exact tie of x / s.
  MaxCalibrator calibrator;
  calibrator.collect(floats({-1.984375f, 1.0f}));
  calibrator.collect(floats({0.5f}));
  const Tensor amax = calibrator.compute_amax();
  fq->activation_post_process()->set_min_max(ops::neg(amax), amax);
  fq->update_qparams();
  fq->disable_observer();
  EXPECT_EQ(fq->scale().to_vector<float>(), (std::vector<float>{1.0f / 64.0f}));
  EXPECT_EQ(fq->qparams().rounding, RoundingMode::kHalfEvenDiv);
  // x / s = 2.5 exactly: half to even gives 2 (ONNX), not 3.
  const float s = fq->scale().to_vector<float>()[0];
  const float tie = 2.5f * s;
  EXPECT_EQ(fq->forward(floats({tie})).to_vector<float>()[0], 2.0f * s);
}

TEST(FakeQuantize, RoundingModeIsUsed) {
  auto make = [](RoundingMode mode) {
    auto fq = std::make_shared<FakeQuantize>(
        std::make_shared<MinMaxObserver>(
            ObserverOptions().dtype(QDType::kQInt8).qscheme(QScheme::kPerTensorSymmetric)),
        FakeQuantizeOptions().rounding(mode));
    fq->activation_post_process()->set_min_max(Tensor::scalar(-127.5), Tensor::scalar(127.5));
    fq->update_qparams();  // scale 1
    fq->disable_observer();
    return fq;
  };
  const Tensor x = floats({0.5f, 1.5f, -2.5f});
  EXPECT_EQ(make(RoundingMode::kHalfAway)->forward(x).to_vector<float>(),
            (std::vector<float>{1, 2, -3}));
  EXPECT_EQ(make(RoundingMode::kHalfEvenMul)->forward(x).to_vector<float>(),
            (std::vector<float>{0, 2, -2}));
}

TEST(FakeQuantize, LearnableScaleIsAParameterWithTheLsqGradient) {
  auto fq = fbgemm_activation(FakeQuantizeOptions().learnable_scale(true));
  const nn::StateDict sd = fq->state_dict();
  EXPECT_EQ(sd[0].first, "scale");
  ASSERT_EQ(fq->parameters().size(), 1u);
  const Tensor x = floats({-1.0f, 0.3f, 2.0f, 5.0f, 0.7f, 1.1f});
  fq->forward(x);  // observer on: initializes the scale
  fq->disable_observer();
  fq->zero_grad();
  Tensor scale = fq->parameters()[0];
  const Tensor y = fq->forward(x);
  ops::sum(y).backward();
  ASSERT_TRUE(scale.grad().defined());
  // g = 1 / sqrt(numel * quant_max)
  Tensor s2 = scale.detach().clone();
  s2.requires_grad_();
  ops::sum(ops::fake_quantize_lsq_per_tensor(x, s2, fq->zero_point(), 0, 127,
                                             1.0 / std::sqrt(6.0 * 127.0)))
      .backward();
  EXPECT_TRUE(all_close(scale.grad(), s2.grad(), 0, 0));
  // A scale trained below eps is clamped back before use.
  scale.fill_(-1.0);
  fq->forward(x);
  EXPECT_EQ(scale.item(), static_cast<double>(std::numeric_limits<float>::epsilon()));
}

TEST(FakeQuantize, LearnableSymmetricPinsTheZeroPoint) {
  auto fq = per_channel_weight(FakeQuantizeOptions().learnable_scale(true));
  const Tensor w = floats({1, -2, 0.5f, 0.25f}, {2, 2});
  fq->forward(w);
  EXPECT_EQ(fq->zero_point().to_vector<int32_t>(), (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(fq->scale().shape(), (Shape{2}));
  EXPECT_NE(fq->to_string().find("learnable_scale=True"), std::string::npos);
  EXPECT_NE(fq->to_string().find("(activation_post_process): "
                                 "MovingAveragePerChannelMinMaxObserver"),
            std::string::npos);
  // The learned per-channel scale loads into a fresh module (its [1] scale parameter resizes).
  auto fresh = per_channel_weight(FakeQuantizeOptions().learnable_scale(true));
  fresh->load_state_dict(fq->state_dict());
  EXPECT_EQ(fresh->scale().to_vector<float>(), fq->scale().to_vector<float>());
}

}  // namespace
}  // namespace qat::quant
