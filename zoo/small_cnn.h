#pragma once

#include <cstdint>
#include <memory>

#include "nn/linear.h"
#include "nn/module.h"
#include "nn/sequential.h"

namespace qat::zoo {

// The example network for 1x28x28 inputs (Fashion-MNIST): three conv-bn-relu-maxpool stages
// (32, 64, 128 channels; 28 -> 14 -> 7 -> 3), flatten, one fully connected layer.
// The same network as small_cnn() in bench/pytorch_train_step.py; its state_dict keys are
// features.{0,1,4,5,8,9}.* and fc.*.
class SmallCnn : public nn::Module {
 public:
  explicit SmallCnn(int64_t in_channels = 1, int64_t num_classes = 10);
  std::string type_name() const override { return "SmallCnn"; }

  std::shared_ptr<nn::Sequential> features;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

}  // namespace qat::zoo
