#pragma once

#include <memory>
#include <string>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "quant/fake_quantize.h"
#include "quant/qconfig.h"

// The QAT modules (ConvBn2d, Conv2d, Linear in this folder) hold the original float modules
// and never copy or register their tensors. Naming scheme:
//   * The float tensors stay registered where the float model put them, so its state_dict keys
//     ("layer1.0.conv1.weight", "layer1.0.bn1.running_var") are unchanged and a torchvision
//     checkpoint still loads into the float model.
//   * A QAT module registers only its quantization state, in PyTorch's order:
//       weight_fake_quant.{fake_quant_enabled, observer_enabled, scale, zero_point,
//                          activation_post_process.{eps, min_val, max_val}}
//       activation_post_process.{...the same keys...}    (absent when the output is not quantized)
//     The graph places the QAT module at the node name of the first fused module (the conv), so
//     a prepared model's state_dict is the float keys plus "layer1.0.conv1.weight_fake_quant.scale"
//     and so on -- the keys PyTorch eager QAT gives the same quant state.
//   * Unlike torch.nn.intrinsic.qat.ConvBn2d, whose state_dict renames the float tensors
//     ("weight", "bn.weight"), nothing here moves: parameters() of a QAT module holds only the
//     LSQ scales (if any). Train the float model's parameters() plus those.
namespace qat::quant {

// The activation fused into a QAT module's output, before the output fake quant (PyTorch's
// *ReLU intrinsic modules; ReLU6 is MobileNetV2's).
enum class FusedActivation { kNone, kReLU, kReLU6 };

struct QatModuleOptions {
  QAT_ARG(FusedActivation, activation) = FusedActivation::kNone;
  // Fake-quantize the module output (PyTorch's activation_post_process, which eager
  // prepare_qat attaches to every QAT module). The graph pass turns it off where the target
  // leaves the output in float (TensorRT quantizes the inputs of the next op instead).
  QAT_ARG(bool, quantize_output) = true;
};

// The float weight and bias an integer model is built from (for ConvBn2d: BN folded in with
// the running statistics). Fresh tensors without autograd history; bias is undefined when the
// layer has none.
struct FoldedWeights {
  Tensor weight;
  Tensor bias;
};

// Base of the QAT modules: the weight FakeQuantize, the optional output FakeQuantize and the
// fused activation. Subclasses compute the pre-activation output and call finish_output().
class QatModule : public nn::Module {
 public:
  // W and b as convert and the exporters use them; quantize the weight with
  // weight_fake_quant()->qparams() to get the integer weights the training forward used.
  virtual FoldedWeights fold() const = 0;

  const QConfig& qconfig() const { return qconfig_; }
  const QatModuleOptions& options() const { return options_; }
  const std::shared_ptr<FakeQuantize>& weight_fake_quant() const { return weight_fake_quant_; }
  // nullptr when options().quantize_output() is false.
  const std::shared_ptr<FakeQuantize>& activation_post_process() const {
    return activation_post_process_;
  }

  // tnn: the quantizer whose scale is the scale of this layer's input blob (graph::prepare_qat
  // links it; it is not part of this module's state). Linked, an eval forward computes the
  // output as TNN's int8 kernel does (tnn_format.md §3.4) instead of rounding the float conv:
  // the exact int32 sum of input codes times weight codes plus int32_bias(), then
  // tnn_requantize() (quant/int8_arithmetic.h), the arithmetic graph::convert and the integer
  // simulator use -- so the fake-quant eval and the simulator agree bit for bit. Gradients are
  // those of the fake-quant forward (the two differ by float rounding at most an output step).
  void set_input_quantizer(std::shared_ptr<FakeQuantize> quantizer) {
    input_quantizer_ = std::move(quantizer);
  }
  const std::shared_ptr<FakeQuantize>& input_quantizer() const { return input_quantizer_; }

 protected:
  QatModule(const QConfig& qconfig, const QatModuleOptions& options);

  // The activation, then the output fake quant (if any); in tnn eval with an input quantizer,
  // TNN's int8 kernel on `input` (see set_input_quantizer()).
  Tensor finish_output(const Tensor& y, const Tensor& input);
  // The layer without bias on integer-valued tensors (input codes, weight codes; float32 or
  // float64): conv2d / linear with this layer's parameters.
  virtual Tensor accumulate(const Tensor& input_codes, const Tensor& weight_codes) const = 0;
  // "<base><activation><suffix>": ("ConvBn", "2d") -> "ConvBn2d", "ConvBnReLU2d",
  // "ConvBnReLU6" (PyTorch has no ReLU6 intrinsics; the dimension suffix is left out there).
  std::string fused_type_name(const std::string& base, const std::string& suffix) const;

 private:
  QConfig qconfig_;
  QatModuleOptions options_;
  std::shared_ptr<FakeQuantize> weight_fake_quant_;
  std::shared_ptr<FakeQuantize> activation_post_process_;
  std::shared_ptr<FakeQuantize> input_quantizer_;

  bool runs_tnn_kernel() const;
  // TNN's int8 output of this layer on `input` (on the input quantizer's grid), dequantized.
  Tensor tnn_kernel_output(const Tensor& input) const;
  // bias_int32[c] + the layer's sums of input codes and int8 weight codes, summed in float64
  // (exact up to 2^53): the fallback when no float32 split is exact.
  Tensor accumulate_float64(const Tensor& input_codes, const Tensor& weight_codes,
                            const Tensor& bias_int32) const;
};

// Model-wide switches, as torch.ao.quantization.{enable,disable}_{observer,fake_quant} applied
// with model.apply(): they set every FakeQuantize in the module tree under `root`, which must
// be held by a std::shared_ptr.
void enable_observer(nn::Module& root, bool enabled = true);
void disable_observer(nn::Module& root);
void enable_fake_quant(nn::Module& root, bool enabled = true);
void disable_fake_quant(nn::Module& root);

}  // namespace qat::quant
