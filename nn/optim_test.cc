#include "nn/optim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "tests/testing/compare.h"

namespace qat::nn {
namespace {

// Expected values below come from torch 1.13 (/usr/bin/python3): the same two parameters and
// gradient sequence, three optimizer.step() calls.
const std::vector<float> kW0 = {0.5f, -1.0f, 1.5f, 2.0f};  // [2, 2]
const std::vector<float> kB0 = {0.1f, -0.2f};              // [2]

struct Params {
  Tensor w = Tensor::from_vector(kW0, {2, 2}).requires_grad_();
  Tensor b = Tensor::from_vector(kB0, {2}).requires_grad_();
};

// Gradients of step k = 0, 1, 2 (set by hand: the optimizer only reads .grad).
void set_grads(Params& p, int k, bool skip_b = false) {
  // Computed in double and rounded once, as torch.tensor([...]) does.
  p.w.set_grad(Tensor::from_vector<double>({0.3 + 0.1 * k, -0.2, 0.05, -0.4 * (k + 1)}, {2, 2})
                   .to(DType::kFloat32));
  p.b.set_grad(skip_b ? Tensor() : Tensor::from_vector<float>({1.0f - k, 0.25f * k}, {2}));
}

void run_steps(Optimizer& opt, Params& p, int skip_b_at = -1) {
  for (int k = 0; k < 3; ++k) {
    set_grads(p, k, k == skip_b_at);
    opt.step();
  }
}

void expect_params(const Params& p, const std::vector<float>& w, const std::vector<float>& b) {
  EXPECT_TRUE(testing::all_close(p.w, Tensor::from_vector(w, {2, 2}), 1e-6, 1e-7));
  EXPECT_TRUE(testing::all_close(p.b, Tensor::from_vector(b, {2}), 1e-6, 1e-7));
}

TEST(SGD, PlainStepMatchesTorch) {
  Params p;
  SGD opt({p.w, p.b}, SGDOptions(0.5));
  run_steps(opt, p);
  expect_params(p, {-0.100000009f, -0.699999928f, 1.42500007f, 3.20000029f},
                {0.099999994f, -0.574999988f});
}

TEST(SGD, MomentumDampeningWeightDecayMatchTorch) {
  Params p;
  SGD opt({p.w, p.b}, SGDOptions(0.1).momentum(0.9).dampening(0.1).weight_decay(0.01));
  run_steps(opt, p);
  // The first step stores buf = d_p without dampening, as torch.
  expect_params(p, {0.302777112f, -0.888368785f, 1.46544743f, 2.34236693f},
                {-0.0811896697f, -0.286666602f});
}

TEST(SGD, NesterovMatchesTorch) {
  Params p;
  SGD opt({p.w, p.b}, SGDOptions(0.1).momentum(0.9).weight_decay(0.01).nesterov(true));
  run_steps(opt, p);
  expect_params(p, {0.189865604f, -0.831262887f, 1.44777179f, 2.56558943f},
                {-0.0536743961f, -0.361052722f});
}

TEST(SGD, ParamGroupsHaveTheirOwnLrAndWeightDecay) {
  Params p;
  SGD opt({ParamGroup{{p.w}}, ParamGroup{{p.b}, 0.01, 0.5}}, SGDOptions(0.1).momentum(0.9));
  EXPECT_EQ(*opt.param_groups()[0].lr, 0.1);  // filled from the defaults
  EXPECT_EQ(*opt.param_groups()[0].weight_decay, 0.0);
  run_steps(opt, p);
  expect_params(p, {0.292699993f, -0.887800038f, 1.47194993f, 2.38039994f},
                {0.0802967399f, -0.204151481f});
}

TEST(SGD, UpdatesInPlaceAndWithoutHistory) {
  Params p;
  const TensorImpl* impl = p.w.impl_ptr().get();
  SGD opt({p.w, p.b}, SGDOptions(0.1).momentum(0.9));
  run_steps(opt, p);
  EXPECT_EQ(p.w.impl_ptr().get(), impl);
  EXPECT_TRUE(p.w.is_leaf());
  EXPECT_TRUE(p.w.requires_grad());
}

TEST(SGD, RejectsInvalidOptionsAndParameters) {
  Params p;
  EXPECT_THROW(SGD({p.w}, SGDOptions(-0.1)), Error);
  EXPECT_THROW(SGD({p.w}, SGDOptions(0.1).nesterov(true)), Error);  // needs momentum
  EXPECT_THROW(SGD({p.w}, SGDOptions(0.1).momentum(0.9).dampening(0.1).nesterov(true)), Error);
  EXPECT_THROW(SGD(std::vector<Tensor>{}, SGDOptions(0.1)), Error);
  EXPECT_THROW(SGD({ParamGroup{{p.w}}, ParamGroup{{p.w, p.b}}}, SGDOptions(0.1)), Error);
}

TEST(SGD, LargeAndFloat64ParametersFollowTheSameFormula) {
  // 200000 elements take the OpenMP path; float64 takes the double kernel.
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    Tensor w = Tensor::full({200000}, 1.0, dtype).requires_grad_();
    SGD opt({w}, SGDOptions(0.5).momentum(0.9));
    for (int k = 0; k < 2; ++k) {
      w.set_grad(Tensor::full({200000}, 0.25, dtype));
      opt.step();
    }
    // buf: 0.25, then 0.9 * 0.25 + 0.25 = 0.475; w: 1 - 0.125 - 0.2375
    const std::vector<double> v = w.to_vector<double>();
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    EXPECT_EQ(*lo, *hi) << dtype_name(dtype);
    EXPECT_NEAR(*lo, 0.6375, dtype == DType::kFloat32 ? 1e-7 : 1e-15) << dtype_name(dtype);
  }
}

TEST(Adam, L2WeightDecayMatchesTorch) {
  Params p;
  Adam opt({p.w, p.b}, AdamOptions().lr(0.01).betas({0.9, 0.99}).weight_decay(0.1));
  run_steps(opt, p);
  expect_params(p, {0.470037639f, -0.970002949f, 1.47000444f, 2.02832675f},
                {0.0839652196f, -0.204841197f});
}

TEST(Adam, AmsgradMatchesTorch) {
  Params p;
  Adam opt({p.w, p.b}, AdamOptions().lr(0.01).amsgrad(true));
  run_steps(opt, p);
  expect_params(p, {0.47005868f, -0.970000029f, 1.47000003f, 2.02923179f},
                {0.0841614529f, -0.215727106f});
}

TEST(Adam, ParametersWithoutGradAreSkippedAndTheirStepDoesNotAdvance) {
  Params p;
  Adam opt({p.w, p.b}, AdamOptions().lr(0.01).betas({0.9, 0.99}).weight_decay(0.1));
  run_steps(opt, p, /*skip_b_at=*/1);
  expect_params(p, {0.470037639f, -0.970002949f, 1.47000444f, 2.02832675f},
                {0.0904313698f, -0.197140664f});
}

TEST(AdamW, DecoupledWeightDecayMatchesTorch) {
  Params p;
  AdamW opt({p.w, p.b}, AdamWOptions().lr(0.01).weight_decay(0.1));
  run_steps(opt, p);
  expect_params(p, {0.46859014f, -0.967033088f, 1.46553457f, 2.02320838f},
                {0.0838850886f, -0.215120271f});
}

TEST(Optimizer, ZeroGradSetsGradsUndefined) {
  Params p;
  SGD opt({p.w, p.b}, SGDOptions(0.1));
  set_grads(p, 0);
  opt.zero_grad();
  EXPECT_FALSE(p.w.grad().defined());
  EXPECT_FALSE(p.b.grad().defined());
}

TEST(Optimizer, StateDictRoundTripResumesExactly) {
  // Uninterrupted: three steps.
  Params a;
  Adam full({a.w, a.b}, AdamOptions().lr(0.01).amsgrad(true));
  run_steps(full, a);

  // Interrupted after the first step, resumed in a fresh optimizer from the state dict.
  Params b;
  Adam first({b.w, b.b}, AdamOptions().lr(0.01).amsgrad(true));
  set_grads(b, 0);
  first.step();
  const NamedTensors state = first.state_dict();
  EXPECT_EQ(state[0].first, "param_groups.0.lr");
  EXPECT_EQ(state[2].first, "state.0.exp_avg");
  EXPECT_EQ(state.back().first, "state.1.step");
  Adam resumed({b.w, b.b}, AdamOptions().lr(0.5).amsgrad(true));
  resumed.load_state_dict(state);
  EXPECT_EQ(*resumed.param_groups()[0].lr, 0.01);
  for (int k = 1; k < 3; ++k) {
    set_grads(b, k);
    resumed.step();
  }
  EXPECT_EQ(a.w.to_vector<float>(), b.w.to_vector<float>());
  EXPECT_EQ(a.b.to_vector<float>(), b.b.to_vector<float>());
}

TEST(Optimizer, LoadStateDictRejectsForeignKeysAndShapes) {
  Params p;
  SGD opt({p.w, p.b}, SGDOptions(0.1).momentum(0.9));
  set_grads(p, 0);
  opt.step();
  NamedTensors state = opt.state_dict();
  NamedTensors extra = state;
  extra.emplace_back("state.5.momentum_buffer", Tensor::zeros({2}));
  EXPECT_THROW(opt.load_state_dict(extra), Error);
  NamedTensors wrong = state;
  wrong.back().second = Tensor::zeros({3});  // state.1.momentum_buffer
  EXPECT_THROW(opt.load_state_dict(wrong), Error);
  NamedTensors missing(state.begin() + 1, state.end());  // no param_groups.0.lr
  EXPECT_THROW(opt.load_state_dict(missing), Error);
}

}  // namespace
}  // namespace qat::nn
