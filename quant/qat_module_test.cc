// quant::Conv2d and quant::Linear, and what all QAT modules share (qat_module.h).

#include "quant/qat_module.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/random.h"
#include "nn/sequential.h"
#include "quant/conv_relu.h"
#include "quant/linear.h"
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

// forward() observes first, then fake-quantizes with the new qparams, so after one call the
// snapshots qparams() are the ones that call used.
TEST(QatConv2d, ConvOfTheFakeQuantizedWeightThenActivationThenOutputFakeQuant) {
  auto conv = std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions().stride(2));
  auto m = std::make_shared<Conv2d>(conv, QConfig::preset("tensorrt"),
                                    QatModuleOptions().activation(FusedActivation::kReLU));
  EXPECT_EQ(m->type_name(), "ConvReLU2d");
  Tensor x = randn({2, 3, 7, 7}, 1);
  x.requires_grad_();
  const Tensor y = m->forward(x);

  const Tensor weight = fake_quantize(conv->weight.detach(), m->weight_fake_quant()->qparams());
  const Tensor pre =
      ops::relu(ops::conv2d(x.detach(), weight, conv->bias.detach(), conv->conv_params()));
  EXPECT_TRUE(all_close(y, fake_quantize(pre, m->activation_post_process()->qparams()), 0, 0));
  EXPECT_EQ(m->activation_post_process()->qparams().rounding, RoundingMode::kHalfEvenDiv);

  y.backward(Tensor::ones(y.shape()));
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(conv->weight.grad().defined());
  EXPECT_TRUE(conv->bias.grad().defined());
}

TEST(QatLinear, LinearOfTheFakeQuantizedWeight) {
  auto linear = std::make_shared<nn::Linear>(6, 5);
  auto m = std::make_shared<Linear>(linear, QConfig::preset("qnnpack_perchannel"),
                                    QatModuleOptions().quantize_output(false));
  EXPECT_EQ(m->type_name(), "Linear");
  const Tensor x = randn({4, 6}, 2);
  const Tensor y = m->forward(x);
  const Tensor weight = fake_quantize(linear->weight.detach(), m->weight_fake_quant()->qparams());
  EXPECT_TRUE(all_close(y, ops::linear(x, weight, linear->bias.detach()), 0, 0));
  EXPECT_EQ(m->weight_fake_quant()->scale().numel(), 5);  // per output feature

  EXPECT_EQ(
      Linear(linear, QConfig::preset("tnn"), QatModuleOptions().activation(FusedActivation::kReLU))
          .type_name(),
      "LinearReLU");
}

TEST(QatModules, FoldReturnsCopiesOfTheFloatTensors) {
  auto linear = std::make_shared<nn::Linear>(3, 2, nn::LinearOptions().bias(false));
  const FoldedWeights folded = Linear(linear, QConfig::preset("tnn")).fold();
  EXPECT_TRUE(all_close(folded.weight, linear->weight, 0, 0));
  EXPECT_FALSE(folded.weight.shares_storage(linear->weight));
  EXPECT_FALSE(folded.bias.defined());

  auto conv = std::make_shared<nn::Conv2d>(2, 3, 1);
  const FoldedWeights conv_folded = Conv2d(conv, QConfig::preset("tnn")).fold();
  EXPECT_TRUE(all_close(conv_folded.bias, conv->bias, 0, 0));
  EXPECT_FALSE(conv_folded.bias.shares_storage(conv->bias));
}

TEST(QatModules, StateDictHoldsOnlyQuantState) {
  auto conv = std::make_shared<nn::Conv2d>(2, 3, 1);
  auto linear = std::make_shared<nn::Linear>(3, 2);
  auto model = std::make_shared<nn::Sequential>(
      std::make_shared<Conv2d>(conv, QConfig::preset("fbgemm")),
      std::make_shared<Linear>(linear, QConfig::preset("fbgemm"),
                               QatModuleOptions().quantize_output(false)));
  std::vector<std::string> keys;
  for (const auto& entry : model->state_dict()) keys.push_back(entry.first);
  ASSERT_EQ(keys.size(), 21u);  // 7 per FakeQuantize
  EXPECT_EQ(keys[0], "0.weight_fake_quant.fake_quant_enabled");
  EXPECT_EQ(keys[7], "0.activation_post_process.fake_quant_enabled");
  EXPECT_EQ(keys[20], "1.weight_fake_quant.activation_post_process.max_val");
  EXPECT_TRUE(model->parameters().empty());
}

TEST(QatModules, DisabledFakeQuantGivesTheFloatLayer) {
  auto conv = std::make_shared<nn::Conv2d>(3, 4, 3);
  auto m = std::make_shared<Conv2d>(conv, QConfig::preset("qnnpack"),
                                    QatModuleOptions().activation(FusedActivation::kReLU6));
  disable_fake_quant(*m);
  const Tensor x = randn({1, 3, 5, 5}, 3);
  EXPECT_TRUE(all_close(m->forward(x), ops::relu6(conv->forward(x)), 0, 0));
  EXPECT_EQ(m->type_name(), "ConvReLU6");
}

}  // namespace
}  // namespace qat::quant
