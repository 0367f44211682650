#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"

// Small user-written models for the graph tests (header-only, listed in the tests' srcs).
namespace qat::graph::test_models {

// conv -> bn -> relu, plus the input, then the same relu again (BasicBlock's pattern).
class Block : public nn::Module {
 public:
  explicit Block(int64_t channels) {
    conv = register_module(
        "conv", std::make_shared<nn::Conv2d>(channels, channels, 3,
                                             nn::Conv2dOptions().padding(1).bias(false)));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(channels));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
  }
  std::string type_name() const override { return "Block"; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::ReLU> relu;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    return relu->forward(ops::add(relu->forward(bn->forward(conv->forward(x))), x));
  }
};

// [N, 1, 8, 8] -> [N, 3], with functional ops at the top level: chunk, cat (twice), a scalar
// mul, max_pool2d and flatten.
class TinyNet : public nn::Module {
 public:
  TinyNet() {
    stem = register_module("stem",
                           std::make_shared<nn::Conv2d>(1, 4, 3, nn::Conv2dOptions().padding(1)));
    block = register_module("block", std::make_shared<Block>(4));
    fc = register_module("fc", std::make_shared<nn::Linear>(8 * 4 * 4, 3));
  }
  std::string type_name() const override { return "TinyNet"; }

  std::shared_ptr<nn::Conv2d> stem;
  std::shared_ptr<Block> block;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& input) override {
    const std::vector<Tensor> halves = ops::chunk(block->forward(stem->forward(input)), 2, 1);
    Tensor x = ops::cat({halves[1], halves[0]}, 1);  // [N, 4, 8, 8]
    x = ops::cat({x, ops::mul(x, 0.5)}, 1);          // [N, 8, 8, 8]
    return fc->forward(ops::flatten(ops::max_pool2d(x, {2, 2}), 1));
  }
};

}  // namespace qat::graph::test_models
