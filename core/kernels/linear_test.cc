#include "core/kernels/linear.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/tensor.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::kernels {
namespace {

struct LinearSize {
  int64_t N, K, M;
};

// Single elements, odd sizes, K = 0 (y = b), N = 0, and sizes where Eigen's GEMM blocks and
// goes parallel.
const std::vector<LinearSize> kSizes = {{1, 1, 1}, {7, 13, 5},    {33, 17, 65}, {2, 0, 3},
                                        {0, 4, 3}, {128, 96, 80}, {5, 257, 1}};

Tensor random_float(const Shape& shape, uint64_t seed) {
  return qat::testing::random_leaf(shape, seed).to(DType::kFloat32);
}

std::string size_str(const LinearSize& s) {
  return "N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) + " M=" + std::to_string(s.M);
}

TEST(LinearKernel, ForwardMatchesReference) {
  for (const LinearSize& s : kSizes) {
    for (bool has_bias : {true, false}) {
      SCOPED_TRACE(size_str(s) + (has_bias ? " bias" : " no bias"));
      Tensor x = random_float({s.N, s.K}, 1), w = random_float({s.M, s.K}, 2);
      Tensor b = random_float({s.M}, 3);
      const float* b_ptr = has_bias ? b.data<float>() : nullptr;
      Tensor y = Tensor::empty({s.N, s.M}), y_ref = Tensor::empty({s.N, s.M});
      linear_forward(s.N, s.K, s.M, x.data<float>(), w.data<float>(), b_ptr, y.data<float>());
      linear_forward_ref(s.N, s.K, s.M, x.data<float>(), w.data<float>(), b_ptr,
                         y_ref.data<float>());
      EXPECT_TRUE(qat::testing::all_close(y, y_ref, 1e-5, 1e-5));
    }
  }
}

TEST(LinearKernel, BackwardMatchesReference) {
  for (const LinearSize& s : kSizes) {
    SCOPED_TRACE(size_str(s));
    Tensor x = random_float({s.N, s.K}, 1), w = random_float({s.M, s.K}, 2);
    Tensor dy = random_float({s.N, s.M}, 4);
    Tensor dx = Tensor::empty({s.N, s.K}), dx_ref = Tensor::empty({s.N, s.K});
    linear_backward_data(s.N, s.K, s.M, dy.data<float>(), w.data<float>(), dx.data<float>());
    linear_backward_data_ref(s.N, s.K, s.M, dy.data<float>(), w.data<float>(),
                             dx_ref.data<float>());
    EXPECT_TRUE(qat::testing::all_close(dx, dx_ref, 1e-5, 1e-5));
    Tensor dw = Tensor::empty({s.M, s.K}), dw_ref = Tensor::empty({s.M, s.K});
    linear_backward_weight(s.N, s.K, s.M, dy.data<float>(), x.data<float>(), dw.data<float>());
    linear_backward_weight_ref(s.N, s.K, s.M, dy.data<float>(), x.data<float>(),
                               dw_ref.data<float>());
    EXPECT_TRUE(qat::testing::all_close(dw, dw_ref, 1e-5, 1e-5));
    Tensor db = Tensor::empty({s.M}), db_ref = Tensor::empty({s.M});
    linear_backward_bias(s.N, s.M, dy.data<float>(), db.data<float>());
    linear_backward_bias_ref(s.N, s.M, dy.data<float>(), db_ref.data<float>());
    EXPECT_TRUE(qat::testing::all_close(db, db_ref, 1e-5, 1e-5));
  }
}

TEST(LinearKernel, ReferenceComputesXWTransposePlusB) {
  // x [2, 3], w [2, 3], b [2]: y[n][m] = sum_k x[n][k] w[m][k] + b[m]
  const std::vector<double> x{1, 2, 3, 4, 5, 6}, w{1, 0, -1, 0.5, 0.5, 0.5}, b{10, -10};
  std::vector<double> y(4);
  linear_forward_ref(2, 3, 2, x.data(), w.data(), b.data(), y.data());
  EXPECT_EQ(y, (std::vector<double>{1 - 3 + 10, 3 - 10, 4 - 6 + 10, 7.5 - 10}));
}

}  // namespace
}  // namespace qat::kernels
