// Fake quantization, observers and FakeQuantize against PyTorch 1.13, on the fixtures written
// by tests/golden/gen_quant_fixtures.py. PyTorch's arithmetic is RoundingMode::kHalfEvenMul,
// which must match bit for bit: outputs, STE gradients, observer min/max, scales and zero points.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops/fake_quant.h"
#include "core/serialize.h"
#include "quant/fake_quantize.h"
#include "quant/observer.h"
#include "tests/testing/golden.h"

namespace qat {
namespace {

using quant::ObserverOptions;
using quant::QDType;
using quant::QScheme;
using testing::fixture;
using testing::fixture_leaf;
using testing::has_fixture;
using testing::matches_fixture;

// Exact equality (all_close with zero tolerances).
::testing::AssertionResult exactly(const Tensor& got, const NamedTensors& f,
                                   const std::string& name) {
  return matches_fixture(got.to(DType::kFloat32), f, name, 0, 0);
}

std::vector<int64_t> config(const NamedTensors& f, const std::string& c) {
  return fixture(f, c + ".config").to_vector<int64_t>();
}

// ---- the fake-quant ops

TEST(GoldenQuant, FakeQuantizePerTensorMatchesTorch) {
  const NamedTensors f = testing::load_fixture("quant_fake_quant.safetensors");
  int cases = 0;
  for (int i = 0; has_fixture(f, "per_tensor_" + std::to_string(i) + ".x"); ++i, ++cases) {
    const std::string c = "per_tensor_" + std::to_string(i);
    const std::vector<int64_t> cfg = config(f, c);
    Tensor x = fixture_leaf(f, c + ".x");
    const Tensor y = ops::fake_quantize_per_tensor_affine(x, fixture(f, c + ".scale"),
                                                          fixture(f, c + ".zero_point"), cfg[0],
                                                          cfg[1], RoundingMode::kHalfEvenMul);
    y.backward(fixture(f, c + ".dy"));
    EXPECT_TRUE(exactly(y, f, c + ".y"));
    EXPECT_TRUE(exactly(x.grad(), f, c + ".dx"));
  }
  EXPECT_EQ(cases, 5);
}

TEST(GoldenQuant, FakeQuantizePerChannelMatchesTorch) {
  const NamedTensors f = testing::load_fixture("quant_fake_quant.safetensors");
  int cases = 0;
  for (int i = 0; has_fixture(f, "per_channel_" + std::to_string(i) + ".x"); ++i, ++cases) {
    const std::string c = "per_channel_" + std::to_string(i);
    const std::vector<int64_t> cfg = config(f, c);
    Tensor x = fixture_leaf(f, c + ".x");
    const Tensor y = ops::fake_quantize_per_channel_affine(
        x, fixture(f, c + ".scale"), fixture(f, c + ".zero_point"), cfg[2], cfg[0], cfg[1],
        RoundingMode::kHalfEvenMul);
    y.backward(fixture(f, c + ".dy"));
    EXPECT_TRUE(exactly(y, f, c + ".y"));
    EXPECT_TRUE(exactly(x.grad(), f, c + ".dx"));
  }
  EXPECT_EQ(cases, 4);
}

// The rounding modes really differ on these inputs: next to the ties of s = 0.3, x * (1 / s)
// and x / s round to different integers (gen_quant_fixtures.py disagreeing_ties), so the
// other modes miss PyTorch's output or its STE mask.
TEST(GoldenQuant, OnlyHalfEvenMulReproducesTorch) {
  const NamedTensors f = testing::load_fixture("quant_fake_quant.safetensors");
  const std::vector<int64_t> cfg = config(f, "per_tensor_3");
  for (RoundingMode mode : {RoundingMode::kHalfEvenDiv, RoundingMode::kHalfAway}) {
    Tensor x = fixture_leaf(f, "per_tensor_3.x");
    const Tensor y = ops::fake_quantize_per_tensor_affine(x, fixture(f, "per_tensor_3.scale"),
                                                          fixture(f, "per_tensor_3.zero_point"),
                                                          cfg[0], cfg[1], mode);
    y.backward(fixture(f, "per_tensor_3.dy"));
    EXPECT_FALSE(exactly(y, f, "per_tensor_3.y")) << rounding_mode_name(mode);
    EXPECT_FALSE(exactly(x.grad(), f, "per_tensor_3.dx")) << rounding_mode_name(mode);
  }
}

// torch._fake_quantize_learnable_per_{tensor,channel}_affine. The scale gradient sums
// per-element terms that PyTorch forms as ((q - zp) * s - x) / s in float32 and we as
// (q - zp) - x / s, in a different order: a few float32 ulps apart.
TEST(GoldenQuant, LsqMatchesTorchLearnableFakeQuantize) {
  const NamedTensors f = testing::load_fixture("quant_fake_quant.safetensors");
  int cases = 0;
  for (const std::string kind : {"lsq_tensor_", "lsq_channel_"}) {
    for (int i = 0; has_fixture(f, kind + std::to_string(i) + ".x"); ++i, ++cases) {
      const std::string c = kind + std::to_string(i);
      const std::vector<int64_t> cfg = config(f, c);
      const double grad_factor = fixture(f, c + ".grad_factor").item();
      Tensor x = fixture_leaf(f, c + ".x");
      Tensor scale = fixture_leaf(f, c + ".scale");
      const Tensor zero_point = fixture(f, c + ".zero_point");
      const Tensor y = cfg.size() == 3
                           ? ops::fake_quantize_lsq_per_channel(x, scale, zero_point, cfg[2],
                                                                cfg[0], cfg[1], grad_factor)
                           : ops::fake_quantize_lsq_per_tensor(x, scale, zero_point, cfg[0], cfg[1],
                                                               grad_factor);
      y.backward(fixture(f, c + ".dy"));
      EXPECT_TRUE(exactly(y, f, c + ".y"));
      EXPECT_TRUE(exactly(x.grad(), f, c + ".dx"));
      EXPECT_TRUE(matches_fixture(scale.grad(), f, c + ".dscale", 1e-4, 1e-6));
    }
  }
  EXPECT_EQ(cases, 5);
}

// ---- observers: the torch.ao.quantization settings of gen_quant_fixtures.py OBSERVERS

struct ObserverCase {
  std::string name;
  std::function<std::shared_ptr<quant::ObserverBase>()> make;
};

template <class Observer>
std::function<std::shared_ptr<quant::ObserverBase>()> maker(const ObserverOptions& options) {
  return [options] { return std::make_shared<Observer>(options); };
}

ObserverOptions fbgemm_act() {
  return ObserverOptions().quant_min(0).quant_max(255).reduce_range(true);
}

ObserverOptions qint8_weight(QScheme qscheme) {
  return ObserverOptions().quant_min(-128).quant_max(127).dtype(QDType::kQInt8).qscheme(qscheme);
}

std::vector<ObserverCase> observer_cases() {
  using quant::MinMaxObserver;
  using quant::MovingAverageMinMaxObserver;
  using quant::MovingAveragePerChannelMinMaxObserver;
  using quant::PerChannelMinMaxObserver;
  return {
      {"fbgemm_act", maker<MovingAverageMinMaxObserver>(fbgemm_act())},
      {"fbgemm_act_relu", maker<MovingAverageMinMaxObserver>(fbgemm_act())},
      {"fbgemm_weight", maker<MovingAveragePerChannelMinMaxObserver>(
                            qint8_weight(QScheme::kPerChannelSymmetric).ch_axis(0))},
      {"qnnpack_act",
       maker<MovingAverageMinMaxObserver>(ObserverOptions().quant_min(0).quant_max(255))},
      {"qnnpack_weight",
       maker<MovingAverageMinMaxObserver>(qint8_weight(QScheme::kPerTensorSymmetric))},
      {"minmax_fbgemm_act", maker<MinMaxObserver>(fbgemm_act())},
      {"minmax_qnnpack_weight", maker<MinMaxObserver>(qint8_weight(QScheme::kPerTensorSymmetric))},
      {"perchannel_fbgemm_weight",
       maker<PerChannelMinMaxObserver>(qint8_weight(QScheme::kPerChannelSymmetric).ch_axis(0))},
      {"minmax_default", maker<MinMaxObserver>(ObserverOptions())},
      {"symmetric_quint8",
       maker<MovingAverageMinMaxObserver>(ObserverOptions().qscheme(QScheme::kPerTensorSymmetric))},
      {"symmetric_quint8_custom",
       maker<MinMaxObserver>(
           ObserverOptions().qscheme(QScheme::kPerTensorSymmetric).quant_min(0).quant_max(127))},
      {"perchannel_affine_axis1",
       maker<MovingAveragePerChannelMinMaxObserver>(ObserverOptions()
                                                        .qscheme(QScheme::kPerChannelAffine)
                                                        .ch_axis(1)
                                                        .averaging_constant(0.25))},
      {"qint8_reduce_range",
       maker<MinMaxObserver>(ObserverOptions().dtype(QDType::kQInt8).reduce_range(true))},
  };
}

TEST(GoldenQuant, ObserversMatchTorchOverFiveBatches) {
  const NamedTensors f = testing::load_fixture("quant_observers.safetensors");
  for (const ObserverCase& c : observer_cases()) {
    const std::shared_ptr<quant::ObserverBase> observer = c.make();
    for (int k = 0; k < 5; ++k) {
      const std::string step = "." + std::to_string(k);
      observer->forward(fixture(f, c.name + ".x" + step));
      EXPECT_TRUE(exactly(observer->min_val(), f, c.name + ".min_val" + step));
      EXPECT_TRUE(exactly(observer->max_val(), f, c.name + ".max_val" + step));
      const auto [scale, zero_point] = observer->calculate_qparams();
      EXPECT_TRUE(exactly(scale, f, c.name + ".scale" + step));
      EXPECT_EQ(zero_point.to_vector<int32_t>(),
                fixture(f, c.name + ".zero_point" + step).to_vector<int32_t>())
          << c.name << step;
    }
  }
}

// ---- FakeQuantize modules of the version-0 fbgemm / qnnpack QAT qconfigs

TEST(GoldenQuant, FakeQuantizeMatchesTorchModule) {
  const std::string file = "quant_observers.safetensors";
  const NamedTensors f = testing::load_fixture(file);
  const SafetensorsMetadata metadata = load_safetensors_metadata(testing::kGoldenDir + file);
  using quant::FakeQuantize;
  const std::vector<ObserverCase> cases = {
      {"fq_fbgemm_act", maker<quant::MovingAverageMinMaxObserver>(fbgemm_act())},
      {"fq_fbgemm_weight", maker<quant::MovingAveragePerChannelMinMaxObserver>(
                               qint8_weight(QScheme::kPerChannelSymmetric).ch_axis(0))},
      {"fq_qnnpack_act",
       maker<quant::MovingAverageMinMaxObserver>(ObserverOptions().quant_min(0).quant_max(255))},
      {"fq_qnnpack_weight",
       maker<quant::MovingAverageMinMaxObserver>(qint8_weight(QScheme::kPerTensorSymmetric))},
  };
  // batch k -> (observer enabled, fake quant enabled), FAKE_QUANTIZE_SCHEDULE
  const std::vector<std::pair<bool, bool>> schedule = {
      {true, true}, {true, true}, {true, true}, {false, true}, {false, false}};
  for (const ObserverCase& c : cases) {
    auto fq = std::make_shared<FakeQuantize>(c.make());
    std::string keys;
    for (const auto& entry : fq->state_dict()) keys += (keys.empty() ? "" : ",") + entry.first;
    EXPECT_EQ(keys, metadata.at(c.name + ".state_dict_keys"));
    for (int k = 0; k < 5; ++k) {
      const std::string step = "." + std::to_string(k);
      fq->enable_observer(schedule[k].first);
      fq->enable_fake_quant(schedule[k].second);
      Tensor x = fixture_leaf(f, c.name + ".x" + step);
      const Tensor y = fq->forward(x);
      y.backward(fixture(f, c.name + ".dy" + step));
      EXPECT_TRUE(exactly(y, f, c.name + ".y" + step));
      EXPECT_TRUE(exactly(x.grad(), f, c.name + ".dx" + step));
      EXPECT_TRUE(exactly(fq->scale(), f, c.name + ".scale" + step));
      EXPECT_EQ(fq->zero_point().to_vector<int32_t>(),
                fixture(f, c.name + ".zero_point" + step).to_vector<int32_t>())
          << c.name << step;
    }
  }
}

}  // namespace
}  // namespace qat
