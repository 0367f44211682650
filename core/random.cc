#include "core/random.h"

#include <cstring>
#include <locale>
#include <sstream>
#include <string>

namespace qat {
namespace {

template <class Draw>
Tensor& fill_random(Tensor& t, Draw&& draw) {
  QAT_CHECK(is_floating(t.dtype()), "random fill needs a floating tensor, got ",
            dtype_name(t.dtype()));
  int64_t n = t.numel();
  if (t.dtype() == DType::kFloat32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(draw());
  } else {
    double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i) p[i] = draw();
  }
  return t;
}

}  // namespace

double Generator::uniform(double low, double high) {
  return std::uniform_real_distribution<double>(low, high)(engine_);
}

double Generator::normal(double mean, double stddev) {
  return std::normal_distribution<double>(mean, stddev)(engine_);
}

bool Generator::bernoulli(double p) { return std::bernoulli_distribution(p)(engine_); }

Tensor Generator::get_state() const {
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os << engine_;
  const std::string text = os.str();
  Tensor state = Tensor::empty({static_cast<int64_t>(text.size())}, DType::kUInt8);
  std::memcpy(state.raw_data(), text.data(), text.size());
  return state;
}

void Generator::set_state(const Tensor& state) {
  QAT_CHECK(state.defined() && state.dtype() == DType::kUInt8 && state.dim() == 1,
            "Generator::set_state: expected a 1-d uint8 tensor from get_state(), got ",
            state.defined() ? state.to_string() : std::string("an undefined tensor"));
  const std::string text(static_cast<const char*>(state.raw_data()), state.nbytes());
  std::istringstream is(text);
  is.imbue(std::locale::classic());
  std::mt19937_64 engine;
  is >> engine;
  QAT_CHECK(!is.fail() && (is >> std::ws).eof(),
            "Generator::set_state: not a std::mt19937_64 state (", text.size(),
            " bytes that do not parse as 312 words and a position)");
  engine_ = engine;
}

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

Tensor get_rng_state() { return default_generator().get_state(); }

void set_rng_state(const Tensor& state) { default_generator().set_state(state); }

Tensor& uniform_(Tensor& t, double low, double high, Generator& gen) {
  std::uniform_real_distribution<double> dist(low, high);
  return fill_random(t, [&] { return dist(gen.engine()); });
}

Tensor& normal_(Tensor& t, double mean, double stddev, Generator& gen) {
  // One distribution for the whole fill: it produces values in pairs (Marsaglia), so a fresh
  // one per element would throw half of the draws away.
  std::normal_distribution<double> dist(mean, stddev);
  return fill_random(t, [&] { return dist(gen.engine()); });
}

}  // namespace qat
