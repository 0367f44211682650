// Golden parity of the optimizers against torch.optim 1.13.
//
// Independent of the ops: tests/data/optim.safetensors (from tests/golden/gen_fixtures.py) holds
// a tiny conv + linear model's initial parameters and a fixed gradient per parameter and step.
// Each step sets p.grad to the stored gradient and calls step(), as the script does with
// torch.optim, and compares every parameter with PyTorch's value after that step.

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/optim.h"
#include "tests/testing/golden.h"

namespace qat {
namespace {

using testing::fixture;
using testing::matches_fixture;

// |qat - torch| <= 1e-6 + 1e-6 |torch|. The absolute floor covers parameters that pass near
// zero, where a relative bound alone is meaningless; float32 rounding over 5 steps stays
// around 1e-7 for these O(1) values.
constexpr double kRtol = 1e-6;
constexpr double kAtol = 1e-6;

// Mirrors OPTIM_PARAMS and OPTIM_STEPS in gen_fixtures.py.
const char* const kParamNames[] = {"conv.weight", "conv.bias", "fc.weight", "fc.bias"};
constexpr int kSteps = 5;

using MakeOptimizer = std::function<std::unique_ptr<nn::Optimizer>(std::vector<Tensor>)>;

struct OptimizerCase {
  const char* name;
  MakeOptimizer make;
};

// gtest prints a case by its name (instead of its bytes) when it fails.
void PrintTo(const OptimizerCase& c, std::ostream* os) { *os << c.name; }

// Mirrors OPTIMIZERS in gen_fixtures.py.
const OptimizerCase kOptimizerCases[] = {
    {"sgd_nesterov",
     [](std::vector<Tensor> params) {
       return std::make_unique<nn::SGD>(
           std::move(params), nn::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(1e-4));
     }},
    {"sgd_dampening",
     [](std::vector<Tensor> params) {
       return std::make_unique<nn::SGD>(std::move(params),
                                        nn::SGDOptions(0.1).momentum(0.9).dampening(0.1));
     }},
    {"adam",
     [](std::vector<Tensor> params) {
       return std::make_unique<nn::Adam>(std::move(params),
                                         nn::AdamOptions().lr(1e-2).weight_decay(1e-4));
     }},
    {"adamw",
     [](std::vector<Tensor> params) {
       return std::make_unique<nn::AdamW>(std::move(params),
                                          nn::AdamWOptions().lr(1e-2).weight_decay(1e-2));
     }},
};

class GoldenOptimizer : public ::testing::TestWithParam<OptimizerCase> {};

TEST_P(GoldenOptimizer, FiveStepsMatchPyTorch) {
  const OptimizerCase& c = GetParam();
  const NamedTensors f = testing::load_fixture("optim.safetensors");
  std::vector<Tensor> params;
  for (const char* name : kParamNames) {
    Tensor p = fixture(f, std::string("param.") + name).clone();
    p.requires_grad_();
    params.push_back(p);
  }
  std::unique_ptr<nn::Optimizer> optimizer = c.make(params);

  for (int step = 0; step < kSteps; ++step) {
    const std::string k = std::to_string(step);
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].set_grad(fixture(f, std::string("grad.") + kParamNames[i] + "." + k).clone());
    }
    optimizer->step();
    for (size_t i = 0; i < params.size(); ++i) {
      // The handles above must see the update: optimizers write in place.
      EXPECT_TRUE(matches_fixture(
          params[i], f, std::string(c.name) + "." + kParamNames[i] + "." + k, kRtol, kAtol))
          << "after step " << step + 1;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenOptimizer, ::testing::ValuesIn(kOptimizerCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace qat
