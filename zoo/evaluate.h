#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/tensor.h"
#include "graph/int_model.h"
#include "nn/data/data_loader.h"
#include "nn/module.h"

// Accuracy of a classifier over a data loader, for every form a model takes on its way to
// deployment: the float or fake-quant module, the simulated integer model, and the exported ONNX
// (in ONNX Runtime) and TNN files. `qat eval` prints them side by side; training evaluates with
// them after each epoch.
namespace qat::zoo {

// Accuracy of a classifier over a data loader.
struct EvalResult {
  int64_t images = 0;
  double top1 = 0;  // percent
  double top5 = 0;  // percent; top-k with k = min(5, classes)
  double loss = 0;  // mean cross-entropy (nats per image)
};

// The number of rows of logits [N, K] whose label is among the k largest logits (ties: lower
// index first, as torch.topk).
int64_t count_top_k(const Tensor& logits, const Tensor& labels, int64_t k);

// Logits [N, K] for one batch of images [N, C, H, W].
using LogitsFunction = std::function<Tensor(const Tensor& images)>;

// Called after each batch: batches done, batches planned, images so far.
using EvalProgress = std::function<void(int64_t done, int64_t total, int64_t images)>;

// Runs `loader` from the start of its epoch 0 (start_epoch(0)), up to max_batches batches
// (<= 0: all), without autograd.
EvalResult evaluate(const LogitsFunction& logits, nn::data::DataLoader& loader,
                    int64_t max_batches = 0, const EvalProgress& progress = nullptr);

// A module (float model or QuantizableModel) in eval mode; its training flag is restored
// afterwards.
EvalResult evaluate_module(nn::Module& model, nn::data::DataLoader& loader, int64_t max_batches = 0,
                           const EvalProgress& progress = nullptr);

// graph::simulate() of an integer model.
EvalResult evaluate_int_model(const graph::IntModel& model, const graph::SimulateOptions& options,
                              nn::data::DataLoader& loader, int64_t max_batches = 0,
                              const EvalProgress& progress = nullptr);

// An exported ONNX file run in ONNX Runtime (Node, optimizations off, one thread). Throws
// qat::Error with the install command when ORT is not installed.
EvalResult evaluate_onnx_runtime(const std::string& onnx_path, nn::data::DataLoader& loader,
                                 int64_t max_batches = 0, const EvalProgress& progress = nullptr);

// Whether ONNX Runtime for Node is installed; when not, *reason says what is missing and how to
// install it.
bool onnx_runtime_available(std::string* reason = nullptr);

// The TNN files <prefix>.tnnproto/.tnnmodel read back (exporters::read_tnn) and run: int8 nets
// through tnn_int_model + simulate, float nets however qat verify runs them.
EvalResult evaluate_tnn_files(const std::string& prefix, nn::data::DataLoader& loader,
                              int64_t max_batches = 0, const EvalProgress& progress = nullptr);

}  // namespace qat::zoo
