#pragma once

#include <cmath>
#include <sstream>

#include <gtest/gtest.h>

#include "core/tensor.h"

namespace qat::testing {

// Elementwise |a - b| <= atol + rtol * |b| (b is the reference), as torch.allclose.
// Reports the worst element on failure.
inline ::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol = 1e-5,
                                            double atol = 1e-6) {
  if (a.shape() != b.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(a.shape()) << " vs reference " << shape_str(b.shape());
  }
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  int64_t worst = -1, failures = 0;
  double worst_excess = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double diff = std::fabs(va[i] - vb[i]);
    double excess = diff - (atol + rtol * std::fabs(vb[i]));
    if (excess > 0 || std::isnan(va[i]) != std::isnan(vb[i])) {
      ++failures;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << failures << " of " << va.size() << " elements differ; worst at flat index " << worst
         << ": " << va[worst] << " vs reference " << vb[worst] << " (rtol " << rtol << ", atol "
         << atol << ")";
}

}  // namespace qat::testing
