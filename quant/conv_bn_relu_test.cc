#include "quant/conv_bn_relu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/random.h"
#include "nn/sequential.h"
#include "quant/qparams.h"
#include "tests/testing/compare.h"

namespace qat::quant {
namespace {

using testing::all_close;

Tensor randn(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape);
  qat::normal_(t, 0.0, 1.0, gen);
  return t;
}

std::vector<std::string> keys(const nn::StateDict& state) {
  std::vector<std::string> out;
  for (const auto& entry : state) out.push_back(entry.first);
  return out;
}

// Conv 3 -> 4 (3x3, padding 1) and a BN with non-default parameters and running statistics.
struct Layers {
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
};

Layers make_layers(bool conv_bias = true) {
  Layers l;
  l.conv = std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions().padding(1).bias(conv_bias));
  l.conv->weight.copy_(randn(l.conv->weight.shape(), 1).mul_(0.3));
  if (conv_bias) l.conv->bias.copy_(randn({4}, 2).mul_(0.1));
  l.bn = std::make_shared<nn::BatchNorm2d>(4);
  l.bn->weight.copy_(Tensor::from_vector<float>({1.2f, 0.8f, -0.5f, 1.5f}, {4}));
  l.bn->bias.copy_(Tensor::from_vector<float>({0.1f, -0.2f, 0.3f, 0.0f}, {4}));
  l.bn->running_mean.copy_(Tensor::from_vector<float>({0.2f, -0.1f, 0.05f, 0.3f}, {4}));
  l.bn->running_var.copy_(Tensor::from_vector<float>({0.9f, 1.3f, 0.6f, 2.0f}, {4}));
  return l;
}

QatModuleOptions float_output(FusedActivation activation = FusedActivation::kNone) {
  return QatModuleOptions().activation(activation).quantize_output(false);
}

// What an integer model computes from fold(): conv(x, fake_quant(W'), b'), then the activation.
Tensor folded_forward(const ConvBn2d& m, const Tensor& x) {
  const FoldedWeights folded = m.fold();
  const Tensor weight = fake_quantize(folded.weight, m.weight_fake_quant()->qparams());
  Tensor y = ops::conv2d(x, weight, folded.bias, m.conv()->conv_params());
  switch (m.options().activation()) {
    case FusedActivation::kReLU:
      return ops::relu(y);
    case FusedActivation::kReLU6:
      return ops::relu6(y);
    case FusedActivation::kNone:
      break;
  }
  return y;
}

TEST(ConvBn2d, StateDictHoldsOnlyQuantStateAndFloatKeysStay) {
  const Layers l = make_layers();
  auto float_model = std::make_shared<nn::Sequential>(l.conv, l.bn);
  const std::vector<std::string> float_keys = keys(float_model->state_dict());
  auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, QConfig::preset("fbgemm"));

  std::vector<std::string> expected;
  for (const std::string fq : {"weight_fake_quant.", "activation_post_process."}) {
    for (const char* key : {"fake_quant_enabled", "observer_enabled", "scale", "zero_point",
                            "activation_post_process.eps", "activation_post_process.min_val",
                            "activation_post_process.max_val"}) {
      expected.push_back(fq + key);
    }
  }
  EXPECT_EQ(keys(m->state_dict()), expected);
  EXPECT_TRUE(m->parameters().empty());
  EXPECT_EQ(keys(float_model->state_dict()), float_keys);
  EXPECT_EQ(float_keys[0], "0.weight");
  EXPECT_EQ(float_keys[3], "1.bias");

  // The fused module trains the float model's own tensors.
  const Tensor mean_before = l.bn->running_mean.clone();
  m->forward(randn({2, 3, 5, 5}, 2));
  EXPECT_EQ(l.bn->num_batches_tracked.item(), 1);
  EXPECT_FALSE(all_close(l.bn->running_mean, mean_before, 0, 0));
  EXPECT_TRUE(float_model->state_dict()[4].second.shares_storage(l.bn->running_mean));
}

TEST(ConvBn2d, LearnableScaleIsTheOnlyParameter) {
  const Layers l = make_layers();
  QConfig q = QConfig::preset("tensorrt");
  q.weight.learnable_scale = true;
  auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, q, float_output());
  const nn::NamedTensors params = m->named_parameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "weight_fake_quant.scale");
  EXPECT_EQ(keys(m->state_dict()).size(), 7u);  // no activation_post_process.*
  EXPECT_EQ(m->activation_post_process(), nullptr);
}

TEST(ConvBn2d, FoldIsTheBatchNormFoldingFormula) {
  for (bool conv_bias : {true, false}) {
    SCOPED_TRACE(conv_bias ? "conv bias" : "no conv bias");
    const Layers l = make_layers(conv_bias);
    const ConvBn2d m(l.conv, l.bn, QConfig::preset("tnn"));
    const FoldedWeights folded = m.fold();
    EXPECT_FALSE(folded.weight.requires_grad());
    const std::vector<float> w = l.conv->weight.to_vector<float>();
    const std::vector<float> gamma = l.bn->weight.to_vector<float>();
    const std::vector<float> beta = l.bn->bias.to_vector<float>();
    const std::vector<float> mean = l.bn->running_mean.to_vector<float>();
    const std::vector<float> var = l.bn->running_var.to_vector<float>();
    const std::vector<float> fw = folded.weight.to_vector<float>();
    const std::vector<float> fb = folded.bias.to_vector<float>();
    const int64_t per_channel = 3 * 3 * 3;
    for (int64_t c = 0; c < 4; ++c) {
      const double s = gamma[c] / std::sqrt(static_cast<double>(var[c]) + 1e-5);
      const double b = conv_bias ? l.conv->bias.to_vector<float>()[c] : 0.0;
      EXPECT_NEAR(fb[c], beta[c] + (b - mean[c]) * s, 1e-6);
      for (int64_t i = c * per_channel; i < (c + 1) * per_channel; ++i)
        EXPECT_NEAR(fw[i], w[i] * s, 1e-6 * std::fabs(w[i] * s) + 1e-7);
    }
  }
}

// fold().weight is bit for bit the tensor the weight fake quant observes, so the exporters'
// integer weights are the ones training used.
TEST(ConvBn2d, FoldedWeightIsWhatTheWeightObserverSaw) {
  const Layers l = make_layers();
  auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, QConfig::preset("tensorrt"));
  const Tensor folded = m->fold().weight;  // before forward() moves the running variance
  m->forward(randn({2, 3, 5, 5}, 3));
  const std::vector<float> w = folded.to_vector<float>();
  const std::vector<float> min_val =
      m->weight_fake_quant()->activation_post_process()->min_val().to_vector<float>();
  const std::vector<float> max_val =
      m->weight_fake_quant()->activation_post_process()->max_val().to_vector<float>();
  for (int64_t c = 0; c < 4; ++c) {
    const auto begin = w.begin() + c * 27, end = begin + 27;
    EXPECT_EQ(min_val[c], *std::min_element(begin, end));
    EXPECT_EQ(max_val[c], *std::max_element(begin, end));
  }
}

TEST(ConvBn2d, EvalAndFrozenBnEqualTheFoldedConv) {
  for (const char* preset : {"tensorrt", "tnn", "fbgemm", "qnnpack"}) {
    for (FusedActivation act : {FusedActivation::kNone, FusedActivation::kReLU}) {
      SCOPED_TRACE(std::string(preset) + (act == FusedActivation::kReLU ? " relu" : ""));
      const Layers l = make_layers();
      auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, QConfig::preset(preset), float_output(act));
      for (uint64_t step = 0; step < 3; ++step) m->forward(randn({2, 3, 5, 5}, 10 + step));
      disable_observer(*m);
      const Tensor x = randn({2, 3, 6, 5}, 20);
      m->eval();
      const Tensor y_eval = m->forward(x);
      EXPECT_TRUE(all_close(y_eval, folded_forward(*m, x), 1e-5, 1e-5));

      m->train();
      m->freeze_bn();
      const Tensor mean = l.bn->running_mean.clone();
      const int64_t tracked = static_cast<int64_t>(l.bn->num_batches_tracked.item());
      EXPECT_TRUE(all_close(m->forward(x), y_eval, 0, 0));
      EXPECT_TRUE(all_close(l.bn->running_mean, mean, 0, 0));
      EXPECT_EQ(l.bn->num_batches_tracked.item(), tracked);
    }
  }
}

TEST(ConvBn2d, FreezeBnSurvivesTrainAndUnfreezeResumesUpdates) {
  const Layers l = make_layers();
  auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, QConfig::preset("qnnpack"));
  const Tensor x = randn({2, 3, 5, 5}, 4);
  m->forward(x);
  EXPECT_EQ(l.bn->num_batches_tracked.item(), 1);
  m->freeze_bn();
  m->eval();
  m->train();  // as PyTorch: train() does not unfreeze
  EXPECT_TRUE(m->bn_frozen());
  const Tensor var = l.bn->running_var.clone();
  m->forward(x);
  EXPECT_TRUE(all_close(l.bn->running_var, var, 0, 0));
  m->unfreeze_bn();
  m->forward(x);
  EXPECT_EQ(l.bn->num_batches_tracked.item(), 2);
  EXPECT_FALSE(all_close(l.bn->running_var, var, 0, 0));
}

// PyTorch's _forward_approximate divides 0 by 0 here; see the header for what happens instead.
TEST(ConvBn2d, ZeroGammaGivesBetaAndFiniteGradients) {
  const Layers l = make_layers();
  l.bn->weight.data<float>()[1] = 0.0f;
  auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, QConfig::preset("fbgemm"), float_output());
  const Tensor mean_before = l.bn->running_mean.clone();
  Tensor x = randn({2, 3, 5, 5}, 5);
  x.requires_grad_();
  const Tensor y = m->forward(x);
  const Tensor dy = randn(y.shape(), 6);
  y.backward(dy);

  const std::vector<float> out = y.to_vector<float>();
  for (float v : out) ASSERT_TRUE(std::isfinite(v));
  const float beta = l.bn->bias.to_vector<float>()[1];
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(out[(n * 4 + 1) * 25 + i], beta);
  }
  for (const Tensor& g : {x.grad(), l.conv->weight.grad(), l.conv->bias.grad(), l.bn->weight.grad(),
                          l.bn->bias.grad()}) {
    ASSERT_TRUE(g.defined());
    for (float v : g.to_vector<float>()) ASSERT_TRUE(std::isfinite(v));
  }
  // W gets no gradient through the dead channel.
  const std::vector<float> dw = l.conv->weight.grad().to_vector<float>();
  for (int64_t i = 27; i < 54; ++i) EXPECT_EQ(dw[i], 0.0f);

  // The channel's BN input is the float conv: its batch statistics drive the running mean
  // (momentum 0.1) and gamma's gradient sum(dy * x_hat).
  const Tensor z = ops::conv2d(x.detach(), l.conv->weight.detach(), l.conv->bias.detach(),
                               l.conv->conv_params());
  const std::vector<float> zv = z.to_vector<float>();
  const std::vector<float> dyv = dy.to_vector<float>();
  double sum = 0, sum_sq = 0, sum_dy_z = 0, sum_dy = 0;
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t i = 0; i < 25; ++i) {
      const double v = zv[(n * 4 + 1) * 25 + i], d = dyv[(n * 4 + 1) * 25 + i];
      sum += v;
      sum_sq += v * v;
      sum_dy_z += d * v;
      sum_dy += d;
    }
  }
  const double batch_mean = sum / 50, batch_var = sum_sq / 50 - batch_mean * batch_mean;
  EXPECT_NEAR(l.bn->running_mean.to_vector<float>()[1],
              0.9 * mean_before.to_vector<float>()[1] + 0.1 * batch_mean, 1e-5);
  const double dgamma = (sum_dy_z - batch_mean * sum_dy) / std::sqrt(batch_var + 1e-5);
  EXPECT_NEAR(l.bn->weight.grad().to_vector<float>()[1], dgamma, 1e-4 * std::fabs(dgamma));

  // Eval and the folded conv agree: the channel outputs beta.
  disable_observer(*m);
  m->eval();
  const Tensor y_eval = m->forward(x.detach());
  EXPECT_TRUE(all_close(y_eval, folded_forward(*m, x.detach()), 1e-5, 1e-5));
  const FoldedWeights folded = m->fold();
  EXPECT_EQ(folded.bias.to_vector<float>()[1], beta);
  for (int64_t i = 27; i < 54; ++i) EXPECT_EQ(folded.weight.to_vector<float>()[i], 0.0f);
}

TEST(ConvBn2d, ReLU6ClampsTheSameOutput) {
  const Layers l = make_layers();
  const QConfig q = QConfig::preset("tnn");
  auto plain = std::make_shared<ConvBn2d>(l.conv, l.bn, q, float_output());
  auto relu6 = std::make_shared<ConvBn2d>(l.conv, l.bn, q, float_output(FusedActivation::kReLU6));
  plain->eval();
  relu6->eval();
  const Tensor x = randn({2, 3, 5, 5}, 7).mul_(4.0);  // large enough to reach 6
  const Tensor y = relu6->forward(x);
  EXPECT_TRUE(all_close(y, ops::relu6(plain->forward(x)), 0, 0));
  const std::vector<float> values = y.to_vector<float>();
  EXPECT_EQ(*std::max_element(values.begin(), values.end()), 6.0f);
}

TEST(ConvBn2d, ModelWideSwitches) {
  const Layers a = make_layers(), b = make_layers(false);
  auto m1 = std::make_shared<ConvBn2d>(a.conv, a.bn, QConfig::preset("tensorrt"));
  auto m2 = std::make_shared<ConvBn2d>(b.conv, b.bn, QConfig::preset("tensorrt"),
                                       QatModuleOptions().activation(FusedActivation::kReLU));
  auto model = std::make_shared<nn::Sequential>(m1, m2);

  freeze_bn_stats(*model);
  EXPECT_TRUE(m1->bn_frozen() && m2->bn_frozen());
  update_bn_stats(*model);
  EXPECT_FALSE(m1->bn_frozen() || m2->bn_frozen());

  const std::vector<FakeQuantize*> fqs = {
      m1->weight_fake_quant().get(), m1->activation_post_process().get(),
      m2->weight_fake_quant().get(), m2->activation_post_process().get()};
  disable_observer(*model);
  for (const FakeQuantize* fq : fqs) EXPECT_FALSE(fq->observer_enabled());
  enable_observer(*model);
  for (const FakeQuantize* fq : fqs) EXPECT_TRUE(fq->observer_enabled());
  disable_fake_quant(*model);
  for (const FakeQuantize* fq : fqs) EXPECT_FALSE(fq->fake_quant_enabled());

  // Without fake quant, conv(x, W s) / s + b through BN is the float conv -> BN.
  const Tensor x = randn({2, 3, 5, 5}, 8);
  auto float_model = std::make_shared<nn::Sequential>(a.conv, a.bn);
  float_model->eval();
  m1->eval();
  EXPECT_TRUE(all_close(m1->forward(x), float_model->forward(x), 1e-5, 1e-5));
  enable_fake_quant(*model);
  for (const FakeQuantize* fq : fqs) EXPECT_TRUE(fq->fake_quant_enabled());
}

TEST(ConvBn2d, NamesAndPreconditions) {
  const Layers l = make_layers();
  const QConfig q = QConfig::preset("tensorrt");
  EXPECT_EQ(ConvBn2d(l.conv, l.bn, q).type_name(), "ConvBn2d");
  EXPECT_EQ(
      ConvBn2d(l.conv, l.bn, q, QatModuleOptions().activation(FusedActivation::kReLU)).type_name(),
      "ConvBnReLU2d");
  EXPECT_EQ(
      ConvBn2d(l.conv, l.bn, q, QatModuleOptions().activation(FusedActivation::kReLU6)).type_name(),
      "ConvBnReLU6");
  auto m = std::make_shared<ConvBn2d>(l.conv, l.bn, q);
  const std::string repr = m->to_string();
  EXPECT_EQ(repr.rfind("ConvBn2d(\n  3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), "
                       "bn=BatchNorm2d(4, eps=1e-05",
                       0),
            0u)
      << repr;
  EXPECT_NE(repr.find("(weight_fake_quant): FakeQuantize("), std::string::npos) << repr;

  EXPECT_THROW(ConvBn2d(l.conv, std::make_shared<nn::BatchNorm2d>(5), q), Error);
  EXPECT_THROW(
      ConvBn2d(l.conv, std::make_shared<nn::BatchNorm2d>(4, nn::BatchNorm2dOptions().affine(false)),
               q),
      Error);
  EXPECT_THROW(ConvBn2d(nullptr, l.bn, q), Error);
  QConfig bad = q;
  bad.activation.bits = 16;
  EXPECT_THROW(ConvBn2d(l.conv, l.bn, bad), Error);
}

}  // namespace
}  // namespace qat::quant
