// Golden parity of the differentiable ops against PyTorch 1.13 (float32, fast path).
//
// The fixtures in tests/data/ come from tests/golden/gen_fixtures.py, which holds the PyTorch
// calls; each case below names the same configuration as the script's case table, and the test
// checks the stored `config` tensor so that the two tables cannot drift apart silently.
// References are PyTorch's float64 results rounded to float32, so the tolerances below budget
// only qat's own float32 rounding (the script checks that PyTorch's float32 path meets them).

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops/batch_norm.h"
#include "core/ops/conv.h"
#include "core/ops/linear.h"
#include "core/ops/loss.h"
#include "core/ops/pool.h"
#include "core/tensor.h"
#include "tests/testing/golden.h"

namespace qat {
namespace {

using testing::fixture;
using testing::fixture_leaf;
using testing::matches_fixture;

// |qat - torch| <= atol + 1e-5 |torch|, elementwise.
constexpr double kRtol = 1e-5;
// Conv, linear and batch norm outputs and gradients are sums of tens to hundreds of O(1)
// products; float32 rounding leaves ~1e-6 absolute error on elements that cancel to nearly
// zero, where a pure relative bound is meaningless. Hence an absolute floor of 1e-5.
constexpr double kAtolSums = 1e-5;
// Pooling and the losses add at most a few terms (max pooling copies values), so the floor is
// 1e-6: it only covers results that are themselves within ~1e-6 of zero.
constexpr double kAtolFew = 1e-6;

std::vector<int64_t> ints(const Tensor& t) { return t.to_vector<int64_t>(); }

// ------------------------------------------------------------------------------------ conv2d

struct ConvCase {
  const char* name;
  ops::Conv2dParams params;
  bool bias;
};

// gtest prints a case by its name (instead of its bytes) when it fails.
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

// Mirrors CONV_CASES in gen_fixtures.py.
const ConvCase kConvCases[] = {
    {"stride2_pad1", {{2, 2}, {1, 1}, {1, 1}, 1}, true},
    {"dilation2", {{1, 1}, {2, 2}, {2, 2}, 1}, true},
    {"groups2", {{1, 1}, {1, 1}, {1, 1}, 2}, true},
    {"depthwise", {{2, 2}, {1, 1}, {1, 1}, 4}, true},
    {"pointwise", {{1, 1}, {0, 0}, {1, 1}, 1}, true},
    {"pointwise_stride2_no_bias", {{2, 2}, {0, 0}, {1, 1}, 1}, false},
    {"no_bias", {{1, 1}, {1, 1}, {1, 1}, 1}, false},
    {"asymmetric", {{1, 2}, {1, 0}, {1, 1}, 1}, true},
    {"stem7x7", {{2, 2}, {3, 3}, {1, 1}, 1}, true},
};

class GoldenConv2d : public ::testing::TestWithParam<ConvCase> {};

TEST_P(GoldenConv2d, ForwardBackwardMatchPyTorch) {
  const ConvCase& c = GetParam();
  const ops::Conv2dParams& q = c.params;
  const NamedTensors f = testing::load_fixture("conv2d.safetensors");
  const std::string p = std::string(c.name) + ".";
  ASSERT_EQ(ints(fixture(f, p + "config")),
            (std::vector<int64_t>{q.stride[0], q.stride[1], q.padding[0], q.padding[1],
                                  q.dilation[0], q.dilation[1], q.groups}));
  ASSERT_EQ(testing::has_fixture(f, p + "bias"), c.bias);

  Tensor x = fixture_leaf(f, p + "x");
  Tensor w = fixture_leaf(f, p + "weight");
  Tensor b = c.bias ? fixture_leaf(f, p + "bias") : Tensor();
  Tensor y = ops::conv2d(x, w, b, q);
  EXPECT_TRUE(matches_fixture(y, f, p + "y", kRtol, kAtolSums));
  y.backward(fixture(f, p + "dy"));
  EXPECT_TRUE(matches_fixture(x.grad(), f, p + "dx", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(w.grad(), f, p + "dweight", kRtol, kAtolSums));
  if (c.bias) {
    EXPECT_TRUE(matches_fixture(b.grad(), f, p + "dbias", kRtol, kAtolSums));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenConv2d, ::testing::ValuesIn(kConvCases),
                         [](const auto& info) { return std::string(info.param.name); });

// -------------------------------------------------------------------------------- batch_norm

constexpr double kMomentum = 0.1;
constexpr double kEps = 1e-5;

// Three successive training calls on x, x1, x2 starting from the stored running stats (the
// nn.BatchNorm2d defaults 0 and 1). y and the gradients come from the first call; the running
// stats are checked after every call.
void check_batch_norm_train(const std::string& name) {
  const NamedTensors f = testing::load_fixture("batch_norm.safetensors");
  const std::string p = name + ".";
  Tensor running_mean = fixture(f, p + "running_mean.0").clone();
  Tensor running_var = fixture(f, p + "running_var.0").clone();
  Tensor x = fixture_leaf(f, p + "x");
  Tensor w = fixture_leaf(f, p + "weight");
  Tensor b = fixture_leaf(f, p + "bias");

  Tensor y =
      ops::batch_norm(x, running_mean, running_var, w, b, /*training=*/true, kMomentum, kEps);
  EXPECT_TRUE(matches_fixture(y, f, p + "y", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(running_mean, f, p + "running_mean.1", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(running_var, f, p + "running_var.1", kRtol, kAtolSums));
  y.backward(fixture(f, p + "dy"));
  EXPECT_TRUE(matches_fixture(x.grad(), f, p + "dx", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(w.grad(), f, p + "dweight", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(b.grad(), f, p + "dbias", kRtol, kAtolSums));

  NoGradGuard no_grad;
  for (int call = 2; call <= 3; ++call) {
    const std::string step = std::to_string(call);
    ops::batch_norm(fixture(f, p + "x" + std::to_string(call - 1)), running_mean, running_var, w, b,
                    /*training=*/true, kMomentum, kEps);
    EXPECT_TRUE(matches_fixture(running_mean, f, p + "running_mean." + step, kRtol, kAtolSums));
    EXPECT_TRUE(matches_fixture(running_var, f, p + "running_var." + step, kRtol, kAtolSums));
  }
}

TEST(GoldenBatchNorm, Train4dMatchesPyTorch) { check_batch_norm_train("train"); }

TEST(GoldenBatchNorm, Train2dMatchesPyTorch) { check_batch_norm_train("train2d"); }

TEST(GoldenBatchNorm, EvalMatchesPyTorch) {
  const NamedTensors f = testing::load_fixture("batch_norm.safetensors");
  Tensor running_mean = fixture(f, "eval.running_mean").clone();
  Tensor running_var = fixture(f, "eval.running_var").clone();
  Tensor x = fixture_leaf(f, "eval.x");
  Tensor w = fixture_leaf(f, "eval.weight");
  Tensor b = fixture_leaf(f, "eval.bias");

  Tensor y =
      ops::batch_norm(x, running_mean, running_var, w, b, /*training=*/false, kMomentum, kEps);
  EXPECT_TRUE(matches_fixture(y, f, "eval.y", kRtol, kAtolSums));
  y.backward(fixture(f, "eval.dy"));
  EXPECT_TRUE(matches_fixture(x.grad(), f, "eval.dx", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(w.grad(), f, "eval.dweight", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(b.grad(), f, "eval.dbias", kRtol, kAtolSums));
  // Eval mode leaves the running stats alone.
  EXPECT_TRUE(matches_fixture(running_mean, f, "eval.running_mean", 0, 0));
  EXPECT_TRUE(matches_fixture(running_var, f, "eval.running_var", 0, 0));
}

// ----------------------------------------------------------------------------------- pooling

using Pair = std::array<int64_t, 2>;

// One pooling call on the stored x, compared forward and backward.
template <class Pool>
void check_pool(const std::string& case_name, Pool pool) {
  const NamedTensors f = testing::load_fixture("pool.safetensors");
  const std::string p = case_name + ".";
  Tensor x = fixture_leaf(f, p + "x");
  Tensor y = pool(x);
  EXPECT_TRUE(matches_fixture(y, f, p + "y", kRtol, kAtolFew));
  y.backward(fixture(f, p + "dy"));
  EXPECT_TRUE(matches_fixture(x.grad(), f, p + "dx", kRtol, kAtolFew));
}

struct MaxPoolCase {
  const char* name;
  Pair kernel, stride, padding, dilation;  // stride {0, 0}: PyTorch's stride=None
  bool ceil_mode;
};

void PrintTo(const MaxPoolCase& c, std::ostream* os) { *os << c.name; }

// Mirrors MAX_POOL_CASES in gen_fixtures.py.
const MaxPoolCase kMaxPoolCases[] = {
    {"k3_s2_p1", {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},
    {"k3_s2_ceil", {3, 3}, {2, 2}, {0, 0}, {1, 1}, true},
    {"k3_s2_p1_ceil", {3, 3}, {2, 2}, {1, 1}, {1, 1}, true},
    {"k2_s3_p1_ceil_drop", {2, 2}, {3, 3}, {1, 1}, {1, 1}, true},
    {"k3_s1_p1_d2", {3, 3}, {1, 1}, {1, 1}, {2, 2}, false},
    {"k2_default_stride", {2, 2}, {0, 0}, {0, 0}, {1, 1}, false},
    {"nonsquare", {3, 2}, {2, 1}, {1, 0}, {1, 1}, false},
};

Pair effective_stride(const Pair& stride, const Pair& kernel) {
  return stride[0] == 0 ? kernel : stride;
}

class GoldenMaxPool2d : public ::testing::TestWithParam<MaxPoolCase> {};

TEST_P(GoldenMaxPool2d, ForwardBackwardMatchPyTorch) {
  const MaxPoolCase& c = GetParam();
  const std::string name = std::string("max.") + c.name;
  const Pair s = effective_stride(c.stride, c.kernel);
  ASSERT_EQ(ints(fixture(testing::load_fixture("pool.safetensors"), name + ".config")),
            (std::vector<int64_t>{c.kernel[0], c.kernel[1], s[0], s[1], c.padding[0], c.padding[1],
                                  c.dilation[0], c.dilation[1], c.ceil_mode}));
  check_pool(name, [&](const Tensor& x) {
    return ops::max_pool2d(x, c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenMaxPool2d, ::testing::ValuesIn(kMaxPoolCases),
                         [](const auto& info) { return std::string(info.param.name); });

struct AvgPoolCase {
  const char* name;
  Pair kernel, stride, padding;  // stride {0, 0}: PyTorch's stride=None
  bool ceil_mode;
  bool count_include_pad;
};

void PrintTo(const AvgPoolCase& c, std::ostream* os) { *os << c.name; }

// Mirrors AVG_POOL_CASES in gen_fixtures.py.
const AvgPoolCase kAvgPoolCases[] = {
    {"k3_s2_p1_cip", {3, 3}, {2, 2}, {1, 1}, false, true},
    {"k3_s2_p1_nocip", {3, 3}, {2, 2}, {1, 1}, false, false},
    {"k3_s2_p1_ceil_cip", {3, 3}, {2, 2}, {1, 1}, true, true},
    {"k3_s2_p1_ceil_nocip", {3, 3}, {2, 2}, {1, 1}, true, false},
    {"k3_s2_ceil_cip", {3, 3}, {2, 2}, {0, 0}, true, true},
    {"k2_s3_p1_ceil_drop_cip", {2, 2}, {3, 3}, {1, 1}, true, true},
    {"k2_default_stride", {2, 2}, {0, 0}, {0, 0}, false, true},
    {"nonsquare_nocip", {3, 2}, {2, 1}, {1, 1}, false, false},
};

class GoldenAvgPool2d : public ::testing::TestWithParam<AvgPoolCase> {};

TEST_P(GoldenAvgPool2d, ForwardBackwardMatchPyTorch) {
  const AvgPoolCase& c = GetParam();
  const std::string name = std::string("avg.") + c.name;
  const Pair s = effective_stride(c.stride, c.kernel);
  ASSERT_EQ(ints(fixture(testing::load_fixture("pool.safetensors"), name + ".config")),
            (std::vector<int64_t>{c.kernel[0], c.kernel[1], s[0], s[1], c.padding[0], c.padding[1],
                                  c.ceil_mode, c.count_include_pad}));
  check_pool(name, [&](const Tensor& x) {
    return ops::avg_pool2d(x, c.kernel, c.stride, c.padding, c.ceil_mode, c.count_include_pad);
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenAvgPool2d, ::testing::ValuesIn(kAvgPoolCases),
                         [](const auto& info) { return std::string(info.param.name); });

struct AdaptivePoolCase {
  const char* name;
  Pair output_size;
};

void PrintTo(const AdaptivePoolCase& c, std::ostream* os) { *os << c.name; }

// Mirrors ADAPTIVE_CASES in gen_fixtures.py (inputs 7x5, 5x7, 3x3, 6x6).
const AdaptivePoolCase kAdaptivePoolCases[] = {
    {"7x5_to_3x2", {3, 2}},
    {"5x7_to_4x3", {4, 3}},
    {"3x3_to_5x5", {5, 5}},
    {"global", {1, 1}},
};

class GoldenAdaptiveAvgPool2d : public ::testing::TestWithParam<AdaptivePoolCase> {};

TEST_P(GoldenAdaptiveAvgPool2d, ForwardBackwardMatchPyTorch) {
  const AdaptivePoolCase& c = GetParam();
  const std::string name = std::string("adaptive.") + c.name;
  ASSERT_EQ(ints(fixture(testing::load_fixture("pool.safetensors"), name + ".config")),
            (std::vector<int64_t>{c.output_size[0], c.output_size[1]}));
  check_pool(name, [&](const Tensor& x) { return ops::adaptive_avg_pool2d(x, c.output_size); });
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenAdaptiveAvgPool2d, ::testing::ValuesIn(kAdaptivePoolCases),
                         [](const auto& info) { return std::string(info.param.name); });

// ------------------------------------------------------------------------------------ linear

struct LinearCase {
  const char* name;
  bool bias;
};

void PrintTo(const LinearCase& c, std::ostream* os) { *os << c.name; }

// Mirrors LINEAR_CASES in gen_fixtures.py.
const LinearCase kLinearCases[] = {{"basic", true}, {"no_bias", false}, {"wide", true}};

class GoldenLinear : public ::testing::TestWithParam<LinearCase> {};

TEST_P(GoldenLinear, ForwardBackwardMatchPyTorch) {
  const LinearCase& c = GetParam();
  const NamedTensors f = testing::load_fixture("linear.safetensors");
  const std::string p = std::string(c.name) + ".";
  ASSERT_EQ(testing::has_fixture(f, p + "bias"), c.bias);
  Tensor x = fixture_leaf(f, p + "x");
  Tensor w = fixture_leaf(f, p + "weight");
  Tensor b = c.bias ? fixture_leaf(f, p + "bias") : Tensor();
  Tensor y = ops::linear(x, w, b);
  EXPECT_TRUE(matches_fixture(y, f, p + "y", kRtol, kAtolSums));
  y.backward(fixture(f, p + "dy"));
  EXPECT_TRUE(matches_fixture(x.grad(), f, p + "dx", kRtol, kAtolSums));
  EXPECT_TRUE(matches_fixture(w.grad(), f, p + "dweight", kRtol, kAtolSums));
  if (c.bias) {
    EXPECT_TRUE(matches_fixture(b.grad(), f, p + "dbias", kRtol, kAtolSums));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenLinear, ::testing::ValuesIn(kLinearCases),
                         [](const auto& info) { return std::string(info.param.name); });

// ------------------------------------------------------------------------------------ losses

struct CrossEntropyCase {
  const char* name;
  double label_smoothing;
};

void PrintTo(const CrossEntropyCase& c, std::ostream* os) { *os << c.name; }

// Mirrors CROSS_ENTROPY_CASES in gen_fixtures.py.
const CrossEntropyCase kCrossEntropyCases[] = {
    {"plain", 0.0},
    {"smoothing", 0.1},
    {"plain_10class", 0.0},
    {"smoothing_10class", 0.1},
};

class GoldenCrossEntropy : public ::testing::TestWithParam<CrossEntropyCase> {};

// The loss (a 0-d tensor, as PyTorch's reduction='mean') and dlogits for upstream gradient 1.
TEST_P(GoldenCrossEntropy, ValueAndGradientMatchPyTorch) {
  const CrossEntropyCase& c = GetParam();
  const NamedTensors f = testing::load_fixture("loss.safetensors");
  const std::string p = std::string("cross_entropy.") + c.name + ".";
  ASSERT_EQ(ints(fixture(f, p + "config")),
            (std::vector<int64_t>{static_cast<int64_t>(std::llround(c.label_smoothing * 10))}));
  Tensor logits = fixture_leaf(f, p + "logits");
  Tensor loss = ops::cross_entropy(logits, fixture(f, p + "targets"), c.label_smoothing);
  EXPECT_TRUE(matches_fixture(loss, f, p + "loss", kRtol, kAtolFew));
  loss.backward();
  EXPECT_TRUE(matches_fixture(logits.grad(), f, p + "dlogits", kRtol, kAtolFew));
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenCrossEntropy, ::testing::ValuesIn(kCrossEntropyCases),
                         [](const auto& info) { return std::string(info.param.name); });

struct LogSoftmaxCase {
  const char* name;
  int64_t dim;
};

void PrintTo(const LogSoftmaxCase& c, std::ostream* os) { *os << c.name; }

// Mirrors LOG_SOFTMAX_CASES in gen_fixtures.py; large_logits is 10 * randn + 50.
const LogSoftmaxCase kLogSoftmaxCases[] = {
    {"dim1", 1},
    {"dim1_3d", 1},
    {"dim0", 0},
    {"large_logits", -1},
};

class GoldenLogSoftmax : public ::testing::TestWithParam<LogSoftmaxCase> {};

TEST_P(GoldenLogSoftmax, ForwardBackwardMatchPyTorch) {
  const LogSoftmaxCase& c = GetParam();
  const NamedTensors f = testing::load_fixture("loss.safetensors");
  const std::string p = std::string("log_softmax.") + c.name + ".";
  ASSERT_EQ(ints(fixture(f, p + "config")), (std::vector<int64_t>{c.dim}));
  Tensor x = fixture_leaf(f, p + "x");
  Tensor y = ops::log_softmax(x, c.dim);
  EXPECT_TRUE(matches_fixture(y, f, p + "y", kRtol, kAtolFew));
  y.backward(fixture(f, p + "dy"));
  EXPECT_TRUE(matches_fixture(x.grad(), f, p + "dx", kRtol, kAtolFew));
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenLogSoftmax, ::testing::ValuesIn(kLogSoftmaxCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace qat
