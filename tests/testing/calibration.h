#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "core/autograd.h"
#include "core/random.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "graph/quantizable_model.h"
#include "nn/module.h"
#include "quant/conv_bn_relu.h"
#include "quant/qat_module.h"
#include "quant/qconfig.h"
#include "quant/qparams.h"

// Random inputs, calibrated QAT models and TNN qparams for the convert / export tests.
namespace qat::testing {

// x ~ N(0, 1) of `shape`, drawn from Generator(seed).
inline Tensor random_input(const Shape& shape, uint64_t seed) {
  Tensor x = Tensor::empty(shape);
  Generator gen(seed);
  normal_(x, 0.0, 1.0, gen);
  return x;
}

// A QuantizableModel of `model` for `qconfig`, calibrated with `batches` train-mode forwards of
// random_input(shape, 1), ..., random_input(shape, batches) (observers on, BN on batch
// statistics), then observers and BN frozen and eval mode: what convert() and the exporters take.
inline std::shared_ptr<graph::QuantizableModel> calibrated(std::shared_ptr<nn::Module> model,
                                                           const Shape& shape,
                                                           const quant::QConfig& qconfig,
                                                           uint64_t batches) {
  auto qm = std::make_shared<graph::QuantizableModel>(std::move(model), shape, qconfig);
  qm->train();
  {
    NoGradGuard no_grad;
    for (uint64_t seed = 1; seed <= batches; ++seed) qm->forward(random_input(shape, seed));
  }
  quant::disable_observer(*qm);
  quant::freeze_bn_stats(*qm);
  qm->eval();
  return qm;
}

// Per-tensor qparams as TNN has them: `scale`, zero point 0, rounding half away from zero.
inline quant::QParams tnn_per_tensor(float scale) {
  quant::QParams q;
  q.scale = Tensor::from_vector<float>({scale}, {1});
  q.zero_point = Tensor::from_vector<int32_t>({0}, {1});
  q.rounding = RoundingMode::kHalfAway;
  return q;
}

}  // namespace qat::testing
