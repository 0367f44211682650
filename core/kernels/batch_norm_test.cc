#include "core/kernels/batch_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "core/threads.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::kernels {
namespace {

constexpr double kEps = 1e-5;

// Odd sizes, C = 1, N = 1 with H * W > 1, 1x1 spatial, [N, C] input, and one shape large enough
// for the OpenMP paths.
const std::vector<Shape> kShapes = {{3, 5, 7, 9}, {2, 1, 13, 17}, {1, 6, 5, 3},   {4, 3, 1, 1},
                                    {7, 11},      {2, 3},         {16, 8, 32, 32}};

Tensor random_float(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  return qat::testing::random_leaf(shape, seed, low, high).to(DType::kFloat32);
}

const float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// One problem on the kernels' [N, C, S] view, float32. x sits away from 0 (mean ~3.5) so a
// one-pass variance would lose digits; `affine` false leaves gamma/beta undefined (null).
struct Problem {
  int64_t N, C, S;
  Tensor x, dy, gamma, beta;

  Problem(const Shape& shape, bool affine)
      : N(shape[0]), C(shape[1]), S(shape.size() == 4 ? shape[2] * shape[3] : 1) {
    x = random_float(shape, 1, 2.0, 5.0);
    dy = random_float(shape, 2);
    if (affine) {
      gamma = random_float({C}, 3, 0.5, 1.5);
      beta = random_float({C}, 4);
    }
  }
};

TEST(BatchNormKernel, StatsMatchReference) {
  for (const Shape& shape : kShapes) {
    SCOPED_TRACE(shape_str(shape));
    Problem p(shape, false);
    Tensor mean = Tensor::empty({p.C}), var = Tensor::empty({p.C});
    Tensor mean_ref = Tensor::empty({p.C}), var_ref = Tensor::empty({p.C});
    batch_norm_stats(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(), var.data<float>());
    batch_norm_stats_ref(p.N, p.C, p.S, p.x.data<float>(), mean_ref.data<float>(),
                         var_ref.data<float>());
    EXPECT_TRUE(qat::testing::all_close(mean, mean_ref, 1e-6, 1e-6));
    EXPECT_TRUE(qat::testing::all_close(var, var_ref, 1e-5, 1e-7));
  }
}

TEST(BatchNormKernel, ForwardMatchesReference) {
  for (const Shape& shape : kShapes) {
    for (bool affine : {true, false}) {
      SCOPED_TRACE(shape_str(shape) + (affine ? " affine" : " no affine"));
      Problem p(shape, affine);
      Tensor mean = random_float({p.C}, 5, 2.0, 5.0), var = random_float({p.C}, 6, 0.1, 2.0);
      Tensor y = Tensor::empty(shape), y_ref = Tensor::empty(shape);
      batch_norm_forward(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(), var.data<float>(),
                         data_or_null(p.gamma), data_or_null(p.beta), kEps, y.data<float>());
      batch_norm_forward_ref(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(),
                             var.data<float>(), data_or_null(p.gamma), data_or_null(p.beta), kEps,
                             y_ref.data<float>());
      EXPECT_TRUE(qat::testing::all_close(y, y_ref, 1e-5, 1e-5));
    }
  }
}

TEST(BatchNormKernel, BackwardMatchesReferenceInTrainingAndEval) {
  for (const Shape& shape : kShapes) {
    for (bool affine : {true, false}) {
      for (bool training : {true, false}) {
        SCOPED_TRACE(shape_str(shape) + (affine ? " affine" : " no affine") +
                     (training ? " training" : " eval"));
        Problem p(shape, affine);
        Tensor mean = Tensor::empty({p.C}), var = Tensor::empty({p.C});
        batch_norm_stats_ref(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(),
                             var.data<float>());
        Tensor dx = Tensor::empty(shape), dgamma = Tensor::empty({p.C}),
               dbeta = Tensor::empty({p.C});
        Tensor dx_ref = Tensor::empty(shape), dgamma_ref = Tensor::empty({p.C}),
               dbeta_ref = Tensor::empty({p.C});
        batch_norm_backward(p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(),
                            mean.data<float>(), var.data<float>(), data_or_null(p.gamma), kEps,
                            training, dx.data<float>(), dgamma.data<float>(), dbeta.data<float>());
        batch_norm_backward_ref(p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(),
                                mean.data<float>(), var.data<float>(), data_or_null(p.gamma), kEps,
                                training, dx_ref.data<float>(), dgamma_ref.data<float>(),
                                dbeta_ref.data<float>());
        EXPECT_TRUE(qat::testing::all_close(dx, dx_ref, 1e-4, 1e-5));
        EXPECT_TRUE(qat::testing::all_close(dgamma, dgamma_ref, 1e-4, 1e-4));
        EXPECT_TRUE(qat::testing::all_close(dbeta, dbeta_ref, 1e-4, 1e-4));
      }
    }
  }
}

// ---- batch norm of z = a * x + b: the fast kernels (x's statistics, analytic da) against the
// reference that materializes z.

TEST(BatchNormKernel, ScaledInputMatchesReference) {
  for (const Shape& shape : kShapes) {
    for (bool affine : {true, false}) {
      SCOPED_TRACE(shape_str(shape) + (affine ? " affine" : " no affine"));
      Problem p(shape, affine);
      // Scales of both signs and magnitudes (ConvBn2d passes 1 / s), and a shift.
      Tensor a = random_float({p.C}, 7, 0.2, 5.0), b = random_float({p.C}, 8, -3.0, 3.0);
      for (int64_t c = 0; c < p.C; c += 2) a.data<float>()[c] *= -1.0f;
      Tensor mean = Tensor::empty({p.C}), var = Tensor::empty({p.C});
      batch_norm_stats(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(), var.data<float>());

      Tensor y = Tensor::empty(shape), y_ref = Tensor::empty(shape);
      batch_norm_scaled_forward(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(),
                                var.data<float>(), a.data<float>(), data_or_null(p.gamma),
                                data_or_null(p.beta), kEps, y.data<float>());
      batch_norm_scaled_forward_ref(p.N, p.C, p.S, p.x.data<float>(), a.data<float>(),
                                    b.data<float>(), data_or_null(p.gamma), data_or_null(p.beta),
                                    kEps, y_ref.data<float>());
      EXPECT_TRUE(qat::testing::all_close(y, y_ref, 1e-5, 1e-5));

      Tensor got[5], want[5];  // dx, da, db, dgamma, dbeta
      for (int k = 0; k < 5; ++k) {
        got[k] = Tensor::empty(k == 0 ? shape : Shape{p.C});
        want[k] = Tensor::empty(k == 0 ? shape : Shape{p.C});
      }
      batch_norm_scaled_backward(
          p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(), mean.data<float>(),
          var.data<float>(), a.data<float>(), data_or_null(p.gamma), kEps, got[0].data<float>(),
          got[1].data<float>(), got[2].data<float>(), got[3].data<float>(), got[4].data<float>());
      batch_norm_scaled_backward_ref(
          p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(), a.data<float>(), b.data<float>(),
          data_or_null(p.gamma), kEps, want[0].data<float>(), want[1].data<float>(),
          want[2].data<float>(), want[3].data<float>(), want[4].data<float>());
      const char* names[5] = {"dx", "da", "db", "dgamma", "dbeta"};
      for (int k = 0; k < 5; ++k) {
        EXPECT_TRUE(qat::testing::all_close(got[k], want[k], 1e-4, 1e-5)) << names[k];
      }
    }
  }
}

TEST(BatchNormKernel, BackwardComputesOnlyRequestedOutputs) {
  Problem p({3, 4, 5, 6}, true);
  Tensor mean = Tensor::empty({p.C}), var = Tensor::empty({p.C});
  batch_norm_stats(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(), var.data<float>());
  Tensor dx_all = Tensor::empty(p.x.shape()), dgamma_all = Tensor::empty({p.C}),
         dbeta_all = Tensor::empty({p.C});
  batch_norm_backward(p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(), mean.data<float>(),
                      var.data<float>(), p.gamma.data<float>(), kEps, true, dx_all.data<float>(),
                      dgamma_all.data<float>(), dbeta_all.data<float>());
  // dx alone still needs the per-channel sums internally in training mode.
  Tensor dx = Tensor::empty(p.x.shape());
  batch_norm_backward(p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(), mean.data<float>(),
                      var.data<float>(), p.gamma.data<float>(), kEps, true, dx.data<float>(),
                      nullptr, nullptr);
  EXPECT_EQ(dx.to_vector<float>(), dx_all.to_vector<float>());
  Tensor dgamma = Tensor::empty({p.C});
  batch_norm_backward(p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(), mean.data<float>(),
                      var.data<float>(), p.gamma.data<float>(), kEps, true, nullptr,
                      dgamma.data<float>(), nullptr);
  EXPECT_EQ(dgamma.to_vector<float>(), dgamma_all.to_vector<float>());
}

TEST(BatchNormKernel, ReferenceNormalizesToZeroMeanUnitVariance) {
  const Shape shape{4, 3, 5, 5};
  Tensor x = qat::testing::random_leaf(shape, 7, -3.0, 9.0).detach();
  Tensor mean = Tensor::empty({3}, DType::kFloat64), var = Tensor::empty({3}, DType::kFloat64);
  Tensor y = Tensor::empty(shape, DType::kFloat64);
  batch_norm_stats_ref(4, 3, 25, x.data<double>(), mean.data<double>(), var.data<double>());
  batch_norm_forward_ref<double>(4, 3, 25, x.data<double>(), mean.data<double>(),
                                 var.data<double>(), nullptr, nullptr, 0.0, y.data<double>());
  Tensor y_mean = Tensor::empty({3}, DType::kFloat64), y_var = Tensor::empty({3}, DType::kFloat64);
  batch_norm_stats_ref(4, 3, 25, y.data<double>(), y_mean.data<double>(), y_var.data<double>());
  EXPECT_TRUE(qat::testing::all_close(y_mean, Tensor::zeros({3}, DType::kFloat64), 0, 1e-12));
  EXPECT_TRUE(qat::testing::all_close(y_var, Tensor::ones({3}, DType::kFloat64), 0, 1e-12));
}

TEST(BatchNormKernel, ReductionsAreBitIdenticalForAnyThreadCount) {
  Problem p({16, 8, 32, 32}, true);
  auto run = [&p](int threads) {
    set_num_threads(threads);
    Tensor mean = Tensor::empty({p.C}), var = Tensor::empty({p.C});
    Tensor dgamma = Tensor::empty({p.C}), dbeta = Tensor::empty({p.C});
    batch_norm_stats(p.N, p.C, p.S, p.x.data<float>(), mean.data<float>(), var.data<float>());
    batch_norm_backward(p.N, p.C, p.S, p.dy.data<float>(), p.x.data<float>(), mean.data<float>(),
                        var.data<float>(), p.gamma.data<float>(), kEps, true, nullptr,
                        dgamma.data<float>(), dbeta.data<float>());
    return std::vector<std::vector<float>>{mean.to_vector<float>(), var.to_vector<float>(),
                                           dgamma.to_vector<float>(), dbeta.to_vector<float>()};
  };
  const int threads = get_num_threads();
  const auto one = run(1);
  const auto three = run(3);
  set_num_threads(threads);
  EXPECT_EQ(one, three);
}

}  // namespace
}  // namespace qat::kernels
