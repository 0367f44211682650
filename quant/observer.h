#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/arg.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "quant/qparams.h"

namespace qat::quant {

// Keyword arguments of the torch.ao.quantization observers (same names and defaults).
struct ObserverOptions {
  QAT_ARG(QDType, dtype) = QDType::kQUInt8;
  // Per-channel observers need a per-channel scheme; their constructors default to
  // per_channel_affine as PyTorch's do.
  QAT_ARG(QScheme, qscheme) = QScheme::kPerTensorAffine;
  QAT_ARG(bool, reduce_range) = false;
  // Both or neither (PyTorch's has_customized_qrange).
  QAT_ARG(std::optional<int64_t>, quant_min);
  QAT_ARG(std::optional<int64_t>, quant_max);
  QAT_ARG(double, eps) = kFloat32Eps;
  // Not in PyTorch: kQuantMax gives the TensorRT/TNN scale amax / quant_max.
  QAT_ARG(SymmetricScale, symmetric_scale) = SymmetricScale::kHalfRange;
  QAT_ARG(double, averaging_constant) = 0.01;  // moving-average observers only
  QAT_ARG(int64_t, ch_axis) = 0;               // per-channel observers only
};

// Base of the min/max observers (PyTorch's UniformQuantizationObserverBase). forward(x) records
// statistics of x (detached, converted to float32) and returns x unchanged. Buffers, in
// state_dict order: eps [1], min_val, max_val -- 0-d (+inf / -inf until observed) per tensor,
// [C] per channel ([0] until observed; resized in place on the first observation).
class ObserverBase : public nn::Module {
 public:
  // (scale float32 [1] or [C], zero_point int32): PyTorch's calculate_qparams().
  std::pair<Tensor, Tensor> calculate_qparams() const;

  // Sets the running range, e.g. to [-amax, amax] from a calibrator or after an all-reduce
  // across ranks. Per tensor: one element each; per channel: [C] each (resizes the buffers).
  void set_min_max(const Tensor& min_val, const Tensor& max_val);
  // Forgets the statistics (PyTorch's reset_min_max_vals).
  void reset_min_max_vals();

  const Tensor& min_val() const { return min_val_; }
  const Tensor& max_val() const { return max_val_; }
  // The qparams rule, with eps read from the `eps` buffer (a checkpoint may change it).
  QParamsRule rule() const;
  QDType dtype() const { return rule_.dtype; }
  QScheme qscheme() const { return rule_.qscheme; }
  int64_t quant_min() const { return rule_.quant_min; }
  int64_t quant_max() const { return rule_.quant_max; }
  bool is_per_channel() const { return quant::is_per_channel(rule_.qscheme); }
  // The channel axis of per-channel observers, -1 for per tensor (PyTorch FakeQuantize.ch_axis).
  int64_t ch_axis() const { return ch_axis_; }

  std::string extra_repr() const override;  // "min_val=..., max_val=..."

 protected:
  // `name` is the class name, for error messages (type_name() is not usable in a constructor).
  ObserverBase(const std::string& name, const ObserverOptions& options, bool per_channel);
  Tensor forward_impl(const Tensor& input) override;
  // Folds the statistics of x (float32, non-empty) into min_val / max_val.
  virtual void observe(const Tensor& x) = 0;

  // min_val = min(min_val, min(x)), max_val likewise (per channel: per slice along ch_axis).
  void update_min_max(const Tensor& x);
  // The first batch sets min / max; later ones move them by averaging_constant c:
  // min_val += c * (min(x) - min_val), in float32 as PyTorch.
  void update_moving_average(const Tensor& x);

 private:
  // min / max of x: one value per tensor, or one per slice along ch_axis.
  std::pair<std::vector<float>, std::vector<float>> aminmax(const Tensor& x) const;
  bool observed() const;
  // Writes new statistics into the buffers in place, so handles to them stay valid.
  void store(const std::vector<float>& min_val, const std::vector<float>& max_val);

  QParamsRule rule_;
  int64_t ch_axis_;
  double averaging_constant_;
  Tensor eps_;
  Tensor min_val_;
  Tensor max_val_;
};

// torch.ao.quantization.MinMaxObserver: running min / max over all batches (per tensor).
class MinMaxObserver : public ObserverBase {
 public:
  explicit MinMaxObserver(const ObserverOptions& options = ObserverOptions());
  std::string type_name() const override { return "MinMaxObserver"; }

 protected:
  MinMaxObserver(const std::string& name, const ObserverOptions& options);
  void observe(const Tensor& x) override;
};

// torch.ao.quantization.MovingAverageMinMaxObserver: the first batch sets min / max; later ones
// move them by averaging_constant c: min += c * (batch_min - min), in float32.
class MovingAverageMinMaxObserver : public MinMaxObserver {
 public:
  explicit MovingAverageMinMaxObserver(const ObserverOptions& options = ObserverOptions());
  std::string type_name() const override { return "MovingAverageMinMaxObserver"; }

 protected:
  void observe(const Tensor& x) override;
};

// torch.ao.quantization.PerChannelMinMaxObserver: running min / max per slice along ch_axis.
class PerChannelMinMaxObserver : public ObserverBase {
 public:
  explicit PerChannelMinMaxObserver(
      const ObserverOptions& options = ObserverOptions().qscheme(QScheme::kPerChannelAffine));
  std::string type_name() const override { return "PerChannelMinMaxObserver"; }

 protected:
  PerChannelMinMaxObserver(const std::string& name, const ObserverOptions& options);
  void observe(const Tensor& x) override;
};

// torch.ao.quantization.MovingAveragePerChannelMinMaxObserver: per-channel moving average.
class MovingAveragePerChannelMinMaxObserver : public PerChannelMinMaxObserver {
 public:
  explicit MovingAveragePerChannelMinMaxObserver(
      const ObserverOptions& options = ObserverOptions().qscheme(QScheme::kPerChannelAffine));
  std::string type_name() const override { return "MovingAveragePerChannelMinMaxObserver"; }

 protected:
  void observe(const Tensor& x) override;
};

}  // namespace qat::quant
