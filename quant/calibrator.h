#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/arg.h"
#include "core/tensor.h"

// Calibrators for the TensorRT / TNN targets, after NVIDIA pytorch-quantization's
// calib/max.py and calib/histogram.py (onnx_qdq.md §5). They collect statistics of |x| over
// calibration batches and return amax; quant::qparams_from_amax turns it into scale = amax / 127.
// They are plain objects, not Modules: their state is not part of a checkpoint.
namespace qat::quant {

// Running max of |x| (pytorch-quantization MaxCalibrator), over the whole tensor or per slice
// along `axis` (per-channel weights: axis 0).
class MaxCalibrator {
 public:
  explicit MaxCalibrator(std::optional<int64_t> axis = std::nullopt);

  void collect(const Tensor& x);  // float32 or float64, any shape
  // float32: 0-d per tensor, [x.size(axis)] per axis. Error before the first collect().
  Tensor compute_amax() const;
  void reset();

 private:
  std::optional<int64_t> axis_;
  std::vector<float> amax_;  // [1] or [C]; empty until the first collect()
};

enum class CalibMethod {
  kPercentile,  // the bin edge where the CDF of |x| first reaches `percentile`
  kMse,         // bin centre (from start_bin on) minimising the count-weighted quantization MSE
  kEntropy,     // TensorRT's KL-divergence calibration: 2^(bits-1) quant bins, last argmin
};

struct HistogramCalibratorOptions {
  QAT_ARG(int64_t, num_bins) = 2048;
  QAT_ARG(int64_t, num_bits) = 8;
  QAT_ARG(bool, is_unsigned) = false;  // pytorch-quantization's `unsigned`
  // First candidate bin and step for kMse and kEntropy (pytorch-quantization's defaults).
  QAT_ARG(int64_t, start_bin) = 128;
  QAT_ARG(int64_t, stride) = 1;
};

// Histogram of |x| with num_bins bins over [0, max|x|] of the first batch that has a non-zero
// value; a later batch with a larger max appends bins of the same width until it fits
// (pytorch-quantization's torch histogram path). Per tensor only.
class HistogramCalibrator {
 public:
  explicit HistogramCalibrator(
      const HistogramCalibratorOptions& options = HistogramCalibratorOptions());

  void collect(const Tensor& x);  // float32 or float64, any shape
  // amax as a float32 0-d tensor. Error before any non-zero value was collected.
  Tensor compute_amax(CalibMethod method, double percentile = 99.99) const;
  void reset();

  const std::vector<int64_t>& histogram() const { return hist_; }
  double bin_width() const { return width_; }  // 0 until the range is known

 private:
  double compute_percentile(double percentile) const;
  double compute_mse() const;
  double compute_entropy() const;

  HistogramCalibratorOptions options_;
  std::vector<int64_t> hist_;  // [bins]; bin i counts |x| in [i * width, (i + 1) * width)
  double width_ = 0;
  int64_t pending_zeros_ = 0;  // zeros seen before the range was known; they go to bin 0
};

}  // namespace qat::quant
