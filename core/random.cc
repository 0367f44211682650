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
  return fill_random(t, [&] { return gen.uniform(low, high); });
}

Tensor& normal_(Tensor& t, double mean, double stddev, Generator& gen) {
  return fill_random(t, [&] { return gen.normal(mean, stddev); });
}

}  // namespace qat
