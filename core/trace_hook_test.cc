#include "core/trace_hook.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"

namespace qat {
namespace {

struct Report {
  std::string op;
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
  OpAttrs attrs;
};

class RecordingTracer : public OpTracer {
 public:
  void on_op(const char* op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
             const OpAttrs& attrs) override {
    reports.push_back({op, inputs, outputs, attrs});
  }
  std::vector<Report> reports;
};

TEST(OpAttrs, TypedAccessAndPrinting) {
  const OpAttrs attrs = {
      {"dim", 1}, {"kernel", std::vector<int64_t>{3, 3}}, {"p", 0.1}, {"ceil_mode", true}};
  EXPECT_EQ(attrs.get_int("dim"), 1);
  EXPECT_EQ(attrs.get_ints("kernel"), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(attrs.get_double("p"), 0.1);
  EXPECT_TRUE(attrs.get_bool("ceil_mode"));
  EXPECT_EQ(attrs.to_string(), "dim=1, kernel=[3, 3], p=0.1, ceil_mode=true");
  EXPECT_EQ(AttrValue(1e-5).to_string(), "1e-05");
  EXPECT_EQ(AttrValue(6.0).to_string(), "6");
}

TEST(OpAttrs, SetReplacesInPlace) {
  OpAttrs attrs = {{"a", 1}, {"b", 2}};
  attrs.set("a", 5);
  attrs.set("c", false);
  EXPECT_EQ(attrs.to_string(), "a=5, b=2, c=false");
}

TEST(OpAttrs, WrongKindAndMissingNameThrow) {
  const OpAttrs attrs = {{"dim", 1}};
  EXPECT_THROW(attrs.get_double("dim"), Error);
  try {
    attrs.get_int("groups");
    FAIL() << "expected qat::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no attribute 'groups'"), std::string::npos) << e.what();
  }
}

TEST(TraceHook, NothingIsReportedWithoutATracer) {
  EXPECT_FALSE(op_tracing());
  RecordingTracer tracer;
  ops::relu(Tensor::ones({2}));
  EXPECT_TRUE(tracer.reports.empty());
}

TEST(TraceHook, OpsReportInputsOutputsAndAttrs) {
  RecordingTracer tracer;
  const Tensor x = Tensor::ones({2, 4, 3, 3});
  Tensor y;
  std::vector<Tensor> halves;
  {
    OpTracerGuard guard(tracer);
    EXPECT_TRUE(op_tracing());
    halves = ops::chunk(x, 2, -3);
    y = ops::cat({halves[1], halves[0]}, 1);
    y = ops::mul(y, 0.5);
    y = ops::max_pool2d(y, {2, 2});
  }
  EXPECT_FALSE(op_tracing());
  ASSERT_EQ(tracer.reports.size(), 4u);
  const Report& chunk = tracer.reports[0];
  EXPECT_EQ(chunk.op, "chunk");
  ASSERT_EQ(chunk.outputs.size(), 2u);
  EXPECT_EQ(chunk.outputs[1].impl_ptr(), halves[1].impl_ptr());
  EXPECT_EQ(chunk.attrs.to_string(), "chunks=2, dim=1");  // the dim as resolved
  const Report& cat = tracer.reports[1];
  ASSERT_EQ(cat.inputs.size(), 2u);
  EXPECT_EQ(cat.inputs[0].impl_ptr(), halves[1].impl_ptr());
  EXPECT_EQ(tracer.reports[2].attrs.to_string(), "other=0.5");
  EXPECT_EQ(tracer.reports[3].attrs.to_string(),
            "kernel=[2, 2], stride=[2, 2], padding=[0, 0], dilation=[1, 1], ceil_mode=false");
  EXPECT_EQ(tracer.reports[3].outputs[0].impl_ptr(), y.impl_ptr());
}

TEST(TraceHook, AbsentOptionalInputsAreLeftOut) {
  RecordingTracer tracer;
  OpTracerGuard guard(tracer);
  ops::conv2d(Tensor::ones({1, 2, 4, 4}), Tensor::ones({3, 2, 1, 1}), Tensor());
  ASSERT_EQ(tracer.reports.size(), 1u);
  EXPECT_EQ(tracer.reports[0].inputs.size(), 2u);
  EXPECT_EQ(tracer.reports[0].attrs.to_string(),
            "stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1");
}

TEST(TraceHook, EvalDropoutReportsItsInputAsOutput) {
  RecordingTracer tracer;
  OpTracerGuard guard(tracer);
  const Tensor x = Tensor::ones({2, 3});
  ops::dropout(x, 0.5, /*training=*/false);
  ASSERT_EQ(tracer.reports.size(), 1u);
  EXPECT_EQ(tracer.reports[0].outputs[0].impl_ptr(), x.impl_ptr());
  EXPECT_EQ(tracer.reports[0].attrs.to_string(), "p=0.5, training=false");
}

TEST(TraceHook, OpsCalledInsideAnOpAreNotReported) {
  RecordingTracer tracer;
  OpTracerGuard guard(tracer);
  ops::cross_entropy(Tensor::ones({2, 3}), Tensor::from_vector<int64_t>({0, 2}, {2}));
  EXPECT_TRUE(tracer.reports.empty());  // neither the loss nor its internal log_softmax
}

TEST(TraceHook, GuardsNestAndRestore) {
  RecordingTracer outer, inner;
  OpTracerGuard outer_guard(outer);
  {
    OpTracerGuard inner_guard(inner);
    ops::relu(Tensor::ones({2}));
  }
  ops::relu(Tensor::ones({2}));
  EXPECT_EQ(inner.reports.size(), 1u);
  EXPECT_EQ(outer.reports.size(), 1u);
}

}  // namespace
}  // namespace qat
