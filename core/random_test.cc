#include "core/random.h"

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

namespace qat {
namespace {

// Draws of every kind the Generator offers, so a restored state must repeat all of them.
std::vector<double> draws(Generator& gen, int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(gen.uniform(-1, 1));
    out.push_back(gen.normal(0, 1));
    out.push_back(gen.bernoulli(0.3) ? 1.0 : 0.0);
    out.push_back(static_cast<double>(gen.engine()()));
  }
  return out;
}

TEST(Generator, SetStateRepeatsEveryLaterDraw) {
  Generator gen(123);
  draws(gen, 37);  // mid-buffer: the position is part of the state
  const Tensor state = gen.get_state();
  EXPECT_EQ(state.dtype(), DType::kUInt8);
  EXPECT_EQ(state.dim(), 1);
  const std::vector<double> expected = draws(gen, 500);  // crosses a 312-word refill

  Generator other(7);
  other.set_state(state);
  EXPECT_EQ(draws(other, 500), expected);
  gen.set_state(state);  // rewinding the same generator
  EXPECT_EQ(draws(gen, 500), expected);
}

TEST(Generator, StateCoversTensorFills) {
  Generator gen(5);
  Tensor a = Tensor::empty({1001}), b = Tensor::empty({1001});
  normal_(a, 0, 1, gen);
  const Tensor state = gen.get_state().clone();
  normal_(a, 0, 1, gen);
  gen.set_state(state);
  normal_(b, 0, 1, gen);
  EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0);
}

TEST(Generator, DefaultGeneratorState) {
  manual_seed(42);
  default_generator().uniform(0, 1);
  const Tensor state = get_rng_state();
  Tensor a = Tensor::empty({64}), b = Tensor::empty({64});
  uniform_(a, 0, 1);
  manual_seed(99);
  set_rng_state(state);
  uniform_(b, 0, 1);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
}

TEST(Generator, RejectsMalformedStateAndKeepsItsOwn) {
  Generator gen(1);
  const Tensor good = gen.get_state();
  Generator probe(1);
  const double first = probe.uniform(0, 1);

  EXPECT_THROW(gen.set_state(Tensor::zeros({10}, DType::kFloat32)), Error);  // wrong dtype
  EXPECT_THROW(gen.set_state(Tensor()), Error);
  Tensor truncated = good.slice0(0, good.numel() / 2).clone();
  EXPECT_THROW(gen.set_state(truncated), Error);
  Tensor garbage = good.clone();
  garbage.data<uint8_t>()[3] = 'x';
  EXPECT_THROW(gen.set_state(garbage), Error);
  try {
    gen.set_state(truncated);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a std::mt19937_64 state"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(gen.uniform(0, 1), first);  // untouched by the failed loads
}

}  // namespace
}  // namespace qat
