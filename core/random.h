#pragma once

#include <cstdint>
#include <random>

#include "core/tensor.h"

namespace qat {

// Seedable random source used by initializers, dropout and data shuffling.
// (The streams differ from PyTorch's; only the distributions match.)
class Generator {
 public:
  explicit Generator(uint64_t seed = 5489) : engine_(seed) {}
  void seed(uint64_t seed) { engine_.seed(seed); }
  std::mt19937_64& engine() { return engine_; }
  double uniform(double low, double high);
  double normal(double mean, double stddev);
  bool bernoulli(double p);

  // The whole state, as torch.Generator.get_state(): a 1-d uint8 tensor holding the engine's
  // standard textual representation (312 words and the position). The distributions keep no
  // cached draws between calls (normal() builds a fresh one each time), so after
  // set_state(get_state()) every later draw repeats exactly.
  Tensor get_state() const;
  // Restores a get_state() result; a malformed state throws and leaves the generator unchanged.
  void set_state(const Tensor& state);

 private:
  std::mt19937_64 engine_;
};

// The process-wide generator (not thread-safe: draw from one thread).
Generator& default_generator();
void manual_seed(uint64_t seed);
// default_generator().get_state() / set_state(), as torch.get_rng_state() / set_rng_state().
Tensor get_rng_state();
void set_rng_state(const Tensor& state);

// In-place fills of a float32/float64 tensor.
Tensor& uniform_(Tensor& t, double low, double high, Generator& gen = default_generator());
Tensor& normal_(Tensor& t, double mean, double stddev, Generator& gen = default_generator());

}  // namespace qat
