#include "quant/qconfig.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "quant/observer.h"

namespace qat::quant {
namespace {

using Json = nlohmann::json;

// The qat::Error message of from_json(json), or "" when it succeeds.
std::string from_json_error(const Json& json) {
  try {
    QConfig::from_json(json);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(QConfigPreset, TensorRTIsSymmetricInt8WithDivisionRounding) {
  const QConfig q = QConfig::preset("tensorrt");
  EXPECT_EQ(q.target, Target::kTensorRT);
  const FakeQuantConfig& a = q.activation;
  EXPECT_EQ(a.qscheme(), QScheme::kPerTensorSymmetric);
  EXPECT_EQ(a.dtype(), QDType::kQInt8);
  EXPECT_EQ(a.quant_min(), -128);
  EXPECT_EQ(a.quant_max(), 127);
  EXPECT_EQ(a.observer, ObserverKind::kMovingAverageMinMax);
  EXPECT_EQ(a.rounding, RoundingMode::kHalfEvenDiv);
  EXPECT_EQ(a.symmetric_scale, SymmetricScale::kQuantMax);
  const FakeQuantConfig& w = q.weight;
  EXPECT_EQ(w.qscheme(), QScheme::kPerChannelSymmetric);
  EXPECT_EQ(w.ch_axis, 0);
  EXPECT_EQ(w.quant_min(), -127);
  EXPECT_EQ(w.quant_max(), 127);
  EXPECT_EQ(w.averaging_constant, 1.0);
  EXPECT_EQ(w.rounding, RoundingMode::kHalfEvenDiv);
}

TEST(QConfigPreset, TensorRTScalesAreAmaxOver127) {
  const QConfig q = QConfig::preset("tensorrt");
  auto act = q.activation.make_fake_quantize();
  act->forward(Tensor::from_vector<float>({-2.54f, 0.5f, 1.0f}, {3}));
  EXPECT_FLOAT_EQ(act->scale().item(), 2.54f / 127);
  EXPECT_EQ(act->zero_point().item(), 0);

  auto weight = q.weight.make_fake_quantize();
  weight->forward(Tensor::from_vector<float>({1.27f, -0.5f, 0.2f, -0.254f}, {2, 2}));
  const std::vector<float> scales = weight->scale().to_vector<float>();
  ASSERT_EQ(scales.size(), 2u);
  EXPECT_FLOAT_EQ(scales[0], 1.27f / 127);
  EXPECT_FLOAT_EQ(scales[1], 0.254f / 127);
  EXPECT_EQ(weight->zero_point().to_vector<int32_t>(), (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(weight->activation_post_process()->type_name(),
            "MovingAveragePerChannelMinMaxObserver");
}

TEST(QConfigPreset, TNNRoundsHalfAwayFromZero) {
  const QConfig q = QConfig::preset("tnn");
  EXPECT_EQ(q.activation.rounding, RoundingMode::kHalfAway);
  EXPECT_EQ(q.weight.rounding, RoundingMode::kHalfAway);
  EXPECT_EQ(q.activation.quant_min(), -128);
  EXPECT_EQ(q.weight.quant_min(), -127);
  // With amax = 127 the scale is 1, so 2.5 sits on a tie: TNN gives 3, TensorRT 2.
  const Tensor x = Tensor::from_vector<float>({2.5f, -127.0f, 127.0f}, {3});
  EXPECT_EQ(q.activation.make_fake_quantize()->forward(x).to_vector<float>()[0], 3.0f);
  EXPECT_EQ(
      QConfig::preset("tensorrt").activation.make_fake_quantize()->forward(x).to_vector<float>()[0],
      2.0f);
}

// get_default_qat_qconfig(backend, version=0) of PyTorch 1.13, field by field (onnx_qdq.md §8).
TEST(QConfigPreset, PyTorchBackendsMatchDefaultQatQConfigVersion0) {
  struct Expected {
    const char* name;
    int64_t act_quant_max;
    bool act_reduce_range;
    bool weight_per_channel;
  };
  for (const Expected& e :
       {Expected{"fbgemm", 127, true, true}, Expected{"qnnpack", 255, false, false},
        Expected{"qnnpack_perchannel", 255, false, true}}) {
    SCOPED_TRACE(e.name);
    const QConfig q = QConfig::preset(e.name);
    EXPECT_EQ(target_name(q.target), std::string(e.name));
    const FakeQuantConfig& a = q.activation;
    EXPECT_EQ(a.qscheme(), QScheme::kPerTensorAffine);
    EXPECT_EQ(a.dtype(), QDType::kQUInt8);
    EXPECT_EQ(a.quant_min(), 0);
    EXPECT_EQ(a.quant_max(), e.act_quant_max);
    EXPECT_EQ(a.reduce_range, e.act_reduce_range);
    const FakeQuantConfig& w = q.weight;
    EXPECT_EQ(w.qscheme(),
              e.weight_per_channel ? QScheme::kPerChannelSymmetric : QScheme::kPerTensorSymmetric);
    EXPECT_EQ(w.dtype(), QDType::kQInt8);
    EXPECT_EQ(w.quant_min(), -128);
    EXPECT_EQ(w.quant_max(), 127);
    for (const FakeQuantConfig* c : {&a, &w}) {
      EXPECT_EQ(c->observer, ObserverKind::kMovingAverageMinMax);
      EXPECT_EQ(c->averaging_constant, 0.01);
      EXPECT_EQ(c->eps, kFloat32Eps);
      EXPECT_EQ(c->rounding, RoundingMode::kHalfEvenMul);
      EXPECT_EQ(c->symmetric_scale, SymmetricScale::kHalfRange);
      EXPECT_FALSE(c->learnable_scale);
    }
    const auto act = a.make_fake_quantize();
    EXPECT_EQ(act->activation_post_process()->type_name(), "MovingAverageMinMaxObserver");
    EXPECT_EQ(act->quant_max(), e.act_quant_max);
    const auto weight = w.make_fake_quantize();
    EXPECT_EQ(weight->activation_post_process()->type_name(),
              e.weight_per_channel ? "MovingAveragePerChannelMinMaxObserver"
                                   : "MovingAverageMinMaxObserver");
  }
}

TEST(QConfigPreset, PyTorchWeightScaleIsAmaxOver127Point5) {
  auto weight = QConfig::preset("qnnpack").weight.make_fake_quantize();
  weight->forward(Tensor::from_vector<float>({-2.55f, 1.0f}, {2}));
  EXPECT_FLOAT_EQ(weight->scale().item(), 2.55f / 127.5f);
}

TEST(QConfigPreset, UnknownNameListsTheTargets) {
  try {
    QConfig::preset("tensorrt8");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "unknown target 'tensorrt8' (known: tensorrt, tnn, fbgemm, qnnpack, "
                  "qnnpack_perchannel)"),
              std::string::npos)
        << e.what();
  }
}

TEST(QConfigJson, AppliesOverridesToThePreset) {
  const QConfig q = QConfig::from_json(Json::parse(R"({
    "preset": "tensorrt",
    "activation": {"bits": 8, "observer": "moving_average_minmax", "averaging_constant": 0.02,
                   "calibrator": "histogram", "method": "percentile", "percentile": 99.9,
                   "learnable_scale": false},
    "weight": {"bits": 4, "observer": "minmax", "learnable_scale": true}
  })"));
  EXPECT_EQ(q.target, Target::kTensorRT);
  EXPECT_EQ(q.activation.averaging_constant, 0.02);
  EXPECT_EQ(q.activation.calibrator, CalibratorKind::kHistogram);
  EXPECT_EQ(q.activation.method, CalibMethod::kPercentile);
  EXPECT_EQ(q.activation.percentile, 99.9);
  EXPECT_EQ(q.activation.rounding, RoundingMode::kHalfEvenDiv);  // the target's, untouched
  EXPECT_EQ(q.weight.quant_min(), -7);                           // 4 bits, narrow
  EXPECT_EQ(q.weight.quant_max(), 7);
  EXPECT_EQ(q.weight.observer, ObserverKind::kMinMax);
  EXPECT_TRUE(q.weight.learnable_scale);
  EXPECT_EQ(q.weight.make_fake_quantize()->activation_post_process()->type_name(),
            "PerChannelMinMaxObserver");
  EXPECT_EQ(q.activation.make_histogram_calibrator().histogram().size(), 0u);
}

TEST(QConfigJson, SchemeAndRangeOverridesOnAPyTorchPreset) {
  const QConfig q = QConfig::from_json(Json::parse(R"({
    "preset": "fbgemm",
    "activation": {"reduce_range": false, "scheme": "per_tensor_symmetric", "signed": true},
    "weight": {"scheme": "per_tensor_affine", "narrow_range": true}
  })"));
  EXPECT_EQ(q.activation.quant_min(), -128);
  EXPECT_EQ(q.activation.quant_max(), 127);
  EXPECT_EQ(q.activation.qscheme(), QScheme::kPerTensorSymmetric);
  EXPECT_EQ(q.weight.qscheme(), QScheme::kPerTensorAffine);
  EXPECT_EQ(q.weight.quant_min(), -127);
}

TEST(QConfigJson, StrictErrorsNameTheJsonPath) {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {R"({"activation": {}})", "qconfig.preset: missing; one of tensorrt, tnn"},
      {R"({"preset": "tensorrt8"})", "qconfig.preset: unknown value \"tensorrt8\" (known: "},
      {R"({"preset": 1})", "qconfig.preset: expected a string, got number 1"},
      {R"({"preset": "tnn", "activations": {}})",
       "qconfig.activations: unknown key (known: preset, activation, weight)"},
      {R"({"preset": "tnn", "weight": {"bitz": 4}})", "qconfig.weight.bitz: unknown key"},
      {R"({"preset": "tnn", "weight": 4})", "qconfig.weight: expected a JSON object, got number"},
      {R"({"preset": "tnn", "weight": {"bits": "8"}})",
       "qconfig.weight.bits: expected an integer, got string \"8\""},
      {R"({"preset": "tnn", "weight": {"bits": 7.5}})", "qconfig.weight.bits: expected an integer"},
      {R"({"preset": "tnn", "weight": {"narrow_range": 1}})",
       "qconfig.weight.narrow_range: expected true or false, got number 1"},
      {R"({"preset": "tnn", "weight": {"scheme": "per_channel"}})",
       "qconfig.weight.scheme: unknown value \"per_channel\" (known: per_tensor_symmetric"},
      {R"({"preset": "tnn", "activation": {"observer": "histogram"}})",
       "qconfig.activation.observer: unknown value \"histogram\" (known: minmax, "
       "moving_average_minmax)"},
      {R"({"preset": "tensorrt", "activation": {"method": "mse"}})",
       "qconfig.activation.method: only applies with \"calibrator\": \"histogram\""},
      // Impossible combinations.
      {R"({"preset": "tensorrt", "activation": {"scheme": "per_channel_symmetric"}})",
       "qconfig.activation: tensorrt quantizes activations per tensor"},
      {R"({"preset": "tensorrt", "activation": {"scheme": "per_tensor_affine"}})",
       "qconfig.activation: tensorrt needs a symmetric scheme (zero point 0)"},
      {R"({"preset": "tnn", "weight": {"scheme": "per_channel_affine"}})",
       "qconfig.weight: tnn needs a symmetric scheme"},
      {R"({"preset": "tnn", "weight": {"signed": false, "narrow_range": false}})",
       "qconfig.weight: tnn runs int8, got signed = false"},
      {R"({"preset": "tensorrt", "activation": {"bits": 6}})",
       "qconfig.activation: tensorrt saturates activations to [-128, 127], got [-32, 31]"},
      {R"({"preset": "tnn", "activation": {"reduce_range": true}})",
       "qconfig.activation: tnn saturates activations to [-128, 127], got [-64, 63]"},
      {R"({"preset": "fbgemm", "weight": {"bits": 9}})",
       "qconfig.weight: bits must be in 2..8, got 9"},
      {R"({"preset": "tensorrt", "weight": {"bits": 1}})",
       "qconfig.weight: bits must be in 2..8, got 1"},
      {R"({"preset": "qnnpack", "activation": {"narrow_range": true}})",
       "qconfig.activation: narrow_range needs a signed grid"},
      {R"({"preset": "tensorrt", "activation": {"calibrator": "histogram",
                                                "learnable_scale": true}})",
       "qconfig.activation: learnable_scale (LSQ) trains the scale, so it cannot also take it "
       "from the histogram calibrator"},
      {R"({"preset": "tensorrt", "weight": {"calibrator": "histogram"}})",
       "qconfig.weight: the histogram calibrator is per tensor only"},
      {R"({"preset": "qnnpack", "activation": {"calibrator": "histogram"}})",
       "qconfig.activation: the histogram calibrator computes a symmetric amax"},
      {R"({"preset": "tensorrt", "activation": {"calibrator": "histogram", "percentile": 0}})",
       "qconfig.activation: percentile must be in (0, 100], got 0"},
      {R"({"preset": "fbgemm", "activation": {"averaging_constant": 0}})",
       "qconfig.activation: averaging_constant must be in (0, 1], got 0"},
      {R"({"preset": "fbgemm", "weight": {"ch_axis": -1}})",
       "qconfig.weight: ch_axis must be >= 0, got -1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    const std::string error = from_json_error(Json::parse(c.json));
    EXPECT_NE(error.find(c.message), std::string::npos) << "error: " << error;
  }
}

TEST(QConfigJson, ErrorsStartWithTheCallersPath) {
  try {
    QConfig::from_json(Json::parse(R"({"preset": "tnn", "weight": {"bitz": 4}})"),
                       "configs/r18.json: quant");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("configs/r18.json: quant.weight.bitz: unknown key", 0),
              0u)
        << e.what();
  }
}

TEST(QConfigValidate, RejectsARoundingOtherThanTheTargets) {
  QConfig q = QConfig::preset("tensorrt");
  q.activation.rounding = RoundingMode::kHalfAway;
  EXPECT_THROW(q.validate(), Error);
  q = QConfig::preset("fbgemm");
  q.weight.symmetric_scale = SymmetricScale::kQuantMax;
  EXPECT_THROW(q.validate(), Error);
}

TEST(FakeQuantConfig, HistogramCalibratorNeedsTheHistogramKind) {
  EXPECT_THROW(QConfig::preset("tensorrt").activation.make_histogram_calibrator(), Error);
}

TEST(FakeQuantConfig, FactoryRejectsImpossibleConfigs) {
  FakeQuantConfig c;
  c.bits = 12;
  EXPECT_THROW(c.make_fake_quantize(), Error);
  EXPECT_THROW(c.quant_min(), Error);
}

}  // namespace
}  // namespace qat::quant
