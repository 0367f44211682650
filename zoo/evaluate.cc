#include "zoo/evaluate.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/shape.h"
#include "exporters/tnn_net.h"
#include "exporters/tnn_reader.h"
#include "zoo/onnx_runtime.h"

namespace qat::zoo {
namespace {

// What the ORT runner says it is for in its errors ("... needs ONNX Runtime for Node").
const char kOrtUser[] = "evaluation in ONNX Runtime";
// Input bytes of the batches one node process runs: one process (and one session set-up) for a
// whole 10,000-image 28x28 test set, bounded memory for large images.
constexpr size_t kOrtChunkBytes = size_t{64} << 20;

// Sum over the rows of logits [N, K] of -log softmax(row)[label], in double.
double cross_entropy_sum(const Tensor& logits, const Tensor& labels) {
  const std::vector<float> x = logits.to_vector<float>();
  const std::vector<int64_t> y = labels.to_vector<int64_t>();
  const int64_t classes = logits.size(1);
  double sum = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const float* row = x.data() + i * classes;
    const double max = *std::max_element(row, row + classes);
    double exp_sum = 0;
    for (int64_t j = 0; j < classes; ++j) exp_sum += std::exp(row[j] - max);
    sum += max + std::log(exp_sum) - row[y[i]];
  }
  return sum;
}

// The counts over the batches evaluated so far.
class Tally {
 public:
  void add(const Tensor& logits, const Tensor& labels) {
    const int64_t n = labels.numel();
    QAT_CHECK(logits.dim() == 2 && logits.size(0) == n && logits.size(1) > 0,
              "evaluate: expected logits [", n, ", classes] for a batch of ", n, " labels, got ",
              shape_str(logits.shape()));
    top1_ += count_top_k(logits, labels, 1);
    top5_ += count_top_k(logits, labels, 5);
    loss_ += cross_entropy_sum(logits, labels);
    images_ += n;
  }
  int64_t images() const { return images_; }

  EvalResult result() const {
    EvalResult r;
    r.images = images_;
    if (images_ == 0) return r;
    r.top1 = 100.0 * static_cast<double>(top1_) / static_cast<double>(images_);
    r.top5 = 100.0 * static_cast<double>(top5_) / static_cast<double>(images_);
    r.loss = loss_ / static_cast<double>(images_);
    return r;
  }

 private:
  int64_t images_ = 0, top1_ = 0, top5_ = 0;
  double loss_ = 0;
};

int64_t planned_batches(const nn::data::DataLoader& loader, int64_t max_batches) {
  return max_batches > 0 ? std::min(max_batches, loader.num_batches()) : loader.num_batches();
}

// Sets eval mode, and the training flag back on scope exit (also when evaluation throws).
class EvalModeGuard {
 public:
  explicit EvalModeGuard(nn::Module& model) : model_(model), training_(model.is_training()) {
    model_.eval();
  }
  ~EvalModeGuard() { model_.train(training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  nn::Module& model_;
  bool training_;
};

}  // namespace

int64_t count_top_k(const Tensor& logits, const Tensor& labels, int64_t k) {
  QAT_CHECK(logits.dim() == 2, "count_top_k: expected logits [N, K], got ",
            shape_str(logits.shape()));
  const int64_t n = logits.size(0), classes = logits.size(1);
  QAT_CHECK(labels.dim() == 1 && labels.size(0) == n, "count_top_k: expected labels [", n,
            "], got ", shape_str(labels.shape()));
  QAT_CHECK(k >= 1, "count_top_k: k must be >= 1, got ", k);
  const std::vector<float> x = logits.to_vector<float>();
  const std::vector<int64_t> y = labels.to_vector<int64_t>();
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    QAT_CHECK(y[i] >= 0 && y[i] < classes, "count_top_k: label ", y[i], " of row ", i,
              " outside [0, ", classes, ")");
    const float* row = x.data() + i * classes;
    const float target = row[y[i]];
    // The label's rank: classes ahead of it, with equal logits ordered by index (torch.topk).
    int64_t ahead = 0;
    for (int64_t j = 0; j < classes; ++j)
      ahead += row[j] > target || (row[j] == target && j < y[i]);
    hits += ahead < k ? 1 : 0;
  }
  return hits;
}

EvalResult evaluate(const LogitsFunction& logits, nn::data::DataLoader& loader, int64_t max_batches,
                    const EvalProgress& progress) {
  NoGradGuard no_grad;
  loader.start_epoch(0);
  const int64_t total = planned_batches(loader, max_batches);
  Tally tally;
  for (int64_t done = 0; done < total;) {
    const std::optional<nn::data::Batch> batch = loader.next();
    if (!batch) break;
    tally.add(logits(batch->images), batch->labels);
    ++done;
    if (progress) progress(done, total, tally.images());
  }
  return tally.result();
}

EvalResult evaluate_module(nn::Module& model, nn::data::DataLoader& loader, int64_t max_batches,
                           const EvalProgress& progress) {
  const EvalModeGuard eval_mode(model);
  return evaluate([&model](const Tensor& x) { return model.forward(x); }, loader, max_batches,
                  progress);
}

EvalResult evaluate_int_model(const graph::IntModel& model, const graph::SimulateOptions& options,
                              nn::data::DataLoader& loader, int64_t max_batches,
                              const EvalProgress& progress) {
  return evaluate([&](const Tensor& x) { return graph::simulate(model, x, options); }, loader,
                  max_batches, progress);
}

EvalResult evaluate_onnx_runtime(const std::string& onnx_path, nn::data::DataLoader& loader,
                                 int64_t max_batches, const EvalProgress& progress) {
  loader.start_epoch(0);
  const int64_t total = planned_batches(loader, max_batches);
  Tally tally;
  int64_t done = 0;
  bool exhausted = false;
  while (done < total && !exhausted) {
    // One chunk: batches up to kOrtChunkBytes of input, run by one node process.
    std::vector<nn::data::Batch> chunk;
    std::vector<Tensor> images;
    size_t bytes = 0;
    while (done + static_cast<int64_t>(chunk.size()) < total && bytes < kOrtChunkBytes) {
      std::optional<nn::data::Batch> batch = loader.next();
      if (!batch) {
        exhausted = true;
        break;
      }
      bytes += batch->images.nbytes();
      images.push_back(batch->images);
      chunk.push_back(std::move(*batch));
    }
    if (chunk.empty()) break;
    const std::vector<Tensor> logits = run_onnx_runtime(onnx_path, images, kOrtUser);
    for (size_t i = 0; i < chunk.size(); ++i) {
      tally.add(logits[i], chunk[i].labels);
      ++done;
      if (progress) progress(done, total, tally.images());
    }
  }
  return tally.result();
}

bool onnx_runtime_available(std::string* reason) {
  const std::string missing = ort_missing(kOrtUser);
  if (reason != nullptr) *reason = missing;
  return missing.empty();
}

EvalResult evaluate_tnn_files(const std::string& prefix, nn::data::DataLoader& loader,
                              int64_t max_batches, const EvalProgress& progress) {
  const exporters::TnnNet net = exporters::read_tnn(prefix);
  const bool int8 = std::any_of(net.layers.begin(), net.layers.end(), [](const auto& layer) {
    return layer.type.rfind("Quantized", 0) == 0;
  });
  if (int8) {
    const graph::IntModel model = exporters::tnn_int_model(net);
    return evaluate_int_model(model, graph::SimulateOptions(), loader, max_batches, progress);
  }
  return evaluate([&net](const Tensor& x) { return exporters::run_tnn_float(net, x); }, loader,
                  max_batches, progress);
}

}  // namespace qat::zoo
