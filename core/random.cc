#include "core/random.h"

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

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

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
