#include "core/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "core/check.h"

namespace qat {
namespace {

constexpr size_t kAlignment = 64;

size_t round_up(size_t nbytes) {
  if (nbytes < kCachedBlockMinBytes) return (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  size_t power = size_t{1} << (63 - __builtin_clzll(nbytes));
  size_t step = power / 8;
  return (nbytes + step - 1) / step * step;
}

bool caching_enabled() {
  static const bool enabled = [] {
    const char* off = std::getenv("QAT_NO_CACHING_ALLOCATOR");
    return off == nullptr || std::string(off) == "0";
  }();
  return enabled;
}

class BlockCache {
 public:
  void* take(size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(capacity);
    if (it == free_.end() || it->second.empty()) {
      ++stats_.fresh;
      return nullptr;
    }
    void* p = it->second.back();
    it->second.pop_back();
    stats_.cached_bytes -= capacity;
    ++stats_.reused;
    return p;
  }

  // False when the cache is full (the caller frees the block).
  bool put(void* p, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.cached_bytes + capacity > kMaxCachedBytes) return false;
    free_[capacity].push_back(p);
    stats_.cached_bytes += capacity;
    return true;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [capacity, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // capacity -> free blocks
  AllocatorStats stats_;
};

// Never destroyed: tensors held by static objects may be freed after main returns.
BlockCache& cache() {
  static BlockCache* instance = new BlockCache;
  return *instance;
}

}  // namespace

Block allocate_block(size_t nbytes) {
  if (nbytes > (size_t{1} << 62))
    throw Error("cannot allocate " + std::to_string(nbytes) + " bytes");
  Block block;
  block.capacity = round_up(nbytes == 0 ? 1 : nbytes);
  const bool cacheable = caching_enabled() && block.capacity >= kCachedBlockMinBytes;
  if (cacheable) block.data = cache().take(block.capacity);
  if (block.data == nullptr) block.data = std::aligned_alloc(kAlignment, block.capacity);
  if (block.data == nullptr) {
    cache().clear();  // give cached memory back and try once more
    block.data = std::aligned_alloc(kAlignment, block.capacity);
  }
  if (block.data == nullptr)
    throw Error("out of memory allocating " + std::to_string(nbytes) + " bytes");
  return block;
}

void free_block(const Block& block) {
  if (block.data == nullptr) return;
  const bool cacheable = caching_enabled() && block.capacity >= kCachedBlockMinBytes;
  bool cached = false;
  try {
    cached = cacheable && cache().put(block.data, block.capacity);
  } catch (const std::bad_alloc&) {
    // Called from ~Storage: never throw; under memory pressure just give the block back.
  }
  if (!cached) std::free(block.data);
}

AllocatorStats allocator_stats() { return cache().stats(); }

void empty_cache() { cache().clear(); }

}  // namespace qat
