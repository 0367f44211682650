#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

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

// Runs `prim` with `args` on the shared stream and waits.
void execute(const dnnl::primitive& prim, const std::unordered_map<int, dnnl::memory>& args);

}  // namespace qat::kernels::onednn
