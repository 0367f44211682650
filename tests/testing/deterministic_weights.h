#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>

#include "core/check.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "nn/module.h"

// Deterministic weights and inputs for the zoo parity fixtures: both this header and
// tests/golden/gen_zoo_fixtures.py compute them from a formula, so no weight files are committed.
// Keep the two in sync; the script's docstring explains the choice of every constant.
//
//   u(stream, i) = splitmix64 finalizer of z = (stream << 32) | i, mapped to (-1, 1):
//       z += 0x9E3779B97F4A7C15
//       z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//       z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//       z ^= z >> 31
//       u = ((z >> 40) + 0.5) / 2^24 * 2 - 1     (exact in double)
//
//   state_dict entry k (0-based, state_dict order), element i (row-major), from u = u(k, i),
//   computed in double and rounded to float:
//       num_batches_tracked                     0
//       running_mean                            0.1 u
//       running_var                             1 + 0.5 |u|
//       weight with >= 2 dims (conv, linear)    sqrt(3 / fan_in) u,  fan_in = numel / size(0)
//       weight with 1 dim, of a BatchNorm       1 + 0.1 u
//       bias of a BatchNorm                     2 + 0.1 u
//       any other bias                          0.1 u
//   "Of a BatchNorm": the state_dict also holds "<same prefix>running_mean". Any other entry
//   throws qat::Error.
//
//   deterministic_input(shape): element i is u(kInputStream = 1000000, i).
namespace qat::testing {

inline constexpr uint64_t kInputStream = 1000000;
inline constexpr double kBatchNormBias = 2.0;

// u(stream, i) above: uniform in (-1, 1), a multiple of 2^-24 plus 2^-24.
inline double deterministic_uniform(uint64_t stream, uint64_t i) {
  QAT_CHECK(stream < (uint64_t{1} << 32) && i < (uint64_t{1} << 32),
            "deterministic_uniform: stream ", stream, " and index ", i, " must be < 2^32");
  uint64_t z = (stream << 32) | i;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (static_cast<double>(z >> 40) + 0.5) / 16777216.0 * 2.0 - 1.0;
}

// Overwrites every state_dict() entry of `model` in place with the values above (parameters,
// BN running statistics and num_batches_tracked alike). Gradients and autograd state are
// untouched.
inline void fill_deterministic(nn::Module& model) {
  const nn::StateDict sd = model.state_dict();
  std::unordered_set<std::string> keys;
  for (const auto& entry : sd) keys.insert(entry.first);
  for (size_t k = 0; k < sd.size(); ++k) {
    const std::string& key = sd[k].first;
    Tensor t = sd[k].second;
    const size_t dot = key.rfind('.');
    const std::string leaf = dot == std::string::npos ? key : key.substr(dot + 1);
    const std::string prefix = key.substr(0, key.size() - leaf.size());
    const bool of_batch_norm = keys.count(prefix + "running_mean") > 0;
    const int64_t n = t.numel();
    if (leaf == "num_batches_tracked") {
      QAT_CHECK(t.dtype() == DType::kInt64, "fill_deterministic: '", key, "' is ",
                dtype_name(t.dtype()), ", expected int64");
      t.fill_(0.0);
      continue;
    }
    QAT_CHECK(t.dtype() == DType::kFloat32, "fill_deterministic: '", key, "' is ",
              dtype_name(t.dtype()), ", expected float32");
    double scale = 0, offset = 0;
    bool absolute = false;
    if (leaf == "running_mean") {
      scale = 0.1;
    } else if (leaf == "running_var") {
      scale = 0.5, offset = 1.0, absolute = true;
    } else if (leaf == "weight" && t.dim() >= 2) {
      scale = std::sqrt(3.0 / static_cast<double>(n / t.size(0)));
    } else if (leaf == "weight" && t.dim() == 1 && of_batch_norm) {
      scale = 0.1, offset = 1.0;
    } else if (leaf == "bias" && of_batch_norm) {
      scale = 0.1, offset = kBatchNormBias;
    } else if (leaf == "bias") {
      scale = 0.1;
    } else {
      QAT_CHECK(false, "fill_deterministic: no rule for state_dict entry '", key, "' of shape ",
                shape_str(t.shape()));
    }
    float* data = t.data<float>();  // [numel], row-major
    for (int64_t i = 0; i < n; ++i) {
      const double u = deterministic_uniform(k, static_cast<uint64_t>(i));
      data[i] = static_cast<float>(offset + scale * (absolute ? std::fabs(u) : u));
    }
  }
}

// A float32 tensor of `shape` with element i = u(kInputStream, i).
inline Tensor deterministic_input(const Shape& shape) {
  Tensor x = Tensor::empty(shape);
  float* data = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    data[i] = static_cast<float>(deterministic_uniform(kInputStream, static_cast<uint64_t>(i)));
  }
  return x;
}

}  // namespace qat::testing
