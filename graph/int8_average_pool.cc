#include "graph/int8_average_pool.h"

#include <cmath>
#include <utility>

#include "core/autograd.h"
#include "core/check.h"
#include "core/ops/elementwise.h"
#include "graph/executor.h"

namespace qat::graph {

Int8AveragePool::Int8AveragePool(std::string op, OpAttrs attrs, int64_t window,
                                 std::shared_ptr<quant::FakeQuantize> input_quantizer)
    : op_(std::move(op)),
      attrs_(std::move(attrs)),
      window_(window),
      input_quantizer_(std::move(input_quantizer)) {
  QAT_CHECK(op_ == "avg_pool2d" || op_ == "adaptive_avg_pool2d",
            "Int8AveragePool: not an average pool: ", op_);
  QAT_CHECK(window_ > 0, "Int8AveragePool: window must be positive, got ", window_);
  QAT_CHECK(input_quantizer_ && !input_quantizer_->is_per_channel(),
            "Int8AveragePool: needs the per-tensor quantizer of its input");
}

std::string Int8AveragePool::extra_repr() const {
  return op_ + ", window=" + std::to_string(window_);
}

Tensor Int8AveragePool::forward_impl(const Tensor& input) {
  const Tensor average = run_function(op_, {input}, attrs_).at(0);
  if (!input_quantizer_->fake_quant_enabled()) return average;
  Tensor truncated;
  {
    NoGradGuard no_grad;
    const float s = input_quantizer_->scale().to_vector<float>().at(0);
    const Tensor y = average.to(DType::kFloat32);
    truncated = Tensor::empty(y.shape());
    const float* in = y.data<float>();
    float* out = truncated.data<float>();
    const int64_t n = y.numel();
    for (int64_t i = 0; i < n; ++i) {
      // average = sum(q * s) / window up to float rounding, far below 1 / window of a step:
      // rounding average / s * window recovers the integer sum of the codes.
      const auto sum =
          static_cast<int64_t>(std::nearbyint(in[i] / s * static_cast<float>(window_)));
      out[i] = static_cast<float>(sum / window_) * s;  // integer division truncates toward 0
    }
  }
  if (!is_grad_enabled() || !average.requires_grad()) return truncated;
  // truncated's value with the float pool's gradient.
  return ops::add(average, ops::sub(truncated, average).detach());
}

}  // namespace qat::graph
