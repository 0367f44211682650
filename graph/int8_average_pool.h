#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "core/trace_hook.h"
#include "nn/module.h"
#include "quant/fake_quantize.h"

namespace qat::graph {

// tnn's int8 average pool in the fake-quant graph. TNN averages the input codes and truncates
// toward zero, keeping the input's scale (tnn_format.md §3.4: q_out = trunc(sum q / count)),
// where the float pool gives sum(q * s) / count, up to half a step away. prepare_qat puts this
// module in place of every int8 average pool (module or functional) under tnn, so training
// sees the deployed rounding and the fake-quant eval equals the integer simulator; convert
// writes it back as the pool op. The gradient is the float pool's (straight through the
// truncation). Without fake quant on the input's quantizer it is the float pool.
class Int8AveragePool : public nn::Module {
 public:
  // op / attrs: the pool as run_function() runs it ("avg_pool2d" without padding and partial
  // windows, or "adaptive_avg_pool2d" with bins that tile the input): every window averages
  // `window` elements. input_quantizer: the quantizer whose scale the input blob has.
  Int8AveragePool(std::string op, OpAttrs attrs, int64_t window,
                  std::shared_ptr<quant::FakeQuantize> input_quantizer);

  const std::string& op() const { return op_; }
  const OpAttrs& attrs() const { return attrs_; }
  int64_t window() const { return window_; }

  std::string type_name() const override { return "Int8AveragePool"; }
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  std::string op_;
  OpAttrs attrs_;
  int64_t window_;
  std::shared_ptr<quant::FakeQuantize> input_quantizer_;
};

}  // namespace qat::graph
