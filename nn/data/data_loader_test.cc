#include "nn/data/data_loader.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "nn/data/test_util.h"

namespace qat::nn::data {
namespace {

using test_util::throws_error_with;
using namespace std::chrono_literals;

// Example i: label i, a [1, 2, 2] image filled with i. Counts get() calls, can throw at one
// index and can be slow.
class IndexDataset : public Dataset {
 public:
  explicit IndexDataset(size_t n, int64_t throw_at = -1,
                        std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : n_(n), throw_at_(throw_at), delay_(delay) {}

  size_t size() const override { return n_; }
  Example get(size_t index) const override {
    ++calls;
    std::this_thread::sleep_for(delay_);
    if (static_cast<int64_t>(index) == throw_at_) {
      throw std::runtime_error("boom at " + std::to_string(index));
    }
    return {Tensor::full({1, 2, 2}, static_cast<double>(index)), static_cast<int64_t>(index)};
  }

  mutable std::atomic<int64_t> calls{0};

 private:
  size_t n_;
  int64_t throw_at_;
  std::chrono::milliseconds delay_;
};

// The labels of every batch of one epoch, in order, checking each batch's layout on the way.
std::vector<int64_t> epoch_labels(DataLoader& loader, int64_t epoch) {
  std::vector<int64_t> labels;
  loader.start_epoch(epoch);
  while (std::optional<Batch> batch = loader.next()) {
    const int64_t B = batch->labels.size(0);
    EXPECT_EQ(batch->images.shape(), (Shape{B, 1, 2, 2}));
    EXPECT_EQ(batch->labels.dtype(), DType::kInt64);
    for (int64_t i = 0; i < B; ++i) {
      const int64_t label = batch->labels.data<int64_t>()[i];
      EXPECT_EQ(batch->images.data<float>()[i * 4], static_cast<float>(label));  // same example
      labels.push_back(label);
    }
  }
  return labels;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

TEST(DataLoader, CoversEveryExampleOncePerEpoch) {
  DataLoader loader(std::make_shared<IndexDataset>(103),
                    DataLoaderOptions().batch_size(10).shuffle(true).seed(5).num_workers(3));
  EXPECT_EQ(loader.num_batches(), 11);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> labels = epoch_labels(loader, epoch);
    EXPECT_NE(labels, iota(103)) << "epoch " << epoch << " was not shuffled";
    std::sort(labels.begin(), labels.end());
    EXPECT_EQ(labels, iota(103)) << "epoch " << epoch;
  }
  EXPECT_FALSE(loader.next().has_value());  // an exhausted epoch stays exhausted
}

TEST(DataLoader, OrderDependsOnlyOnSeedAndEpoch) {
  const auto dataset = std::make_shared<IndexDataset>(50);
  const auto shuffled = [](uint64_t seed) {
    return DataLoaderOptions().batch_size(7).shuffle(true).seed(seed);
  };
  DataLoader a(dataset, shuffled(1)), b(dataset, shuffled(1)), c(dataset, shuffled(2));
  const std::vector<int64_t> a0 = epoch_labels(a, 0);
  EXPECT_EQ(epoch_labels(b, 0), a0);  // same seed and epoch
  EXPECT_NE(epoch_labels(a, 1), a0);  // next epoch
  EXPECT_NE(epoch_labels(c, 0), a0);  // other seed
  EXPECT_EQ(epoch_labels(a, 0), a0);  // replaying epoch 0, as a resumed run does

  DataLoader in_order(dataset, DataLoaderOptions().batch_size(7));
  EXPECT_EQ(epoch_labels(in_order, 0), iota(50));
  EXPECT_EQ(epoch_labels(in_order, 1), iota(50));
}

TEST(DataLoader, DropLastSkipsTheShortBatch) {
  const auto dataset = std::make_shared<IndexDataset>(103);
  DataLoader keep(dataset, DataLoaderOptions().batch_size(10));
  DataLoader drop(dataset, DataLoaderOptions().batch_size(10).drop_last(true));
  EXPECT_EQ(epoch_labels(keep, 0).size(), 103u);
  EXPECT_EQ(drop.num_batches(), 10);
  EXPECT_EQ(epoch_labels(drop, 0), iota(100));

  DataLoader nothing(std::make_shared<IndexDataset>(3),
                     DataLoaderOptions().batch_size(4).drop_last(true));
  nothing.start_epoch(0);
  EXPECT_FALSE(nothing.next().has_value());
}

TEST(DataLoader, RandomTransformsAreReproducibleWhateverTheWorkerCount) {
  const auto dataset = std::make_shared<SyntheticDataset>(40, Shape{2, 5, 5}, 4, /*seed=*/0);
  const auto all_images = [&](uint64_t seed, int64_t num_workers) {
    DataLoader loader(dataset,
                      DataLoaderOptions()
                          .batch_size(6)
                          .shuffle(true)
                          .seed(seed)
                          .transforms({RandomCrop(4, /*padding=*/1), RandomHorizontalFlip()})
                          .num_workers(num_workers)
                          .num_prefetch(num_workers + 1));
    std::vector<float> values;
    loader.start_epoch(3);
    while (std::optional<Batch> batch = loader.next()) {
      EXPECT_EQ(batch->images.size(-1), 4);
      const std::vector<float> v = batch->images.to_vector<float>();
      values.insert(values.end(), v.begin(), v.end());
    }
    return values;
  };
  const std::vector<float> one_worker = all_images(/*seed=*/9, /*num_workers=*/1);
  EXPECT_EQ(all_images(9, 4), one_worker);
  EXPECT_NE(all_images(10, 1), one_worker);
}

TEST(DataLoader, WorkerExceptionReachesTheConsumerAtItsBatch) {
  DataLoader loader(std::make_shared<IndexDataset>(50, /*throw_at=*/25),
                    DataLoaderOptions().batch_size(10).num_workers(2));
  for (int attempt = 0; attempt < 2; ++attempt) {  // a new epoch recovers
    loader.start_epoch(0);
    EXPECT_TRUE(loader.next().has_value());
    EXPECT_TRUE(loader.next().has_value());
    try {
      loader.next();
      ADD_FAILURE() << "expected the dataset's exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "boom at 25");
    }
    EXPECT_TRUE(throws_error_with([&] { loader.next(); }, {"no epoch in progress"}));
  }
}

// Images of different shapes cannot share a batch.
class RaggedDataset : public Dataset {
 public:
  size_t size() const override { return 4; }
  Example get(size_t index) const override {
    return {Tensor::zeros({1, 2, 2 + static_cast<int64_t>(index)}), 0};
  }
};

TEST(DataLoader, RejectsMixedImageShapesInABatch) {
  DataLoader loader(std::make_shared<RaggedDataset>(), DataLoaderOptions().batch_size(2));
  loader.start_epoch(0);
  EXPECT_TRUE(throws_error_with([&] { loader.next(); },
                                {"example 1 has image shape [1, 2, 3]", "started with [1, 2, 2]"}));
}

TEST(DataLoader, PrefetchesAtMostNumPrefetchBatchesAhead) {
  const auto dataset = std::make_shared<IndexDataset>(100);
  DataLoader loader(dataset, DataLoaderOptions().batch_size(4).num_workers(2).num_prefetch(3));
  const auto wait_for_calls = [&](int64_t expected) {
    for (int i = 0; i < 500 && dataset->calls < expected; ++i) std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(50ms);  // time to overshoot, if the bound were broken
    return dataset->calls.load();
  };
  loader.start_epoch(0);
  EXPECT_EQ(wait_for_calls(12), 12);  // 3 batches of 4 before the consumer takes any
  ASSERT_TRUE(loader.next().has_value());
  EXPECT_EQ(wait_for_calls(16), 16);  // one more batch once one is taken
}

TEST(DataLoader, DestructionMidEpochJoinsPromptly) {
  const auto slow = std::make_shared<IndexDataset>(100000, -1, 2ms);
  const auto start = std::chrono::steady_clock::now();
  {
    DataLoader loader(slow, DataLoaderOptions().batch_size(8).num_workers(3).num_prefetch(4));
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
  }
  { DataLoader never_started(slow, DataLoaderOptions().batch_size(8)); }
  {
    DataLoader just_started(slow, DataLoaderOptions().batch_size(8).num_workers(2));
    just_started.start_epoch(0);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_LT(slow->calls, 200);  // the workers stopped instead of finishing the epoch
}

TEST(DataLoader, RestartingAnEpochMidWayStartsFresh) {
  DataLoader loader(std::make_shared<IndexDataset>(30),
                    DataLoaderOptions().batch_size(4).shuffle(true));
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next().has_value());
  std::vector<int64_t> labels = epoch_labels(loader, 1);
  std::sort(labels.begin(), labels.end());
  EXPECT_EQ(labels, iota(30));
}

TEST(DataLoader, RejectsBadOptionsAndMisuse) {
  const auto dataset = std::make_shared<IndexDataset>(10);
  EXPECT_TRUE(throws_error_with([&] { DataLoader(dataset, DataLoaderOptions().batch_size(0)); },
                                {"batch_size must be positive, got 0"}));
  EXPECT_TRUE(throws_error_with([&] { DataLoader(dataset, DataLoaderOptions().num_workers(0)); },
                                {"num_workers must be positive"}));
  EXPECT_TRUE(throws_error_with([&] { DataLoader(dataset, DataLoaderOptions().num_prefetch(0)); },
                                {"num_prefetch must be positive"}));
  EXPECT_TRUE(throws_error_with([] { DataLoader(nullptr); }, {"dataset is null"}));
  DataLoader loader(dataset);
  EXPECT_TRUE(throws_error_with([&] { loader.next(); }, {"call start_epoch(epoch) first"}));
}

// Every batch (images and labels, flattened) from batch `first_batch` on.
std::vector<std::vector<float>> batches_from(DataLoader& loader, int64_t epoch,
                                             int64_t first_batch) {
  std::vector<std::vector<float>> out;
  loader.start_epoch(epoch, first_batch);
  while (std::optional<Batch> batch = loader.next()) {
    std::vector<float> v = batch->images.to_vector<float>();
    for (int64_t label : batch->labels.to_vector<int64_t>()) v.push_back(static_cast<float>(label));
    out.push_back(std::move(v));
  }
  return out;
}

TEST(DataLoader, StartingAtBatchKReplaysTheRestOfTheEpoch) {
  const auto dataset = std::make_shared<SyntheticDataset>(45, Shape{2, 5, 5}, 4, /*seed=*/0);
  const auto options = [](int64_t num_workers, int64_t num_prefetch) {
    return DataLoaderOptions()
        .batch_size(6)
        .shuffle(true)
        .seed(3)
        .transforms({RandomCrop(4, /*padding=*/1), RandomHorizontalFlip()})
        .num_workers(num_workers)
        .num_prefetch(num_prefetch);
  };
  DataLoader reference(dataset, options(1, 1));
  const std::vector<std::vector<float>> full = batches_from(reference, 2, 0);
  ASSERT_EQ(full.size(), 8u);
  for (int64_t k : {0, 1, 5, 7, 8}) {
    for (auto [workers, prefetch] : {std::pair<int64_t, int64_t>{1, 1}, {3, 2}, {4, 8}}) {
      DataLoader resumed(dataset, options(workers, prefetch));  // a fresh process's loader
      EXPECT_EQ(batches_from(resumed, 2, k),
                std::vector<std::vector<float>>(full.begin() + k, full.end()))
          << "k=" << k << " workers=" << workers << " prefetch=" << prefetch;
    }
  }
}

TEST(DataLoader, SkippedBatchesAreNotLoaded) {
  const auto dataset = std::make_shared<IndexDataset>(50);
  DataLoader loader(dataset,
                    DataLoaderOptions().batch_size(7).shuffle(true).seed(4).num_workers(2));
  const std::vector<int64_t> all = epoch_labels(loader, 1);
  dataset->calls = 0;
  loader.start_epoch(1, 3);
  std::vector<int64_t> rest;
  while (std::optional<Batch> batch = loader.next()) {
    for (int64_t label : batch->labels.to_vector<int64_t>()) rest.push_back(label);
  }
  EXPECT_EQ(rest, std::vector<int64_t>(all.begin() + 21, all.end()));
  EXPECT_EQ(dataset->calls.load(), 50 - 21);

  loader.start_epoch(1, loader.num_batches());  // resumed right at the end of an epoch
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_TRUE(
      throws_error_with([&] { loader.start_epoch(1, 9); }, {"first_batch 9 is outside [0, 8]"}));
  EXPECT_TRUE(throws_error_with([&] { loader.start_epoch(1, -1); }, {"first_batch -1"}));
}

}  // namespace
}  // namespace qat::nn::data
