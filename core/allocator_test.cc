#include "core/allocator.h"

#include <cstdint>

#include <gtest/gtest.h>

#include "core/tensor.h"

namespace qat {
namespace {

TEST(Allocator, BlocksAreAlignedAndLargeOnesAreReused) {
  empty_cache();
  Block small = allocate_block(100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data) % 64, 0u);
  EXPECT_EQ(small.capacity, 128u);
  free_block(small);

  const size_t n = 3 * 1000 * 1000;
  AllocatorStats before = allocator_stats();
  void* first;
  {
    Tensor t = Tensor::empty({static_cast<int64_t>(n)});
    first = t.raw_data();
  }
  EXPECT_GT(allocator_stats().cached_bytes, before.cached_bytes);
  // The same size again comes back from the cache: the same block.
  Tensor again = Tensor::empty({static_cast<int64_t>(n)});
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_EQ(allocator_stats().reused, before.reused + 1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(again.raw_data()) % 64, 0u);
}

TEST(Allocator, RoundingKeepsSlackUnderAnEighth) {
  for (size_t n : {size_t{65536}, size_t{70000}, size_t{1} << 20, (size_t{1} << 20) + 1,
                   size_t{123456789}}) {
    Block b = allocate_block(n);
    EXPECT_GE(b.capacity, n);
    EXPECT_LE(b.capacity, n + n / 8 + 64) << n;
    free_block(b);
  }
  empty_cache();
  EXPECT_EQ(allocator_stats().cached_bytes, 0u);
}

}  // namespace
}  // namespace qat
