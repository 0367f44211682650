#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"

// Only core/kernels/onednn/ includes dnnl.hpp; everything outside sees plain buffers and dims.
namespace qat::kernels::onednn {

// The process-wide CPU engine and stream (oneDNN runs on the OpenMP pool).
dnnl::engine& engine();
dnnl::stream& stream();

// Shape-keyed cache of primitive descriptors + primitives. Keys are built by the caller from
// everything that selects the primitive (dims, strides, padding, prop_kind), e.g. with dims_key.
// Thread-safe; entries live for the process (a training run sees a handful of shapes).
template <class Value>
class Cache {
 public:
  Value& get_or_create(const std::string& key, const std::function<Value()>& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) it = entries_.emplace(key, std::make_unique<Value>(make())).first;
    return *it->second;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Value>> entries_;
};

// "tag:1,2,3;4,5" from a tag and any number of dims lists.
std::string dims_key(const std::string& tag, std::initializer_list<dnnl::memory::dims> dims_lists);

// Buffers for the layout-converted copies one kernel call needs, taken from qat's caching
// allocator (core/allocator.h) and given back when the call ends: a training step converts the
// same shapes every iteration, and fresh pages from the system cost page faults each time.
class ScratchBuffers {
 public:
  ScratchBuffers() = default;
  ~ScratchBuffers();
  ScratchBuffers(const ScratchBuffers&) = delete;
  ScratchBuffers& operator=(const ScratchBuffers&) = delete;
  // A memory object of layout `md` backed by a new scratch buffer.
  dnnl::memory make_memory(const dnnl::memory::desc& md);

 private:
  std::vector<Block> blocks_;
};

// Runs `prim` with `args` on the shared stream and waits.
void execute(const dnnl::primitive& prim, const std::unordered_map<int, dnnl::memory>& args);

}  // namespace qat::kernels::onednn
