#include "nn/data/data_loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <utility>

namespace qat::nn::data {
namespace {

int64_t count_batches(const Dataset* dataset, const DataLoaderOptions& options) {
  QAT_CHECK(dataset != nullptr, "DataLoader: dataset is null");
  QAT_CHECK(options.batch_size() > 0, "DataLoader: batch_size must be positive, got ",
            options.batch_size());
  QAT_CHECK(options.num_workers() > 0, "DataLoader: num_workers must be positive, got ",
            options.num_workers());
  QAT_CHECK(options.num_prefetch() > 0, "DataLoader: num_prefetch must be positive, got ",
            options.num_prefetch());
  const int64_t n = static_cast<int64_t>(dataset->size()), b = options.batch_size();
  return options.drop_last() ? n / b : (n + b - 1) / b;
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)),
      options_(std::move(options)),
      transforms_(options_.transforms()),
      num_batches_(count_batches(dataset_.get(), options_)) {}

DataLoader::~DataLoader() { stop_workers(); }

std::vector<size_t> DataLoader::epoch_order(int64_t epoch) const {
  std::vector<size_t> order(dataset_->size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (!options_.shuffle()) return order;
  // Fisher-Yates by hand: std::shuffle's algorithm differs between standard libraries, and the
  // order must not. Stream 0 of the epoch's seed; batch k's transforms use stream k + 1.
  std::mt19937_64 rng(derive_seed(derive_seed(options_.seed(), epoch), 0));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  QAT_CHECK(first_batch >= 0 && first_batch <= num_batches_,
            "DataLoader::start_epoch: first_batch ", first_batch, " is outside [0, ", num_batches_,
            "] (batches per epoch: ", num_batches_, ")");
  stop_workers();
  epoch_ = epoch;
  order_ = epoch_order(epoch);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    next_to_build_ = first_batch;
    next_to_return_ = first_batch;
    done_.clear();
    stopping_ = false;
  }
  in_epoch_ = true;
  for (int64_t i = 0; i < options_.num_workers(); ++i) {
    workers_.emplace_back(&DataLoader::worker_loop, this);
  }
}

std::optional<Batch> DataLoader::next() {
  QAT_CHECK(in_epoch_, "DataLoader::next: no epoch in progress; call start_epoch(epoch) first");
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (next_to_return_ == num_batches_) return std::nullopt;
    ready_.wait(lock, [this] { return done_.count(next_to_return_) > 0; });
    auto it = done_.find(next_to_return_);
    slot = std::move(it->second);
    done_.erase(it);
    ++next_to_return_;
  }
  room_.notify_all();
  if (slot.error) {
    stop_workers();
    in_epoch_ = false;
    std::rethrow_exception(slot.error);
  }
  return std::move(slot.batch);
}

Batch DataLoader::make_batch(int64_t index) const {
  const size_t begin = static_cast<size_t>(index * options_.batch_size());
  const size_t end = std::min(begin + static_cast<size_t>(options_.batch_size()), order_.size());
  const int64_t B = static_cast<int64_t>(end - begin);
  Generator gen(derive_seed(derive_seed(options_.seed(), epoch_), index + 1));
  Batch batch;
  batch.labels = Tensor::empty({B}, DType::kInt64);
  for (int64_t i = 0; i < B; ++i) {
    const Example example = dataset_->get(order_[begin + i]);
    const Tensor image = transforms_(example.image, gen);
    QAT_CHECK(image.dtype() == DType::kFloat32, "DataLoader: images must be float32, got ",
              dtype_name(image.dtype()), " for example ", order_[begin + i]);
    if (i == 0) {
      Shape shape = image.shape();
      shape.insert(shape.begin(), B);
      batch.images = Tensor::empty(shape);
    }
    const Shape& expected = batch.images.shape();
    QAT_CHECK(image.dim() + 1 == batch.images.dim() &&
                  std::equal(image.shape().begin(), image.shape().end(), expected.begin() + 1),
              "DataLoader: example ", order_[begin + i], " has image shape ",
              shape_str(image.shape()), " but the batch started with ",
              shape_str(Shape(expected.begin() + 1, expected.end())));
    // Raw copies: loader threads stay out of the OpenMP-parallel Tensor methods.
    std::memcpy(static_cast<char*>(batch.images.raw_data()) + i * image.nbytes(), image.raw_data(),
                image.nbytes());
    batch.labels.data<int64_t>()[i] = example.label;
  }
  return batch;
}

void DataLoader::worker_loop() {
  for (;;) {
    int64_t index;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      room_.wait(lock, [this] {
        return stopping_ || next_to_build_ >= num_batches_ ||
               next_to_build_ < next_to_return_ + options_.num_prefetch();
      });
      if (stopping_ || next_to_build_ >= num_batches_) return;
      index = next_to_build_++;
    }
    Slot slot;
    try {
      slot.batch = make_batch(index);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(index, std::move(slot));
    }
    ready_.notify_one();
  }
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  room_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
}

}  // namespace qat::nn::data
