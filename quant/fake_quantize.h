#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "quant/observer.h"
#include "quant/qparams.h"

namespace qat::quant {

struct FakeQuantizeOptions {
  // The target's rounding; kHalfEvenMul is PyTorch's.
  QAT_ARG(RoundingMode, rounding) = RoundingMode::kHalfEvenMul;
  // LSQ: `scale` is a trainable parameter with the LSQ gradient (ops::fake_quantize_lsq_*), as
  // PyTorch's _LearnableFakeQuantize. While the observer is enabled it still overwrites the
  // scale with the observed one (initialization); otherwise the scale is clamped to >= eps.
  QAT_ARG(bool, learnable_scale) = false;
  // LSQ gradient factor 1 / sqrt(numel * quant_max) (PyTorch's use_grad_scaling); else 1.
  QAT_ARG(bool, use_grad_scaling) = true;
};

// torch.ao.quantization.FakeQuantize (the version-0 module of the PyTorch 1.13 QAT qconfigs):
// forward(x) first runs the observer on x and recomputes scale / zero_point when the observer
// is enabled (also in eval(), as PyTorch), then fake-quantizes x when fake quant is enabled
// (else returns x). state_dict keys as PyTorch: fake_quant_enabled, observer_enabled (uint8
// [1]), scale (float32), zero_point (int32), then activation_post_process.{eps,min_val,max_val}.
// scale / zero_point are [1] until a per-channel observer first sees data, then [C] (resized in
// place). With learnable_scale, scale is a parameter, so it comes first in state_dict().
class FakeQuantize : public nn::Module {
 public:
  explicit FakeQuantize(std::shared_ptr<ObserverBase> observer,
                        const FakeQuantizeOptions& options = FakeQuantizeOptions());

  // PyTorch's switches (torch.ao.quantization.enable_observer etc. apply them to a model).
  void enable_observer(bool enabled = true);
  void disable_observer() { enable_observer(false); }
  void enable_fake_quant(bool enabled = true);
  void disable_fake_quant() { enable_fake_quant(false); }
  bool observer_enabled() const;
  bool fake_quant_enabled() const;

  // The observer's qparams (PyTorch's FakeQuantize.calculate_qparams()).
  std::pair<Tensor, Tensor> calculate_qparams() const;
  // Recomputes scale / zero_point from the observer now, e.g. after
  // activation_post_process()->set_min_max(-amax, amax) from a calibrator.
  void update_qparams();
  // A snapshot (copies) of the current scale / zero_point with the range, axis and rounding:
  // what convert and the exporters read.
  QParams qparams() const;

  const Tensor& scale() const { return scale_; }
  const Tensor& zero_point() const { return zero_point_; }
  const std::shared_ptr<ObserverBase>& activation_post_process() const { return observer_; }
  int64_t quant_min() const { return observer_->quant_min(); }
  int64_t quant_max() const { return observer_->quant_max(); }
  QScheme qscheme() const { return observer_->qscheme(); }
  QDType dtype() const { return observer_->dtype(); }
  bool is_per_channel() const { return observer_->is_per_channel(); }
  int64_t ch_axis() const { return observer_->ch_axis(); }
  const FakeQuantizeOptions& options() const { return options_; }

  std::string type_name() const override { return "FakeQuantize"; }
  std::string extra_repr() const override;
  // The grid in one line, for graph annotations and `qat inspect`:
  // "qint8 per_channel_symmetric(axis=0) [-127, 127] half_even_div".
  std::string scheme() const;

 protected:
  Tensor forward_impl(const Tensor& input) override;

 private:
  // The current qparams, aliasing scale_ and zero_point_.
  QParams qparams_view() const;

  FakeQuantizeOptions options_;
  std::shared_ptr<ObserverBase> observer_;
  Tensor fake_quant_enabled_;
  Tensor observer_enabled_;
  Tensor scale_;
  Tensor zero_point_;
};

}  // namespace qat::quant
