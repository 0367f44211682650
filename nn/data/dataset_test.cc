#include "nn/data/dataset.h"

#include <cmath>
#include <memory>
#include <set>

#include <gtest/gtest.h>

#include "nn/data/data_loader.h"
#include "nn/data/test_util.h"

namespace qat::nn::data {
namespace {

using test_util::throws_error_with;

TEST(SyntheticDataset, IsAFunctionOfSeedAndIndex) {
  const SyntheticDataset a(100, {3, 4, 4}, 10, /*seed=*/1), b(100, {3, 4, 4}, 10, 1);
  const SyntheticDataset other_seed(100, {3, 4, 4}, 10, 2);
  EXPECT_EQ(a.size(), 100u);
  const std::vector<float> a7 = a.get(7).image.to_vector<float>();
  a.get(3);  // call order does not matter
  EXPECT_EQ(b.get(7).image.to_vector<float>(), a7);
  EXPECT_EQ(a.get(7).image.to_vector<float>(), a7);
  EXPECT_NE(other_seed.get(7).image.to_vector<float>(), a7);
  EXPECT_NE(a.get(17).image.to_vector<float>(), a7);  // same class, different noise

  EXPECT_EQ(a.get(7).image.shape(), (Shape{3, 4, 4}));
  EXPECT_EQ(a.get(7).label, 7);
  EXPECT_EQ(a.get(23).label, 3);  // labels cycle, so classes are balanced
  EXPECT_TRUE(throws_error_with([&] { a.get(100); }, {"index 100 out of range for 100"}));
  EXPECT_TRUE(throws_error_with([] { SyntheticDataset(4, {2}, 0, 0); }, {"num_classes"}));
  EXPECT_TRUE(throws_error_with([] { SyntheticDataset(4, {2, 0}, 3, 0); }, {"[2, 0]"}));
}

TEST(DeriveSeed, SeparatesStreams) {
  std::set<uint64_t> seeds;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    for (uint64_t stream = 0; stream < 100; ++stream) seeds.insert(derive_seed(seed, stream));
  }
  EXPECT_EQ(seeds.size(), 1000u);
}

// Softmax regression in plain loops over DataLoader batches: the loss must fall well below
// log(num_classes) and the training accuracy must be high, or the data is not learnable.
TEST(SyntheticDataset, IsLearnable) {
  constexpr int64_t K = 4, D = 64;
  auto dataset = std::make_shared<SyntheticDataset>(512, Shape{1, 8, 8}, K, /*seed=*/3);
  DataLoader loader(dataset, DataLoaderOptions().batch_size(32).shuffle(true).seed(0));
  std::vector<float> w(K * D, 0.0f), b(K, 0.0f);
  const float lr = 0.05f;
  std::vector<double> epoch_loss;
  double accuracy = 0;
  for (int64_t epoch = 0; epoch < 5; ++epoch) {
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    loader.start_epoch(epoch);
    while (std::optional<Batch> batch = loader.next()) {
      const int64_t B = batch->labels.size(0);
      const float* x = batch->images.data<float>();      // [B, D]
      const int64_t* y = batch->labels.data<int64_t>();  // [B]
      std::vector<float> dw(K * D, 0.0f), db(K, 0.0f);
      for (int64_t n = 0; n < B; ++n) {
        std::vector<double> p(K);
        double max_logit = -INFINITY, total = 0;
        for (int64_t k = 0; k < K; ++k) {
          p[k] = b[k];
          for (int64_t d = 0; d < D; ++d) p[k] += w[k * D + d] * x[n * D + d];
          max_logit = std::max(max_logit, p[k]);
        }
        int64_t argmax = 0;
        for (int64_t k = 0; k < K; ++k) {
          if (p[k] > p[argmax]) argmax = k;
          p[k] = std::exp(p[k] - max_logit);
          total += p[k];
        }
        correct += argmax == y[n];
        loss_sum -= std::log(p[y[n]] / total);
        for (int64_t k = 0; k < K; ++k) {
          const float g = static_cast<float>(p[k] / total - (k == y[n] ? 1.0 : 0.0)) / B;
          db[k] += g;
          for (int64_t d = 0; d < D; ++d) dw[k * D + d] += g * x[n * D + d];
        }
      }
      for (int64_t i = 0; i < K * D; ++i) w[i] -= lr * dw[i];
      for (int64_t k = 0; k < K; ++k) b[k] -= lr * db[k];
      seen += B;
    }
    epoch_loss.push_back(loss_sum / seen);
    accuracy = static_cast<double>(correct) / seen;
  }
  EXPECT_LT(epoch_loss.back(), 0.25 * std::log(K)) << "first epoch " << epoch_loss.front();
  EXPECT_LT(epoch_loss.back(), epoch_loss.front());
  EXPECT_GT(accuracy, 0.95);
}

TEST(Subset, TakesTheIndexedExamplesInOrder) {
  auto base = std::make_shared<SyntheticDataset>(10, Shape{1, 2, 2}, 10, /*seed=*/4);
  const Subset subset(base, {7, 2, 7});
  ASSERT_EQ(subset.size(), 3u);
  EXPECT_EQ(subset.get(0).label, 7);
  EXPECT_EQ(subset.get(1).label, 2);
  const Tensor picked = subset.get(2).image, original = base->get(7).image;
  ASSERT_EQ(picked.numel(), original.numel());
  for (int64_t i = 0; i < picked.numel(); ++i)
    EXPECT_EQ(picked.data<float>()[i], original.data<float>()[i]);
  EXPECT_THROW(subset.get(3), Error);
  EXPECT_THROW(Subset(base, {10}), Error);
}

TEST(Subset, EvenlySpacedCoversTheWholeDataset) {
  auto base = std::make_shared<SyntheticDataset>(10, Shape{1, 1, 1}, 10, /*seed=*/0);
  const auto subset = Subset::evenly_spaced(base, 4);  // floor(i * 10 / 4) = 0, 2, 5, 7
  ASSERT_EQ(subset->size(), 4u);
  const int64_t expected[] = {0, 2, 5, 7};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(subset->get(i).label, expected[i]);
  EXPECT_EQ(Subset::evenly_spaced(base, 10)->get(9).label, 9);
  EXPECT_THROW(Subset::evenly_spaced(base, 11), Error);
  EXPECT_THROW(Subset::evenly_spaced(base, 0), Error);
}

}  // namespace
}  // namespace qat::nn::data
