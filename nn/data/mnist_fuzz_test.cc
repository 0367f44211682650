// Seeded mutation fuzzing of the IDX reader: every mutated pair of files (gzipped or raw) must
// load or throw qat::Error; any other exception or a crash fails.

#include <iostream>
#include <random>

#include <gtest/gtest.h>

#include "nn/data/mnist.h"
#include "nn/data/test_util.h"

namespace qat::nn::data {
namespace {

constexpr int kMutations = 3000;

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::vector<uint8_t> mutate(std::vector<uint8_t> bytes) {
    switch (below(5)) {
      case 0:  // bit flips
        for (uint64_t k = 1 + below(4); k > 0 && !bytes.empty(); --k) {
          bytes[below(bytes.size())] ^= static_cast<uint8_t>(1u << below(8));
        }
        break;
      case 1:  // byte sets, biased toward the header where the sizes live
        for (uint64_t k = 1 + below(4); k > 0 && !bytes.empty(); --k) {
          const size_t at =
              below(2) ? below(std::min<size_t>(bytes.size(), 20)) : below(bytes.size());
          bytes[at] = below(2) ? static_cast<uint8_t>(rng_()) : (below(2) ? 0xff : 0x00);
        }
        break;
      case 2:  // truncation
        bytes.resize(below(bytes.size() + 1));
        break;
      case 3:  // appended bytes
        for (uint64_t k = 1 + below(8); k > 0; --k) bytes.push_back(static_cast<uint8_t>(rng_()));
        break;
      default:  // left alone: the other file carries the mutation
        break;
    }
    return bytes;
  }

 private:
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  std::mt19937_64 rng_;
};

TEST(FashionMnistFuzz, MutatedFilesLoadOrThrowQatError) {
  std::vector<uint8_t> pixels(5 * 4 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  const std::vector<uint8_t> images = test_util::idx_file(0x803, {5, 4, 3}, pixels);
  const std::vector<uint8_t> labels = test_util::idx_file(0x801, {5}, {0, 9, 3, 3, 1});
  const std::vector<uint8_t> images_gz = test_util::gzip(images);
  const std::vector<uint8_t> labels_gz = test_util::gzip(labels);

  int loaded = 0, rejected = 0;
  for (int i = 0; i < kMutations; ++i) {
    Mutator mutator(i);
    const bool gzipped = i % 2 == 0;
    const std::vector<uint8_t> mutated_images = mutator.mutate(gzipped ? images_gz : images);
    const std::vector<uint8_t> mutated_labels = mutator.mutate(gzipped ? labels_gz : labels);
    try {
      const FashionMnist dataset(mutated_images, "images", mutated_labels, "labels");
      for (size_t j = 0; j < dataset.size(); ++j) {
        const Example e = dataset.get(j);
        ASSERT_TRUE(e.label >= 0 && e.label < 10) << "mutation " << i;
      }
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "mutation " << i << " threw a non-qat exception: " << e.what();
    }
  }
  EXPECT_GT(loaded, kMutations / 20);
  EXPECT_GT(rejected, kMutations / 4);
  std::cout << loaded << " mutants loaded, " << rejected << " rejected\n";
}

}  // namespace
}  // namespace qat::nn::data
