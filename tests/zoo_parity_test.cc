// Parity of the zoo models with torchvision 0.14: logits in eval and training mode, the loss,
// BN running statistics after one training-mode forward, and parameter gradients after a
// cross-entropy backward.
//
// Both sides fill the model with the same deterministic weights (tests/testing/
// deterministic_weights.h); the fixtures tests/data/<model>_parity.safetensors hold
// torchvision's results, written by tests/golden/gen_zoo_fixtures.py (its docstring lists the
// contents, PARITY_CASES the model options mirrored in kCases below). References are
// torchvision's float64 results rounded to float32, and the script checks that they are well
// conditioned: torch's own float32 run, and float64 runs with every conv output perturbed by
// 1e-7 of its max, use at most a quarter of the tolerances below.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "tests/testing/deterministic_weights.h"
#include "tests/testing/golden.h"
#include "zoo/googlenet.h"
#include "zoo/mobilenet_v2.h"
#include "zoo/resnet.h"
#include "zoo/shufflenet_v2.h"

namespace qat {
namespace {

using testing::fixture;

// Elementwise |qat - torch| <= rtol |torch| + floor * max|torch|. The floor is relative to the
// reference tensor's largest element, so elements that cancel to nearly zero are compared on
// the tensor's own scale rather than relatively.
struct Tolerance {
  double rtol;
  double floor;
};
constexpr Tolerance kLogits{1e-4, 1e-5};   // logits, aux logits, loss
constexpr Tolerance kBuffers{1e-4, 1e-5};  // BN running_mean / running_var
constexpr Tolerance kGrads{1e-3, 1e-4};    // parameter gradients ("train.grad.<param>")
// "train.coarse_grad.<param>": googlenet's first conv. Near-ties in its max-pools (one window of
// inception4b's branch-4 pool has its top two values 1e-7 of the map's max apart) flip under
// any float32 rounding, torch's included, and move every gradient upstream by ~3e-3 of its max.
// 3e-2 of the max still catches any structural error, which is O(1).
constexpr Tolerance kCoarseGrads{1e-3, 3e-2};

struct ParityCase {
  const char* name;  // fixture tests/data/<name>_parity.safetensors
  std::function<std::shared_ptr<nn::Module>()> make;
};

void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name; }

// Mirrors PARITY_CASES in gen_zoo_fixtures.py: 10 classes, dropout 0 (so that a training-mode
// forward is deterministic), googlenet with its aux heads.
const ParityCase kCases[] = {
    {"resnet18", [] { return zoo::resnet18(zoo::ResNetOptions().num_classes(10)); }},
    {"resnet50", [] { return zoo::resnet50(zoo::ResNetOptions().num_classes(10)); }},
    {"mobilenet_v2",
     [] { return zoo::mobilenet_v2(zoo::MobileNetV2Options().num_classes(10).dropout(0.0)); }},
    {"shufflenet_v2_x1_0",
     [] { return zoo::shufflenet_v2_x1_0(zoo::ShuffleNetV2Options().num_classes(10)); }},
    {"googlenet",
     [] {
       return zoo::googlenet(
           zoo::GoogLeNetOptions().num_classes(10).aux_logits(true).dropout(0.0).dropout_aux(0.0));
     }},
};

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

::testing::AssertionResult matches(const Tensor& got, const NamedTensors& f,
                                   const std::string& name, Tolerance tol) {
  const double atol = tol.floor * max_abs(fixture(f, name));
  return testing::matches_fixture(got, f, name, tol.rtol, atol);
}

// The tensor called `key` in `named` (parameters or buffers of the model).
Tensor find(const NamedTensors& named, const std::string& key) {
  for (const auto& entry : named) {
    if (entry.first == key) return entry.second;
  }
  QAT_CHECK(false, "the model has no parameter or buffer '", key,
            "' (the fixture names it; the model's state_dict differs from torchvision's)");
  return Tensor();
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// (sum v, sum |v|) in double, as the script stores it per state_dict entry.
std::pair<double, double> checksum(const Tensor& t) {
  double sum = 0, sum_abs = 0;
  for (double v : t.to_vector<double>()) sum += v, sum_abs += std::fabs(v);
  return {sum, sum_abs};
}

// Both sums must agree up to summation order (the script sums with torch in double).
::testing::AssertionResult same_checksum(const std::pair<double, double>& got, double sum,
                                         double sum_abs) {
  const double tol = 1e-9 * std::max(sum_abs, 1.0);
  if (std::fabs(got.first - sum) <= tol && std::fabs(got.second - sum_abs) <= tol) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "(sum, sum|v|) = (" << got.first << ", " << got.second
                                       << ") vs torchvision (" << sum << ", " << sum_abs << ")";
}

class ZooParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(ZooParity, MatchesTorchvision) {
  const ParityCase& c = GetParam();
  const NamedTensors f = testing::load_fixture(std::string(c.name) + "_parity.safetensors");
  std::shared_ptr<nn::Module> model = c.make();
  testing::fill_deterministic(*model);

  // The deterministic weights and input agree with the script's, entry by entry.
  const nn::StateDict sd = model->state_dict();
  const std::vector<double> sums = fixture(f, "state_checksums").to_vector<double>();
  ASSERT_EQ(sums.size(), 2 * sd.size())
      << "state_dict has " << sd.size() << " entries; torchvision's has " << sums.size() / 2;
  for (size_t k = 0; k < sd.size(); ++k) {
    ASSERT_TRUE(same_checksum(checksum(sd[k].second), sums[2 * k], sums[2 * k + 1]))
        << "deterministic weights of entry " << k << " '" << sd[k].first << "'";
  }
  const Tensor x = testing::deterministic_input(fixture(f, "input_shape").to_vector<int64_t>());
  const std::vector<double> input_sums = fixture(f, "input_checksum").to_vector<double>();
  ASSERT_TRUE(same_checksum(checksum(x), input_sums[0], input_sums[1])) << "input";
  const Tensor labels = fixture(f, "labels");

  model->eval();
  {
    NoGradGuard no_grad;
    EXPECT_TRUE(matches(model->forward(x), f, "eval.logits", kLogits));
  }

  model->train();
  const Tensor logits = model->forward(x);
  EXPECT_TRUE(matches(logits, f, "train.logits", kLogits));
  Tensor loss = ops::cross_entropy(logits, labels);
  if (auto googlenet = std::dynamic_pointer_cast<zoo::GoogLeNet>(model)) {
    // torchvision's recipe: loss + 0.3 * (aux1 loss + aux2 loss).
    const zoo::GoogLeNetAuxLogits& aux = googlenet->last_aux_logits();
    EXPECT_TRUE(matches(aux.aux1, f, "train.aux1", kLogits));
    EXPECT_TRUE(matches(aux.aux2, f, "train.aux2", kLogits));
    const Tensor aux_loss =
        ops::add(ops::cross_entropy(aux.aux1, labels), ops::cross_entropy(aux.aux2, labels));
    loss = ops::add(loss, ops::mul(aux_loss, 0.3));
  }
  EXPECT_TRUE(matches(loss, f, "train.loss", kLogits));
  loss.backward();

  const NamedTensors params = model->named_parameters();
  const NamedTensors buffers = model->named_buffers();
  int grads = 0, stats = 0;
  for (const auto& entry : f) {
    const std::string& name = entry.first;
    if (starts_with(name, "train.grad.")) {
      const Tensor grad = find(params, name.substr(std::string("train.grad.").size())).grad();
      EXPECT_TRUE(matches(grad, f, name, kGrads));
      ++grads;
    } else if (starts_with(name, "train.coarse_grad.")) {
      const Tensor grad =
          find(params, name.substr(std::string("train.coarse_grad.").size())).grad();
      EXPECT_TRUE(matches(grad, f, name, kCoarseGrads));
      ++grads;
    } else if (ends_with(name, ".running_mean") || ends_with(name, ".running_var")) {
      EXPECT_TRUE(
          matches(find(buffers, name.substr(std::string("train.").size())), f, name, kBuffers));
      ++stats;
    } else if (ends_with(name, ".num_batches_tracked")) {
      EXPECT_EQ(find(buffers, name.substr(std::string("train.").size())).item(),
                entry.second.item())
          << name;
      ++stats;
    }
  }
  EXPECT_GE(grads, 6) << "fixture holds too few gradients; regenerate it";
  EXPECT_EQ(stats, 3) << "fixture should hold one BN's three buffers";
}

INSTANTIATE_TEST_SUITE_P(Torchvision, ZooParity, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<ParityCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace qat
