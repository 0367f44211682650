#include "core/ops/loss.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "tests/testing/errors.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using qat::testing::error_of;

using testing::all_close;
using testing::gradcheck;
using testing::random_leaf;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Tensor vec(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

// Expected values below come from torch 1.13 (float64).
TEST(LogSoftmax, MatchesPyTorch) {
  const Tensor x = vec({1, 2, 3, 4, -1, 0.5, 0, 2}, {2, 4});
  EXPECT_TRUE(all_close(
      log_softmax(x, 1),
      vec({-3.4401896985611953, -2.4401896985611953, -1.4401896985611953, -0.44018969856119533,
           -3.342349582389822, -1.842349582389822, -2.342349582389822, -0.342349582389822},
          {2, 4}),
      1e-12, 1e-12));
}

TEST(LogSoftmax, IsStableForLargeLogits) {
  // Naive exp(1000) overflows; torch gives [-2.4076..., -1.4076..., -0.4076...].
  const Tensor y = log_softmax(vec({1000, 1001, 1002}, {1, 3}), -1);
  EXPECT_TRUE(
      all_close(y, vec({-2.4076059644443806, -1.4076059644443804, -0.4076059644443804}, {1, 3}),
                1e-12, 1e-12));
  const Tensor y32 = log_softmax(Tensor::from_vector<float>({1000, 1001, 1002}, {1, 3}), 1);
  EXPECT_TRUE(all_close(y32, y, 1e-6, 1e-6));
}

TEST(LogSoftmax, AlongAMiddleDim) {
  // x = arange(12).reshape(2, 3, 2) * 0.5 - 2, log_softmax over dim 1
  Tensor x = Tensor::arange(12, DType::kFloat64).view({2, 3, 2});
  x = add(mul(x, 0.5), -2.0);
  const double a = -2.4076059644443806, b = -1.4076059644443804, c = -0.4076059644443804;
  EXPECT_TRUE(all_close(log_softmax(x, 1), vec({a, a, b, b, c, c, a, a, b, b, c, c}, {2, 3, 2}),
                        1e-12, 1e-12));
}

TEST(LogSoftmax, Gradcheck) {
  const Tensor x = random_leaf({3, 4, 5}, 1, -3, 3);
  for (int64_t dim : {0, 1, 2, -1}) {
    EXPECT_TRUE(
        gradcheck([dim](const std::vector<Tensor>& in) { return log_softmax(in[0], dim); }, {x}))
        << "dim " << dim;
  }
}

// logits [4, 3], targets [0, 2, 1, 1]; loss and d loss / d logits from torch 1.13.
const std::vector<double> kLogits = {2.0, -1.0, 0.5, 0.1, 0.2, 0.3, -3.0, 1.0, 4.0, 1.5, 1.5, -0.5};
const std::vector<int64_t> kTargets = {0, 2, 1, 1};

TEST(CrossEntropy, MatchesPyTorchWithAndWithoutLabelSmoothing) {
  const struct {
    double eps, loss;
    std::vector<double> grad;
  } cases[] = {
      {0.0,
       1.26283335756539,
       {-0.05360074135268103, 0.009778143317671862, 0.04382259803500917, 0.07515240133893183,
        0.08305624838333683, -0.1582086497222686, 0.00021697032372240127, -0.23815382171266447,
        0.23793685138894205, 0.1170776327083703, -0.1329223672916297, 0.01584473458325941}},
      {0.1,
       1.3278333575653902,
       {-0.03693407468601437, 0.0014448099843385291, 0.03548926470167584, 0.0668190680055985,
        0.0747229150500035, -0.14154198305560195, -0.008116363009610932, -0.2214871550459978,
        0.22960351805560872, 0.10874429937503696, -0.11625570062496304, 0.0075114012499260755}},
      {0.25,
       1.42533335756539,
       {-0.011934074686014373, -0.01105519001566147, 0.02298926470167584, 0.054319068005598506,
        0.062222915050003505, -0.11654198305560197, -0.020616363009610932, -0.1964871550459978,
        0.2171035180556087, 0.09624429937503697, -0.09125570062496305, -0.0049885987500739234}},
  };
  const Tensor targets = Tensor::from_vector(kTargets, {4});
  for (const auto& c : cases) {
    Tensor logits = vec(kLogits, {4, 3});
    logits.requires_grad_();
    const Tensor loss = cross_entropy(logits, targets, c.eps);
    EXPECT_EQ(loss.shape(), Shape{});
    EXPECT_NEAR(loss.item(), c.loss, 1e-12) << "label_smoothing " << c.eps;
    loss.backward();
    EXPECT_TRUE(all_close(logits.grad(), vec(c.grad, {4, 3}), 1e-10, 1e-12))
        << "label_smoothing " << c.eps;
  }
}

TEST(CrossEntropy, Float32MatchesPyTorch) {
  const Tensor logits = vec(kLogits, {4, 3}).to(DType::kFloat32);
  const Tensor loss = cross_entropy(logits, Tensor::from_vector(kTargets, {4}), 0.1);
  EXPECT_EQ(loss.dtype(), DType::kFloat32);
  EXPECT_NEAR(loss.item(), 1.3278332948684692, 1e-6);
}

TEST(CrossEntropy, Gradcheck) {
  const Tensor logits = random_leaf({5, 7}, 2, -3, 3);
  const Tensor targets = Tensor::from_vector<int64_t>({6, 0, 3, 3, 1}, {5});
  for (double eps : {0.0, 0.2}) {
    EXPECT_TRUE(
        gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], targets, eps); },
                  {logits}))
        << "label_smoothing " << eps;
  }
}

TEST(CrossEntropy, ErrorsNameTheProblem) {
  const Tensor logits = Tensor::zeros({3, 5});
  const Tensor targets = Tensor::from_vector<int64_t>({0, 7, 1}, {3});
  EXPECT_TRUE(contains(error_of([&] { cross_entropy(logits, targets); }),
                       "cross_entropy: target 7 at index 1 is out of range for 5 classes"));
  EXPECT_TRUE(contains(error_of([&] {
                         cross_entropy(logits, Tensor::from_vector<int64_t>({0, -100, 1}, {3}));
                       }),
                       "target -100 at index 1"));
  EXPECT_TRUE(contains(error_of([&] { cross_entropy(logits, Tensor::zeros({3})); }),
                       "cross_entropy: targets must be int64 class indices, got float32"));
  EXPECT_TRUE(contains(error_of([&] {
                         cross_entropy(logits, Tensor::zeros({3, 1}, DType::kInt64));
                       }),
                       "cross_entropy: targets must be [N] = [3], got [3, 1]"));
  EXPECT_TRUE(contains(
      error_of([&] { cross_entropy(Tensor::zeros({5}), Tensor::zeros({1}, DType::kInt64)); }),
      "cross_entropy: logits must be [N, C], got [5]"));
  EXPECT_TRUE(
      contains(error_of([&] { cross_entropy(logits, Tensor::zeros({3}, DType::kInt64), 1.5); }),
               "label_smoothing must be in [0, 1], got 1.5"));
  EXPECT_TRUE(contains(error_of([&] { log_softmax(logits, 2); }),
                       "log_softmax: dim 2 out of range for a tensor of rank 2"));
}

TEST(Dropout, IdentityInEvalAndForZeroP) {
  const Tensor x = random_leaf({4, 5}, 3);
  EXPECT_EQ(dropout(x, 0.5, /*training=*/false).impl_ptr(), x.impl_ptr());
  EXPECT_EQ(dropout(x, 0.0, /*training=*/true).impl_ptr(), x.impl_ptr());
}

TEST(Dropout, ZeroesAboutPAndScalesTheRest) {
  const double p = 0.3;
  const Tensor x = Tensor::full({100000}, 2.0);
  Generator gen(7);
  const std::vector<float> y = dropout(x, p, true, gen).to_vector<float>();
  int64_t zeros = 0;
  double total = 0;
  for (float v : y) {
    if (v == 0.0f) {
      ++zeros;
    } else {
      EXPECT_FLOAT_EQ(v, static_cast<float>(2.0 / (1 - p)));
    }
    total += v;
  }
  EXPECT_NEAR(static_cast<double>(zeros) / y.size(), p, 0.01);
  EXPECT_NEAR(total / y.size(), 2.0, 0.03);  // inverted dropout keeps the mean
}

TEST(Dropout, BackwardUsesTheForwardMask) {
  const double p = 0.4;
  Tensor x = Tensor::ones({3, 1000}, DType::kFloat64);
  x.requires_grad_();
  Generator gen(11);
  const Tensor y = dropout(x, p, true, gen);
  const Tensor dy = add(Tensor::zeros({3, 1000}, DType::kFloat64), 5.0);
  y.backward(dy);
  // x = 1, so y itself is the mask times 1/(1-p): dx must be exactly dy * y.
  EXPECT_EQ(x.grad().to_vector<double>(), mul(dy, y.detach()).to_vector<double>());
}

TEST(Dropout, SameSeedSameMask) {
  const Tensor x = Tensor::ones({64});
  Generator g1(3), g2(3);
  EXPECT_EQ(dropout(x, 0.5, true, g1).to_vector<float>(),
            dropout(x, 0.5, true, g2).to_vector<float>());
}

TEST(Dropout, Gradcheck) {
  const Tensor x = random_leaf({4, 6}, 4);
  // A fresh generator per call: every evaluation draws the same mask.
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator gen(5);
        return dropout(in[0], 0.5, true, gen);
      },
      {x}));
}

TEST(Dropout, RejectsPOutsideZeroToOne) {
  const Tensor x = Tensor::ones({4});
  EXPECT_TRUE(contains(error_of([&] { dropout(x, 1.0, true); }), "dropout: p must be in [0, 1)"));
  EXPECT_TRUE(contains(error_of([&] { dropout(x, -0.1, false); }), "got -0.1"));
}

TEST(Loss, OutputsAreFreedWhenDropped) {
  const Tensor x = random_leaf({3, 4}, 6);
  const Tensor targets = Tensor::from_vector<int64_t>({0, 1, 3}, {3});
  const std::vector<std::function<Tensor()>> ops = {
      [&] { return log_softmax(x, 1); },
      [&] { return cross_entropy(x, targets, 0.1); },
      [&] { return dropout(x, 0.5, true); },
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    std::weak_ptr<TensorImpl> watch;
    {
      const Tensor out = ops[i]();
      ASSERT_TRUE(out.requires_grad());
      watch = out.impl_ptr();
    }
    EXPECT_TRUE(watch.expired()) << "op " << i;
  }
}

}  // namespace
}  // namespace qat::ops
