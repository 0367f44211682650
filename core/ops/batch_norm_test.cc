#include "core/ops/batch_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using qat::testing::all_close;
using qat::testing::gradcheck;
using qat::testing::random_leaf;

Tensor random_double(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  return random_leaf(shape, seed, low, high).detach();
}

// Expects fn to throw a qat::Error whose message contains `needle`.
void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    return;
  }
  ADD_FAILURE() << "no error; expected one containing \"" << needle << "\"";
}

// ---- gradients (float64 reference path)

TEST(BatchNorm, GradcheckTrainingWithRunningStats) {
  Tensor x = random_leaf({3, 2, 3, 2}, 1, -2.0, 3.0);
  Tensor weight = random_leaf({2}, 2, 0.5, 1.5), bias = random_leaf({2}, 3);
  Tensor rm = Tensor::zeros({2}, DType::kFloat64), rv = Tensor::ones({2}, DType::kFloat64);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm, rv, in[1], in[2], /*training=*/true, 0.1, 1e-5);
      },
      {x, weight, bias}));
}

TEST(BatchNorm, GradcheckTrainingTwoDimensionalWithoutRunningStats) {
  Tensor x = random_leaf({5, 3}, 4, -2.0, 3.0);
  Tensor weight = random_leaf({3}, 5, 0.5, 1.5), bias = random_leaf({3}, 6);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], /*training=*/true);
      },
      {x, weight, bias}));
}

TEST(BatchNorm, GradcheckEval) {
  Tensor x = random_leaf({2, 3, 2, 3}, 7, -2.0, 3.0);
  Tensor weight = random_leaf({3}, 8, 0.5, 1.5), bias = random_leaf({3}, 9);
  Tensor rm = random_double({3}, 10), rv = random_double({3}, 11, 0.5, 2.0);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm, rv, in[1], in[2], /*training=*/false);
      },
      {x, weight, bias}));
}

TEST(BatchNorm, GradcheckWithoutAffine) {
  Tensor x = random_leaf({2, 3, 2, 2}, 12, -2.0, 3.0);
  Tensor rm = random_double({3}, 13), rv = random_double({3}, 14, 0.5, 2.0);
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return batch_norm(in[0], rm, rv, Tensor(), Tensor(), training);
        },
        {x}));
  }
}

TEST(BatchNorm, OnlyInputsThatRequireGradGetGradients) {
  Tensor x = random_double({4, 2, 3, 3}, 15);  // does not require grad
  Tensor weight = random_leaf({2}, 16), bias = random_double({2}, 17);
  Tensor y = batch_norm(x, Tensor(), Tensor(), weight, bias, true);
  y.backward(Tensor::ones(y.shape(), DType::kFloat64));
  EXPECT_TRUE(weight.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(bias.grad().defined());
}

// The float32 path (OpenMP kernels) against the float64 path (reference loops), through the op.
TEST(BatchNorm, Float32PathMatchesFloat64Path) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    std::vector<Tensor> leaves[2];
    Tensor outputs[2];
    for (int i = 0; i < 2; ++i) {
      const DType dtype = i == 0 ? DType::kFloat32 : DType::kFloat64;
      Tensor x = random_double({4, 3, 5, 7}, 18, 1.0, 4.0).to(dtype);
      Tensor weight = random_double({3}, 19, 0.5, 1.5).to(dtype);
      Tensor bias = random_double({3}, 20).to(dtype);
      Tensor rm = random_double({3}, 21, 1.0, 4.0).to(dtype);
      Tensor rv = random_double({3}, 22, 0.5, 2.0).to(dtype);
      leaves[i] = {x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_()};
      outputs[i] = batch_norm(x, rm, rv, weight, bias, training);
      outputs[i].backward(random_double({4, 3, 5, 7}, 23).to(dtype));
    }
    EXPECT_TRUE(all_close(outputs[0], outputs[1], 1e-5, 1e-5));
    for (int k = 0; k < 3; ++k) {
      EXPECT_TRUE(all_close(leaves[0][k].grad(), leaves[1][k].grad(), 1e-4, 1e-5)) << "input " << k;
    }
  }
}

// ---- batch_norm_scaled_input: batch_norm of z = x * a + b without materializing z

TEST(BatchNormScaledInput, Gradcheck) {
  for (bool with_shift : {true, false}) {
    SCOPED_TRACE(with_shift ? "shift" : "no shift");
    Tensor x = random_leaf({3, 2, 3, 2}, 31, -2.0, 3.0);
    Tensor a = random_leaf({2}, 32, 0.5, 2.0);
    Tensor b = with_shift ? random_leaf({2}, 33) : Tensor();
    Tensor weight = random_leaf({2}, 34, 0.5, 1.5), bias = random_leaf({2}, 35);
    // A large eps makes da (proportional to eps) big enough for finite differences to see.
    Tensor rm = Tensor::zeros({2}, DType::kFloat64), rv = Tensor::ones({2}, DType::kFloat64);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return batch_norm_scaled_input(in[0], in[1], in[2], rm, rv, in[3], in[4], 0.1, 0.3);
        },
        {x, a, b, weight, bias}));
  }
}

// float32 (fast kernels, analytic da) against float64 (reference: z materialized), and both
// against batch_norm(x * a + b) built from ops: outputs, gradients and running statistics.
TEST(BatchNormScaledInput, FastMatchesReferenceAndComposedOps) {
  const Shape shape = {4, 3, 5, 7};
  for (double eps : {1e-5, 0.3}) {
    SCOPED_TRACE(eps);
    Tensor outputs[3], grads[3][5], running[3][2];
    for (int i = 0; i < 3; ++i) {
      const DType dtype = i == 0 ? DType::kFloat32 : DType::kFloat64;
      Tensor x = random_double(shape, 41, -1.0, 4.0).to(dtype).requires_grad_();
      Tensor a64 = random_double({3}, 42, 0.3, 3.0);
      a64.data<double>()[1] *= -1.0;  // a negative scale too
      Tensor a = a64.to(dtype);
      Tensor b = random_double({3}, 43).to(dtype).requires_grad_();
      Tensor weight = random_double({3}, 44, 0.5, 1.5).to(dtype).requires_grad_();
      Tensor bias = random_double({3}, 45).to(dtype).requires_grad_();
      a.requires_grad_();
      running[i][0] = random_double({3}, 46).to(dtype);
      running[i][1] = random_double({3}, 47, 0.5, 2.0).to(dtype);
      if (i < 2) {
        outputs[i] =
            batch_norm_scaled_input(x, a, b, running[i][0], running[i][1], weight, bias, 0.2, eps);
      } else {
        Tensor z = add(mul(x, reshape(a, {1, 3, 1, 1})), reshape(b, {1, 3, 1, 1}));
        outputs[i] = batch_norm(z, running[i][0], running[i][1], weight, bias, true, 0.2, eps);
      }
      outputs[i].backward(random_double(shape, 48).to(dtype));
      const Tensor leaves[5] = {x, a, b, weight, bias};
      for (int k = 0; k < 5; ++k) grads[i][k] = leaves[k].grad().to(DType::kFloat64);
      outputs[i] = outputs[i].detach().to(DType::kFloat64);
      for (Tensor& r : running[i]) r = r.to(DType::kFloat64);
    }
    const char* names[5] = {"dx", "da", "db", "dweight", "dbias"};
    for (int i : {0, 2}) {
      SCOPED_TRACE(i == 0 ? "float32 vs float64" : "composed vs float64");
      EXPECT_TRUE(all_close(outputs[i], outputs[1], 1e-5, 1e-5));
      for (int k = 0; k < 5; ++k) {
        EXPECT_TRUE(all_close(grads[i][k], grads[1][k], 1e-4, 1e-5)) << names[k];
      }
      EXPECT_TRUE(all_close(running[i][0], running[1][0], 1e-5, 1e-6));
      EXPECT_TRUE(all_close(running[i][1], running[1][1], 1e-5, 1e-6));
    }
  }
}

TEST(BatchNormScaledInput, RejectsBadScaleShapes) {
  Tensor x = random_double({2, 3, 2, 2}, 51);
  expect_error(
      [&] {
        batch_norm_scaled_input(x, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor());
      },
      "input_scale is undefined");
  expect_error(
      [&] {
        batch_norm_scaled_input(x, random_double({2}, 52), Tensor(), Tensor(), Tensor(), Tensor(),
                                Tensor());
      },
      "input_scale has 2 elements");
  expect_error(
      [&] {
        batch_norm_scaled_input(x, random_double({3}, 52), random_double({4}, 53), Tensor(),
                                Tensor(), Tensor(), Tensor());
      },
      "input_shift has 4 elements");
}

// ---- running statistics, against torch.nn.functional.batch_norm (torch 1.13, float64):
//   x_t[i] = sin(0.7 i + 1.3 t) * (1 + c) + 0.5 c, c = channel of flat index i, shape [2, 3, 1, 2]
//   weight = 1 + 0.25 c, bias = 0.1 c - 0.2, running_mean = [0.5, -0.25, 1], running_var = [2, 0.5,
//   1.5], three training steps t = 0, 1, 2 with momentum 0.2, eps 1e-5, then eval on x_3.

Tensor golden_input(int step, DType dtype) {
  const int64_t C = 3, S = 2;
  std::vector<double> v(12);
  for (int64_t i = 0; i < 12; ++i) {
    const int64_t c = (i / S) % C;
    v[i] = std::sin(0.7 * i + 1.3 * step) * (1 + c) + 0.5 * c;
  }
  return Tensor::from_vector(v, {2, 3, 1, 2}).to(dtype);
}

TEST(BatchNorm, RunningStatsAfterThreeStepsMatchPyTorch) {
  const std::vector<double> kRunningMean{0.3501485433, 0.3009476302, 0.811859431};
  const std::vector<double> kRunningVar{1.245460183, 1.434339578, 2.594390973};
  const std::vector<double> kTrainStep3{-0.02631545644, -1.745050242, -1.134742638,   -1.505753791,
                                        -1.51276501,    1.480043876,  -0.08091700912, 1.052282707,
                                        1.455754738,    0.7847416914, 1.519750518,    -1.487029384};
  const std::vector<double> kEval{-1.1300258,     -1.404150444, -1.629548136, -0.4755068533,
                                  1.306274693,    2.686011378,  0.3553205545, 0.01036497568,
                                  -0.04911869093, -1.353187157, -2.605832673, -2.123602894};
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double tol = dtype == DType::kFloat32 ? 1e-5 : 1e-9;
    Tensor weight = Tensor::from_vector<double>({1.0, 1.25, 1.5}, {3}).to(dtype);
    Tensor bias = Tensor::from_vector<double>({-0.2, -0.1, 0.0}, {3}).to(dtype);
    Tensor rm = Tensor::from_vector<double>({0.5, -0.25, 1.0}, {3}).to(dtype);
    Tensor rv = Tensor::from_vector<double>({2.0, 0.5, 1.5}, {3}).to(dtype);
    const void* rm_data = rm.raw_data();
    Tensor y;
    for (int step = 0; step < 3; ++step) {
      y = batch_norm(golden_input(step, dtype), rm, rv, weight, bias, true, 0.2, 1e-5);
    }
    EXPECT_EQ(rm.raw_data(), rm_data);  // updated in place: module handles stay valid
    EXPECT_TRUE(all_close(rm, Tensor::from_vector(kRunningMean, {3}), tol, tol));
    EXPECT_TRUE(all_close(rv, Tensor::from_vector(kRunningVar, {3}), tol, tol));
    EXPECT_TRUE(all_close(y, Tensor::from_vector(kTrainStep3, {2, 3, 1, 2}), tol, tol));
    Tensor y_eval = batch_norm(golden_input(3, dtype), rm, rv, weight, bias, false, 0.2, 1e-5);
    EXPECT_TRUE(all_close(y_eval, Tensor::from_vector(kEval, {2, 3, 1, 2}), tol, tol));
  }
}

TEST(BatchNorm, EvalLeavesRunningStatsUntouched) {
  Tensor rm = random_double({3}, 24), rv = random_double({3}, 25, 0.5, 2.0);
  const std::vector<double> rm_before = rm.to_vector<double>(), rv_before = rv.to_vector<double>();
  batch_norm(random_double({4, 3}, 26), rm, rv, Tensor(), Tensor(), false);
  EXPECT_EQ(rm.to_vector<double>(), rm_before);
  EXPECT_EQ(rv.to_vector<double>(), rv_before);
}

TEST(BatchNorm, TrainingUpdatesRunningStatsWithoutRecordingUnderNoGrad) {
  Tensor x = random_leaf({4, 3}, 27);
  Tensor rm = Tensor::zeros({3}, DType::kFloat64), rv = Tensor::ones({3}, DType::kFloat64);
  NoGradGuard no_grad;
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_NE(rm.to_vector<double>(), std::vector<double>(3, 0.0));
}

TEST(BatchNorm, BackwardClosureDoesNotKeepTheOutputAlive) {
  Tensor x = random_leaf({4, 3}, 28);
  Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true);
  std::weak_ptr<TensorImpl> y_impl = y.impl_ptr();
  y = Tensor();
  EXPECT_TRUE(y_impl.expired());
}

// ---- errors

TEST(BatchNorm, RejectsBadRanksShapesAndDtypes) {
  Tensor x = Tensor::zeros({4, 32, 3, 3});
  Tensor c32 = Tensor::ones({32}), c16 = Tensor::ones({16});
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({4, 32, 3}), c32, c32, c32, c32, true);
      },
      "batch_norm: expected input [N, C] or [N, C, H, W], got [4, 32, 3]");
  expect_error([&] { batch_norm(x, c16, c32, c32, c32, true); },
               "batch_norm: running_mean has 16 elements, input has 32 channels");
  expect_error([&] { batch_norm(x, c32, c16, c32, c32, true); },
               "batch_norm: running_var has 16 elements, input has 32 channels");
  expect_error([&] { batch_norm(x, c32, c32, c16, c32, true); },
               "batch_norm: weight has 16 elements, input has 32 channels");
  expect_error([&] { batch_norm(x, c32, c32, c32, c16, true); },
               "batch_norm: bias has 16 elements, input has 32 channels");
  expect_error(
      [&] {
        batch_norm(x, c32.view({1, 32}), c32, c32, c32, true);
      },
      "batch_norm: expected running_mean of shape [C], got [1, 32]");
  expect_error([&] { batch_norm(x, c32, c32, c32.to(DType::kFloat64), c32, true); },
               "batch_norm: weight is float64, input is float32");
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({4, 3}, DType::kInt64), Tensor(), Tensor(), Tensor(), Tensor(),
                   true);
      },
      "batch_norm: expected a float32 or float64 input, got int64");
  expect_error([&] { batch_norm(Tensor(), c32, c32, c32, c32, true); },
               "batch_norm: input is undefined");
}

TEST(BatchNorm, RejectsInconsistentRunningStatsAndArguments) {
  Tensor x = Tensor::zeros({4, 3}), c3 = Tensor::ones({3});
  expect_error([&] { batch_norm(x, c3, Tensor(), c3, c3, true); },
               "running_mean and running_var must be both defined or both undefined");
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), c3, c3, false); },
               "batch_norm: eval mode needs running_mean and running_var");
  expect_error([&] { batch_norm(x, c3, c3, c3, c3, true, 0.1, -1e-5); },
               "batch_norm: expected eps >= 0");
  expect_error([&] { batch_norm(x, c3, c3, c3, c3, true, 1.5); },
               "batch_norm: expected momentum in [0, 1], got 1.5");
}

TEST(BatchNorm, TrainingNeedsMoreThanOneValuePerChannel) {
  Tensor c32 = Tensor::ones({32});
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({1, 32}), c32, c32, c32, c32, true);
      },
      "batch_norm: expected more than 1 value per channel when training, got input "
      "[1, 32]");
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({1, 32, 1, 1}), c32, c32, c32, c32, true);
      },
      "expected more than 1 value per channel when training");
  // One sample is fine with H * W > 1, and any batch is fine in eval.
  EXPECT_NO_THROW(batch_norm(Tensor::zeros({1, 32, 2, 1}), c32, c32, c32, c32, true));
  EXPECT_NO_THROW(batch_norm(Tensor::zeros({1, 32}), c32, c32, c32, c32, false));
}

}  // namespace
}  // namespace qat::ops
