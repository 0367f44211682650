// Int8AveragePool: TNN's truncating int8 average (tnn_format.md §3.4) on the input's grid, with
// the float pool's gradient.

#include "graph/int8_average_pool.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/ops/elementwise.h"
#include "quant/qconfig.h"

namespace qat::graph {
namespace {

// A tnn activation quantizer whose scale is 0.5 (observed range [-63.5, 63.5]).
std::shared_ptr<quant::FakeQuantize> half_step_quantizer() {
  auto fq = quant::QConfig::preset("tnn").activation.make_fake_quantize();
  fq->forward(Tensor::from_vector<float>({-63.5f, 63.5f}, {2}));
  EXPECT_FLOAT_EQ(fq->scale().item(), 0.5f);
  return fq;
}

const OpAttrs kGlobal = {{"output_size", std::vector<int64_t>{1, 1}}};

TEST(Int8AveragePoolTest, TruncatesTheCodeAverageTowardZero) {
  Int8AveragePool pool("adaptive_avg_pool2d", kGlobal, 4, half_step_quantizer());
  // Codes {1, 2, 2, 2} (sum 7) and {-1, -2, -2, -2} (sum -7): 7 / 4 = 1.75 -> 1, -1.75 -> -1,
  // where rounding would give 2 and -2.
  const Tensor x =
      Tensor::from_vector<float>({0.5f, 1.0f, 1.0f, 1.0f, -0.5f, -1.0f, -1.0f, -1.0f}, {1, 2, 2, 2});
  EXPECT_EQ(pool.forward(x).to_vector<float>(), (std::vector<float>{0.5f, -0.5f}));
}

TEST(Int8AveragePoolTest, ExactAveragesStay) {
  Int8AveragePool pool("avg_pool2d",
                       {{"kernel", std::vector<int64_t>{2, 2}},
                        {"stride", std::vector<int64_t>{2, 2}},
                        {"padding", std::vector<int64_t>{0, 0}},
                        {"ceil_mode", false},
                        {"count_include_pad", true}},
                       4, half_step_quantizer());
  // Codes 3 x 4 (sum 12): 12 / 4 = 3 exactly, which float rounding must not turn into 2.
  const Tensor x = Tensor::full({1, 1, 2, 2}, 1.5);
  EXPECT_EQ(pool.forward(x).to_vector<float>(), (std::vector<float>{1.5f}));
}

TEST(Int8AveragePoolTest, GradientIsTheFloatPools) {
  Int8AveragePool pool("adaptive_avg_pool2d", kGlobal, 4, half_step_quantizer());
  Tensor x = Tensor::from_vector<float>({0.5f, 1.0f, 1.0f, 1.0f}, {1, 1, 2, 2});
  x.requires_grad_();
  ops::sum(pool.forward(x)).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
}

TEST(Int8AveragePoolTest, WithoutFakeQuantItIsTheFloatPool) {
  auto fq = half_step_quantizer();
  fq->disable_fake_quant();
  Int8AveragePool pool("adaptive_avg_pool2d", kGlobal, 4, fq);
  const Tensor x = Tensor::from_vector<float>({0.5f, 1.0f, 1.0f, 1.0f}, {1, 1, 2, 2});
  EXPECT_EQ(pool.forward(x).to_vector<float>(), (std::vector<float>{0.875f}));
}

TEST(Int8AveragePoolTest, RejectsOtherOps) {
  EXPECT_THROW(Int8AveragePool("max_pool2d", {}, 4, half_step_quantizer()), Error);
}

}  // namespace
}  // namespace qat::graph
