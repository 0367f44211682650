#pragma once

#include <cstddef>

namespace qat {

// Host memory behind every Storage: 64-byte aligned blocks. Blocks of at least
// kCachedBlockMinBytes are kept on free and handed out again for the same rounded size, so a
// training step that allocates the same activation shapes every iteration stops paying for
// fresh pages (mmap + page faults + zeroing by the kernel took ~40% of a ResNet-50 step).
// Sizes are rounded up to 1/8 of their power of two (at most 12.5% slack). The cache holds at
// most kMaxCachedBytes; QAT_NO_CACHING_ALLOCATOR=1 in the environment turns caching off.
constexpr size_t kCachedBlockMinBytes = size_t{1} << 16;
constexpr size_t kMaxCachedBytes = size_t{4} << 30;

struct Block {
  void* data = nullptr;
  size_t capacity = 0;  // the rounded size, needed to give the block back
};

Block allocate_block(size_t nbytes);  // throws qat::Error when out of memory
void free_block(const Block& block);

struct AllocatorStats {
  size_t cached_bytes = 0;  // held in the cache, not in use
  size_t reused = 0;        // allocations served from the cache
  size_t fresh = 0;         // cacheable-size allocations that went to the system
};
AllocatorStats allocator_stats();
// Returns every cached block to the system.
void empty_cache();

}  // namespace qat
