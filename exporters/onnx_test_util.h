#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/pool.h"
#include "core/ops/shape_ops.h"
#include "core/random.h"
#include "graph/quantizable_model.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/pooling.h"
#include "quant/conv_bn_relu.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"
#include "tests/testing/calibration.h"
#include "tests/testing/deterministic_weights.h"
#include "zoo/registry.h"

// Models and helpers shared by the ONNX export tests (header-only, listed in their srcs).
namespace qat::exporters::test_util {

// A zoo model under test: small_input (32x32 stem), 10 classes, deterministic weights.
struct ZooCase {
  std::string label;             // test name
  std::string model;             // zoo name
  bool transform_input = false;  // googlenet only
};

inline std::vector<ZooCase> zoo_cases() {
  return {{"resnet18", "resnet18"},         {"resnet50", "resnet50"},
          {"mobilenet_v2", "mobilenet_v2"}, {"shufflenet_v2_x1_0", "shufflenet_v2_x1_0"},
          {"googlenet", "googlenet"},       {"googlenet_transform_input", "googlenet", true}};
}

inline std::string case_name(const ::testing::TestParamInfo<ZooCase>& info) {
  return info.param.label;
}

inline std::shared_ptr<nn::Module> zoo_model(const ZooCase& c) {
  zoo::ModelConfig config;
  config.name = c.model;
  config.small_input = true;
  config.num_classes = 10;
  if (c.model == "googlenet") {
    config.transform_input = c.transform_input;
    config.aux_logits = false;
  }
  std::shared_ptr<nn::Module> model = zoo::create_model(config);
  testing::fill_deterministic(*model);
  return model;
}

using testing::random_input;

// The QAT life cycle up to deployment for the preset `target` ("tensorrt", "fbgemm", ...):
// prepare, a few calibration forwards in train mode (observers on, BN on batch statistics),
// then observers and BN frozen, eval.
inline std::shared_ptr<graph::QuantizableModel> calibrated(std::shared_ptr<nn::Module> model,
                                                           const std::string& target) {
  auto qm = std::make_shared<graph::QuantizableModel>(std::move(model), Shape{2, 3, 32, 32},
                                                      quant::QConfig::preset(target));
  qm->train();
  manual_seed(0);  // train-mode dropout draws from the default generator: same scales every run
  {
    NoGradGuard no_grad;
    for (uint64_t seed = 1; seed <= 3; ++seed) qm->forward(random_input({4, 3, 32, 32}, seed));
  }
  quant::disable_observer(*qm);
  quant::freeze_bn_stats(*qm);
  qm->eval();
  return qm;
}

inline std::shared_ptr<graph::QuantizableModel> calibrated_tensorrt(
    std::shared_ptr<nn::Module> model) {
  return calibrated(std::move(model), "tensorrt");
}

inline onnx::ModelProto parse_model(const std::string& bytes) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(bytes));
  return model;
}

// A user model with the functional ops the zoo does not use, for the float export:
// [N, 3, 32, 32] -> [N, 10] log-probabilities.
class OpsNet : public nn::Module {
 public:
  OpsNet() {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(3, 8, 3));  // -> 30x30
    pool = register_module(
        "pool", std::make_shared<nn::MaxPool2d>(
                    3, nn::MaxPool2dOptions().stride(2).padding(1).ceil_mode(true)));  // -> 16x16
    avg = register_module("avg",
                          std::make_shared<nn::AvgPool2d>(
                              3, nn::AvgPool2dOptions().stride(2).ceil_mode(true).count_include_pad(
                                     false)));  // -> 8x8
    act = register_module("act", std::make_shared<nn::ReLU6>());
    fc = register_module("fc", std::make_shared<nn::Linear>(8 * 5 * 5, 10));
  }
  std::string type_name() const override { return "OpsNet"; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::AvgPool2d> avg;
  std::shared_ptr<nn::ReLU6> act;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& input) override {
    Tensor x = avg->forward(pool->forward(conv->forward(input)));  // [N, 8, 8, 8]
    x = act->forward(ops::mul(x, 3.0));
    const std::vector<Tensor> parts = ops::split(x, {3, 5}, 1);
    x = ops::cat({ops::neg(parts[1]), ops::clamp(parts[0], -1.0, 2.5)}, -3);
    x = ops::sub(x, ops::div(x, ops::add(ops::relu(x), 2.0)));
    x = ops::permute(x, {0, 2, 3, 1});  // [N, 8, 8, 8] NHWC
    x = ops::transpose(x, 1, 3);        // [N, C, W, H]
    x = ops::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}, {1, 1}, /*ceil_mode=*/true);  // [N, 8, 5, 5]
    x = ops::add(x, ops::mean(x, {2, 3}, /*keepdim=*/true));
    x = ops::sub(x, ops::sum(x, {1}, /*keepdim=*/true));
    x = ops::reshape(x, {-1, 8 * 5 * 5});
    return ops::log_softmax(fc->forward(x), 1);
  }
};

}  // namespace qat::exporters::test_util
