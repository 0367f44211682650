#include "core/kernels/onednn/engine.h"

namespace qat::kernels::onednn {

dnnl::engine& engine() {
  static dnnl::engine cpu_engine(dnnl::engine::kind::cpu, 0);
  return cpu_engine;
}

dnnl::stream& stream() {
  static dnnl::stream cpu_stream(engine());
  return cpu_stream;
}

std::string dims_key(const std::string& tag, std::initializer_list<dnnl::memory::dims> dims_lists) {
  std::string key = tag + ":";
  for (const auto& dims : dims_lists) {
    for (auto d : dims) {
      key += std::to_string(d);
      key += ',';
    }
    key += ';';
  }
  return key;
}

ScratchBuffers::~ScratchBuffers() {
  for (const Block& block : blocks_) free_block(block);
}

dnnl::memory ScratchBuffers::make_memory(const dnnl::memory::desc& md) {
  blocks_.push_back(allocate_block(md.get_size()));
  return dnnl::memory(md, engine(), blocks_.back().data);
}

void execute(const dnnl::primitive& prim, const std::unordered_map<int, dnnl::memory>& args) {
  prim.execute(stream(), args);
  stream().wait();
}

}  // namespace qat::kernels::onednn
