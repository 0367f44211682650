#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/int_pair.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/pooling.h"
#include "nn/sequential.h"

// GoogLeNet (Inception v1) as torchvision 0.14's torchvision.models.GoogLeNet: same modules,
// state_dict keys and order, default init. See the torchvision docs for the architecture.
namespace qat::zoo {

struct GoogLeNetOptions {
  QAT_ARG(int64_t, num_classes) = 1000;
  // Builds aux1/aux2; they run only in training mode (see GoogLeNet::last_aux_logits()).
  QAT_ARG(bool, aux_logits) = true;
  // Re-normalizes ImageNet-normalized input as the original weights expect. torchvision's
  // googlenet() turns it on only for pretrained weights; needs in_channels == 3.
  QAT_ARG(bool, transform_input) = false;
  QAT_ARG(int64_t, in_channels) = 3;  // conv1's input channels (torchvision: always 3)
  // For 28x28 / 32x32 images: conv1 becomes 3x3 stride 1 padding 1 (same key) and maxpool1,
  // maxpool2 are removed, so inception3a sees the full resolution. Not a torchvision option.
  QAT_ARG(bool, small_input) = false;
  QAT_ARG(double, dropout) = 0.2;      // before fc
  QAT_ARG(double, dropout_aux) = 0.7;  // inside each InceptionAux
};

// torchvision's BasicConv2d: conv (no bias) -> bn (eps 0.001) -> relu. The relu is the
// functional ops::relu, as torchvision's F.relu, so tracing records it as a function node.
class BasicConv2d : public nn::Module {
 public:
  // options.bias() is ignored: the conv never has a bias (the BN after it has one).
  BasicConv2d(int64_t in_channels, int64_t out_channels, nn::IntPair kernel_size,
              nn::Conv2dOptions options = {});
  std::string type_name() const override { return "BasicConv2d"; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torchvision's Inception block: four branches concatenated along channels (ops::cat), giving
// ch1x1 + ch3x3 + ch5x5 + pool_proj channels at the input resolution. As torchvision (vision
// issue #906), the "5x5" branch uses a 3x3 kernel.
class Inception : public nn::Module {
 public:
  Inception(int64_t in_channels, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3, int64_t ch5x5red,
            int64_t ch5x5, int64_t pool_proj);
  std::string type_name() const override { return "Inception"; }

  std::shared_ptr<BasicConv2d> branch1;     // 1x1
  std::shared_ptr<nn::Sequential> branch2;  // 1x1 -> 3x3
  std::shared_ptr<nn::Sequential> branch3;  // 1x1 -> 3x3
  std::shared_ptr<nn::Sequential> branch4;  // max pool 3x3 stride 1 (ceil_mode) -> 1x1

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// torchvision's InceptionAux classifier head: adaptive avg pool to 4x4 (functional), conv 1x1
// to 128 channels, flatten, fc1 (2048 -> 1024), relu (functional), dropout, fc2.
class InceptionAux : public nn::Module {
 public:
  InceptionAux(int64_t in_channels, int64_t num_classes, double dropout = 0.7);
  std::string type_name() const override { return "InceptionAux"; }

  std::shared_ptr<BasicConv2d> conv;
  std::shared_ptr<nn::Linear> fc1;
  std::shared_ptr<nn::Linear> fc2;
  std::shared_ptr<nn::Dropout> dropout;

 protected:
  Tensor forward_impl(const Tensor& input) override;
};

// Outputs of the two aux heads, named by head: aux1 follows inception4a, aux2 inception4d.
// (torchvision 0.14's GoogLeNetOutputs labels them the other way round: its aux_logits1 field
// holds aux2's output. For the usual loss the order does not matter.)
struct GoogLeNetAuxLogits {
  Tensor aux1;  // [N, num_classes]
  Tensor aux2;  // [N, num_classes]
};

// torchvision.models.GoogLeNet on [N, in_channels, H, W] (H, W >= 15 by default; ImageNet: 224).
// forward() returns the main logits [N, num_classes]. In training mode with aux_logits, it also
// runs the aux heads; read them with last_aux_logits() to train as torchvision's recipe does:
//   loss = cross_entropy(logits) + 0.3 * (cross_entropy(aux1) + cross_entropy(aux2))
// Weights: trunc_normal_(0, 0.01, -2, 2) for conv and linear weights, BN weight 1 / bias 0,
// linear biases keep nn::Linear's default, as torchvision's init_weights=True.
class GoogLeNet : public nn::Module {
 public:
  explicit GoogLeNet(GoogLeNetOptions options = {});
  std::string type_name() const override { return "GoogLeNet"; }

  // The aux outputs of the last forward(): defined only when it ran in training mode with
  // aux_logits; undefined after an eval forward. They stay valid until the next forward().
  const GoogLeNetAuxLogits& last_aux_logits() const { return last_aux_logits_; }

  const GoogLeNetOptions options;
  // Registered in torchvision's order; maxpool1/maxpool2 are null with small_input, aux1/aux2
  // are null without aux_logits.
  std::shared_ptr<BasicConv2d> conv1;
  std::shared_ptr<nn::MaxPool2d> maxpool1;
  std::shared_ptr<BasicConv2d> conv2;
  std::shared_ptr<BasicConv2d> conv3;
  std::shared_ptr<nn::MaxPool2d> maxpool2;
  std::shared_ptr<Inception> inception3a;
  std::shared_ptr<Inception> inception3b;
  std::shared_ptr<nn::MaxPool2d> maxpool3;
  std::shared_ptr<Inception> inception4a;
  std::shared_ptr<Inception> inception4b;
  std::shared_ptr<Inception> inception4c;
  std::shared_ptr<Inception> inception4d;
  std::shared_ptr<Inception> inception4e;
  std::shared_ptr<nn::MaxPool2d> maxpool4;
  std::shared_ptr<Inception> inception5a;
  std::shared_ptr<Inception> inception5b;
  std::shared_ptr<InceptionAux> aux1;
  std::shared_ptr<InceptionAux> aux2;
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  GoogLeNetAuxLogits last_aux_logits_;
};

// torchvision.models.googlenet() without weights: a GoogLeNet held by a shared_ptr.
std::shared_ptr<GoogLeNet> googlenet(GoogLeNetOptions options = {});

}  // namespace qat::zoo
