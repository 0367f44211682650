#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/data/dataset.h"
#include "nn/data/transforms.h"

namespace qat::nn::data {

// One batch: images [B, C, H, W] float32 and labels [B] int64.
struct Batch {
  Tensor images;
  Tensor labels;
};

struct DataLoaderOptions {
  QAT_ARG(int64_t, batch_size) = 1;
  QAT_ARG(bool, shuffle) = false;
  QAT_ARG(uint64_t, seed) = 0;  // drives the shuffle order and the random transforms
  QAT_ARG(bool, drop_last) = false;
  QAT_ARG(std::vector<Transform>, transforms) = {};  // applied to each image, in order
  QAT_ARG(int64_t, num_workers) = 1;                 // background threads building batches
  QAT_ARG(int64_t, num_prefetch) = 2;                // batches built ahead of the consumer, at most
};

// Batches a Dataset on background threads, as torch.utils.data.DataLoader:
//   DataLoader loader(dataset, DataLoaderOptions().batch_size(64).shuffle(true).seed(1));
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     while (std::optional<Batch> batch = loader.next()) train_step(batch->images, batch->labels);
//   }
// The order of epoch e and every random transform are functions of (seed, e) alone: batch k
// uses a generator seeded from (seed, e, k), so results do not depend on thread timing and a
// resumed run replays the same batches, also from the middle of an epoch (start_epoch(e, k)).
// Images of one batch must share a shape.
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();  // stops and joins the workers, also mid-epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts epoch `epoch` at batch `first_batch`, abandoning any epoch in progress. Batches
  // before first_batch are skipped without being built (nothing is read), and the rest are
  // exactly those an uninterrupted epoch would return from there: resuming mid-epoch after
  // first_batch batches were consumed. first_batch == num_batches() gives an exhausted epoch.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch, or nullopt once it is exhausted. If building this batch
  // threw (in the dataset or a transform), rethrows that exception and ends the epoch.
  std::optional<Batch> next();
  // Batches per epoch, as len(loader).
  int64_t num_batches() const { return num_batches_; }

 private:
  // A finished batch, or the exception that stopped it.
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  std::vector<size_t> epoch_order(int64_t epoch) const;
  Batch make_batch(int64_t index) const;  // on a worker thread
  void worker_loop();
  void stop_workers();

  const std::shared_ptr<const Dataset> dataset_;
  const DataLoaderOptions options_;
  const Compose transforms_;
  const int64_t num_batches_;

  // Set by start_epoch while no worker runs; read-only for the workers.
  int64_t epoch_ = 0;
  std::vector<size_t> order_;  // dataset indices of the epoch, in batch order
  bool in_epoch_ = false;      // touched by the consumer thread only

  std::mutex mutex_;               // guards everything below
  std::condition_variable room_;   // workers wait until they may build further ahead
  std::condition_variable ready_;  // the consumer waits for its next batch
  int64_t next_to_build_ = 0;
  int64_t next_to_return_ = 0;
  std::map<int64_t, Slot> done_;  // finished batches not yet returned, by index
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace qat::nn::data
