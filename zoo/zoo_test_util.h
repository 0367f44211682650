#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "core/ops/loss.h"
#include "nn/module.h"
#include "nn/optim.h"

// Helpers shared by the zoo model tests; header-only, listed in their srcs.
namespace qat::zoo::test_util {

// A state_dict entry as tests/data/<model>_keys.txt writes it: "<key> <dtype> <d0,d1,...>",
// with the safetensors dtype name and "-" for a 0-d tensor.
inline std::string key_line(const std::string& key, const Tensor& tensor) {
  std::string dims;
  for (int64_t d : tensor.shape()) dims += (dims.empty() ? "" : ",") + std::to_string(d);
  const DType dtype = tensor.dtype();
  const char* dtype_str = dtype == DType::kFloat32 ? "F32" : dtype == DType::kInt64 ? "I64" : "?";
  return key + " " + dtype_str + " " + (dims.empty() ? "-" : dims);
}

// Compares the model's state_dict with torchvision's, dumped to tests/data/<name>_keys.txt by
// tests/golden/gen_zoo_fixtures.py; reports the first entry that differs.
inline void expect_torchvision_keys(const nn::Module& model, const std::string& name) {
  const std::string path = "tests/data/" + name + "_keys.txt";
  std::ifstream file(path);
  ASSERT_TRUE(file) << "cannot open " << path;
  std::vector<std::string> expected;
  for (std::string line; std::getline(file, line);) expected.push_back(line);
  const nn::StateDict sd = model.state_dict();
  ASSERT_EQ(sd.size(), expected.size()) << name;
  for (size_t i = 0; i < sd.size(); ++i) {
    ASSERT_EQ(key_line(sd[i].first, sd[i].second), expected[i]) << name << " entry " << i;
  }
}

inline int64_t count_parameters(const nn::Module& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) n += p.numel();
  return n;
}

// Sample mean and standard deviation of a tensor's elements.
inline std::pair<double, double> mean_std(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  double sum = 0, sum_sq = 0;
  for (double x : v) sum += x;
  const double mean = sum / v.size();
  for (double x : v) sum_sq += (x - mean) * (x - mean);
  return {mean, std::sqrt(sum_sq / v.size())};
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector<double>()) m = std::max(m, std::fabs(x));
  return m;
}

// Checks that t looks like N(0, std^2): mean and std within ~5 standard errors.
inline void expect_normal(const std::string& name, const Tensor& t, double std) {
  const auto [sample_mean, sample_std] = mean_std(t);
  const double n = static_cast<double>(t.numel());
  EXPECT_NEAR(sample_mean, 0.0, 5 * std / std::sqrt(n)) << name;
  EXPECT_NEAR(sample_std / std, 1.0, 5 / std::sqrt(2 * n)) << name;
}

// 8 single-channel 32x32 images of 4 classes; class k is a bright horizontal band at rows
// [8k, 8k + 8) plus a little noise, so the network can fit it within a few steps.
inline std::pair<Tensor, Tensor> band_batch() {
  constexpr int64_t kN = 8, kClasses = 4, kSize = 32;
  Generator gen(11);
  Tensor images = Tensor::zeros({kN, 1, kSize, kSize});
  qat::normal_(images, 0.0, 0.1, gen);
  std::vector<int64_t> labels;
  float* px = images.data<float>();
  for (int64_t i = 0; i < kN; ++i) {
    const int64_t label = i % kClasses;
    labels.push_back(label);
    for (int64_t row = 8 * label; row < 8 * label + 8; ++row) {
      for (int64_t col = 0; col < kSize; ++col) px[(i * kSize + row) * kSize + col] += 1.0f;
    }
  }
  return {images, Tensor::from_vector(labels, {kN})};
}

// One plain-SGD step (lr 0.1) on two random 3x64x64 images: every parameter gets a non-zero
// gradient of its own shape, and the last parameter (the classifier bias) moves by -lr * grad.
inline void expect_sgd_step_updates_every_parameter(nn::Module& model) {
  const std::vector<Tensor> params = model.parameters();
  const Tensor bias_before = params.back().clone();
  nn::SGD optimizer(params, nn::SGDOptions(0.1));
  Tensor images = Tensor::zeros({2, 3, 64, 64});
  qat::normal_(images, 0.0, 1.0);
  Tensor loss = ops::cross_entropy(model.forward(images),
                                   Tensor::from_vector(std::vector<int64_t>{3, 7}, {2}));
  ASSERT_TRUE(std::isfinite(loss.item()));
  loss.backward();
  optimizer.step();
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_TRUE(params[i].grad().defined()) << "parameter " << i;
    EXPECT_GT(max_abs(params[i].grad()), 0.0) << "parameter " << i;
    EXPECT_EQ(params[i].grad().shape(), params[i].shape());
  }
  const std::vector<double> b0 = bias_before.to_vector<double>();
  const std::vector<double> b1 = params.back().to_vector<double>();
  const std::vector<double> g = params.back().grad().to_vector<double>();
  for (size_t j = 0; j < b0.size(); ++j) EXPECT_NEAR(b1[j], b0[j] - 0.1 * g[j], 1e-6);
}

}  // namespace qat::zoo::test_util
