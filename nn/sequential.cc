#include "nn/sequential.h"

namespace qat::nn {

void Sequential::append(std::shared_ptr<Module> module) {
  register_module(std::to_string(size()), std::move(module));
}

std::shared_ptr<Module> Sequential::operator[](size_t index) const {
  const NamedModules children = named_children();
  QAT_CHECK(index < children.size(), "Sequential: index ", index, " is out of range for ",
            children.size(), " modules");
  return children[index].second;
}

Tensor Sequential::forward_impl(const Tensor& input) {
  Tensor x = input;
  for (const std::shared_ptr<Module>& module : children()) x = module->forward(x);
  return x;
}

}  // namespace qat::nn
