// Golden parity of the fused QAT modules against PyTorch 1.13: torch.nn.intrinsic.qat.ConvBn2d /
// ConvBnReLU2d with get_default_qat_qconfig(backend, version=0) and the output FakeQuantize that
// eager prepare_qat attaches, over a train -> freeze_bn -> eval -> disable_observer schedule.
//
// The fixtures come from tests/golden/gen_qat_module_fixtures.py (its docstring lists the
// tensors); kCases and kSchedule mirror its CASES and SCHEDULE, and each case's stored `config`
// is checked so the two tables cannot drift apart silently. Each step starts from PyTorch's
// parameters for that step, so errors do not compound; the module's own state (BN running
// statistics, observer ranges) carries over from step to step, as in training.
//
// Tolerance: |qat - torch| <= 1e-5 + 1e-5 |torch|. PyTorch's values are float32 (fake
// quantization has no float64 path), and conv / batch norm accumulate in a different order here,
// so an output element that lands within rounding noise of a quantization boundary may round to
// the neighbouring code. Outputs of a fake quant therefore may differ by exactly one quantization
// step on fewer than 0.1% of their elements; the test counts and prints those elements.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "quant/conv_bn_relu.h"
#include "quant/qconfig.h"
#include "tests/testing/golden.h"

namespace qat {
namespace {

using testing::fixture;
using testing::matches_fixture;

constexpr double kRtol = 1e-5;
// Conv and batch-norm outputs and gradients are sums of tens of O(1) products; elements that
// cancel to nearly zero keep ~1e-6 of absolute float32 noise (as in golden_ops_test.cc).
constexpr double kAtol = 1e-5;

// Mirrors CASES in gen_qat_module_fixtures.py.
struct ModuleCase {
  const char* name;
  int64_t in_channels, out_channels, kernel, stride, padding;
  bool bias, relu;
};
const ModuleCase kCases[] = {
    {"conv_bn", 3, 4, 3, 1, 1, false, false},
    {"conv_bn_relu", 3, 4, 3, 2, 1, true, true},
};

// Mirrors SCHEDULE in gen_qat_module_fixtures.py.
const char* const kSchedule[] = {"train",  "train", "train",           "frozen",
                                 "frozen", "eval",  "eval_no_observer"};

// Elements of fake-quantized outputs compared, and how many were one quantization step off.
struct StepBudget {
  int64_t compared = 0;
  int64_t one_step_off = 0;
};

// all_close(got, ref) where an element may instead be off by exactly one `step` (within the same
// tolerance); those elements are counted in `budget`.
::testing::AssertionResult matches_up_to_one_step(const Tensor& got, const Tensor& ref, double step,
                                                  StepBudget& budget) {
  if (got.shape() != ref.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs reference " << shape_str(ref.shape());
  }
  const std::vector<double> a = got.to_vector<double>(), b = ref.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    const double tolerance = kAtol + kRtol * std::fabs(b[i]);
    const double diff = std::fabs(a[i] - b[i]);
    if (diff <= tolerance) continue;
    if (std::fabs(diff - step) > tolerance) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs reference "
                                           << b[i] << " (quantization step " << step << ")";
    }
    ++budget.one_step_off;
  }
  budget.compared += static_cast<int64_t>(a.size());
  return ::testing::AssertionSuccess();
}

// Integer tensors (zero points) compared exactly, whatever their dtype.
::testing::AssertionResult same_integers(const Tensor& got, const Tensor& ref) {
  if (got.to_vector<int64_t>() == ref.to_vector<int64_t>()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got.to_string() << " vs reference " << ref.to_string();
}

void set_params(const NamedTensors& f, const std::string& step, const quant::ConvBn2d& m) {
  m.conv()->weight.copy_(fixture(f, step + "weight"));
  if (m.conv()->bias.defined()) m.conv()->bias.copy_(fixture(f, step + "bias"));
  m.bn()->weight.copy_(fixture(f, step + "bn_weight"));
  m.bn()->bias.copy_(fixture(f, step + "bn_bias"));
  for (Tensor t : {m.conv()->weight, m.conv()->bias, m.bn()->weight, m.bn()->bias}) {
    if (t.defined()) t.set_grad(Tensor());
  }
}

void expect_gradients(const NamedTensors& f, const std::string& step, const Tensor& x,
                      const quant::ConvBn2d& m) {
  EXPECT_TRUE(matches_fixture(x.grad(), f, step + "dx", kRtol, kAtol));
  EXPECT_TRUE(matches_fixture(m.conv()->weight.grad(), f, step + "dweight", kRtol, kAtol));
  if (m.conv()->bias.defined()) {
    EXPECT_TRUE(matches_fixture(m.conv()->bias.grad(), f, step + "dbias", kRtol, kAtol));
  }
  EXPECT_TRUE(matches_fixture(m.bn()->weight.grad(), f, step + "dbn_weight", kRtol, kAtol));
  EXPECT_TRUE(matches_fixture(m.bn()->bias.grad(), f, step + "dbn_bias", kRtol, kAtol));
}

// BN running statistics and both fake quants' observer ranges and qparams after a step.
void expect_state(const NamedTensors& f, const std::string& step, const quant::ConvBn2d& m) {
  EXPECT_TRUE(matches_fixture(m.bn()->running_mean, f, step + "running_mean", kRtol, kAtol));
  EXPECT_TRUE(matches_fixture(m.bn()->running_var, f, step + "running_var", kRtol, kAtol));
  for (const auto& [prefix, fq] : {std::make_pair("weight_", m.weight_fake_quant().get()),
                                   std::make_pair("act_", m.activation_post_process().get())}) {
    const std::string p = step + prefix;
    const quant::ObserverBase& observer = *fq->activation_post_process();
    EXPECT_TRUE(matches_fixture(observer.min_val(), f, p + "min_val", kRtol, kAtol));
    EXPECT_TRUE(matches_fixture(observer.max_val(), f, p + "max_val", kRtol, kAtol));
    EXPECT_TRUE(matches_fixture(fq->scale(), f, p + "scale", kRtol, 0));
    EXPECT_TRUE(same_integers(fq->zero_point(), fixture(f, p + "zero_point"))) << p;
  }
}

void run_case(const NamedTensors& f, const std::string& backend, const ModuleCase& c,
              StepBudget& budget) {
  const std::string name = std::string(c.name) + ".";
  ASSERT_EQ(fixture(f, name + "config").to_vector<int64_t>(),
            (std::vector<int64_t>{c.in_channels, c.out_channels, c.kernel, c.stride, c.padding,
                                  c.bias, c.relu}));
  auto conv = std::make_shared<nn::Conv2d>(
      c.in_channels, c.out_channels, c.kernel,
      nn::Conv2dOptions().stride(c.stride).padding(c.padding).bias(c.bias));
  auto bn = std::make_shared<nn::BatchNorm2d>(c.out_channels);
  bn->running_mean.copy_(fixture(f, name + "init.running_mean"));
  bn->running_var.copy_(fixture(f, name + "init.running_var"));
  auto m = std::make_shared<quant::ConvBn2d>(
      conv, bn, quant::QConfig::preset(backend),
      quant::QatModuleOptions().activation(c.relu ? quant::FusedActivation::kReLU
                                                  : quant::FusedActivation::kNone));

  for (size_t k = 0; k < std::size(kSchedule); ++k) {
    const std::string phase = kSchedule[k];
    const std::string step = name + std::to_string(k) + ".";
    SCOPED_TRACE(step + " (" + phase + ")");
    if (phase == "frozen") m->freeze_bn();
    if (phase == "eval") m->eval();
    if (phase == "eval_no_observer") quant::disable_observer(*m);
    set_params(f, step, *m);
    const bool backward = phase == "train" || phase == "frozen";
    Tensor x = fixture(f, step + "x").clone();
    if (backward) x.requires_grad_();

    const Tensor y = m->forward(x);
    const double act_step = fixture(f, step + "act_scale").item();
    EXPECT_TRUE(matches_up_to_one_step(y, fixture(f, step + "y"), act_step, budget));
    if (backward) {
      y.backward(fixture(f, step + "dy"));
      expect_gradients(f, step, x, *m);
    }
    expect_state(f, step, *m);
  }
}

class GoldenQatConvBn : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenQatConvBn, TrainFrozenEvalMatchPyTorch) {
  const std::string backend = GetParam();
  const NamedTensors f = testing::load_fixture("qat_conv_bn_" + backend + ".safetensors");
  StepBudget budget;
  for (const ModuleCase& c : kCases) {
    SCOPED_TRACE(c.name);
    run_case(f, backend, c, budget);
  }
  std::cout << backend << ": " << budget.one_step_off << " of " << budget.compared
            << " fake-quantized output elements one quantization step off PyTorch\n";
  RecordProperty("one_step_off", static_cast<int>(budget.one_step_off));
  RecordProperty("compared", static_cast<int>(budget.compared));
  EXPECT_LT(budget.one_step_off * 1000, budget.compared)
      << "more than 0.1% of the outputs are one quantization step off";
}

INSTANTIATE_TEST_SUITE_P(Backends, GoldenQatConvBn, ::testing::Values("fbgemm", "qnnpack"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace qat
