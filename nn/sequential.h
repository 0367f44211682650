#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "nn/module.h"

namespace qat::nn {

// torch.nn.Sequential: children named "0", "1", ... in order; forward() runs them in turn
// (an empty Sequential returns its input and registers nothing).
//   std::make_shared<Sequential>(conv1x1(in, out, stride), std::make_shared<BatchNorm2d>(out))
class Sequential : public Module {
 public:
  template <class... M>
  explicit Sequential(std::shared_ptr<M>... modules) {
    (append(std::move(modules)), ...);
  }

  // Registers `module` as child "<size()>".
  void append(std::shared_ptr<Module> module);
  size_t size() const { return named_children().size(); }
  std::shared_ptr<Module> operator[](size_t index) const;
  std::string type_name() const override { return "Sequential"; }

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::nn
