#include "quant/calibrator.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/shape.h"

namespace qat::quant {
namespace {

constexpr int64_t kParallelGrain = 1 << 15;
// A histogram grows with the range; past this many bins the first batch was unrepresentative.
constexpr double kMaxBins = 1 << 22;

// |x| as float32 (pytorch-quantization calibrates x.float()).
std::vector<float> abs_values(const Tensor& x, const char* api) {
  QAT_CHECK(is_floating(x.dtype()), api, ": expected a float32 or float64 input, got ",
            dtype_name(x.dtype()));
  std::vector<float> v = x.to_vector<float>();
  for (float& e : v) {
    QAT_CHECK(std::isfinite(e), api, ": expected finite values, got ", e);
    e = std::fabs(e);
  }
  return v;
}

}  // namespace

// ---- MaxCalibrator

MaxCalibrator::MaxCalibrator(std::optional<int64_t> axis) : axis_(axis) {}

void MaxCalibrator::collect(const Tensor& x) {
  if (x.numel() == 0) return;
  const std::vector<float> v = abs_values(x, "MaxCalibrator.collect");
  int64_t outer = 1, channels = 1, inner = x.numel();
  if (axis_) {
    const int64_t rank = x.dim();
    QAT_CHECK(-rank <= *axis_ && *axis_ < rank, "MaxCalibrator.collect: axis ", *axis_,
              " out of range for an input of shape ", shape_str(x.shape()));
    const int64_t a = normalize_dim(*axis_, rank);
    channels = x.size(a);
    outer = shape_numel(Shape(x.shape().begin(), x.shape().begin() + a));
    inner = shape_numel(Shape(x.shape().begin() + a + 1, x.shape().end()));
  }
  QAT_CHECK(amax_.empty() || static_cast<int64_t>(amax_.size()) == channels,
            "MaxCalibrator.collect: expected ", amax_.size(), " channels along axis ",
            axis_.value_or(0), " as before, got input ", shape_str(x.shape()));
  if (amax_.empty()) amax_.assign(channels, 0.0f);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* row = v.data() + (o * channels + c) * inner;  // [inner]
      for (int64_t i = 0; i < inner; ++i) amax_[c] = std::max(amax_[c], row[i]);
    }
  }
}

Tensor MaxCalibrator::compute_amax() const {
  QAT_CHECK(!amax_.empty(),
            "MaxCalibrator.compute_amax: no data collected (HINT: call "
            "collect() on calibration batches first)");
  if (!axis_) return Tensor::scalar(amax_[0]);
  return Tensor::from_vector(amax_, {static_cast<int64_t>(amax_.size())});
}

void MaxCalibrator::reset() { amax_.clear(); }

// ---- HistogramCalibrator

HistogramCalibrator::HistogramCalibrator(const HistogramCalibratorOptions& options)
    : options_(options) {
  QAT_CHECK(options.num_bins() > 0, "HistogramCalibrator: expected num_bins > 0, got ",
            options.num_bins());
  QAT_CHECK(options.num_bits() >= 2 && options.num_bits() <= 16,
            "HistogramCalibrator: expected num_bits in [2, 16], got ", options.num_bits());
  QAT_CHECK(options.start_bin() >= 1 && options.stride() >= 1,
            "HistogramCalibrator: expected start_bin >= 1 and stride >= 1, got ",
            options.start_bin(), " and ", options.stride());
}

void HistogramCalibrator::collect(const Tensor& x) {
  const std::vector<float> v = abs_values(x, "HistogramCalibrator.collect");
  const int64_t n = static_cast<int64_t>(v.size());
  const float x_max = n == 0 ? 0.0f : *std::max_element(v.begin(), v.end());
  if (hist_.empty()) {
    if (x_max == 0) {  // all zeros: no range to bin them against yet
      pending_zeros_ += n;
      return;
    }
    width_ = static_cast<double>(x_max) / static_cast<double>(options_.num_bins());
    hist_.assign(options_.num_bins(), 0);
    hist_[0] += pending_zeros_;
    pending_zeros_ = 0;
  } else if (x_max > width_ * static_cast<double>(hist_.size())) {
    // Grow with bins of the same width, keeping the counts collected so far.
    const double bins = std::ceil(x_max / width_);
    QAT_CHECK(bins <= kMaxBins, "HistogramCalibrator.collect: max |x| = ", x_max, " needs ", bins,
              " bins of the width ", width_,
              " set by the first batch (HINT: reset() and start with a representative batch)");
    hist_.resize(static_cast<size_t>(bins), 0);
  }
  const int64_t bins = static_cast<int64_t>(hist_.size());
  // Integer counts: per-thread histograms add up to the same result in any order.
#pragma omp parallel if (n > kParallelGrain)
  {
    std::vector<int64_t> local(bins, 0);
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) {
      // The top edge belongs to the last bin, as torch.histc.
      ++local[std::min(bins - 1, static_cast<int64_t>(v[i] / width_))];
    }
#pragma omp critical
    for (int64_t b = 0; b < bins; ++b) hist_[b] += local[b];
  }
}

Tensor HistogramCalibrator::compute_amax(CalibMethod method, double percentile) const {
  QAT_CHECK(!hist_.empty(),
            "HistogramCalibrator.compute_amax: no non-zero data collected "
            "(HINT: call collect() on calibration batches first)");
  double amax = 0;
  switch (method) {
    case CalibMethod::kPercentile:
      amax = compute_percentile(percentile);
      break;
    case CalibMethod::kMse:
      amax = compute_mse();
      break;
    case CalibMethod::kEntropy:
      amax = compute_entropy();
      break;
  }
  return Tensor::scalar(amax);
}

void HistogramCalibrator::reset() {
  hist_.clear();
  width_ = 0;
  pending_zeros_ = 0;
}

// pytorch-quantization's _compute_amax_percentile: the left edge of the first bin where the
// CDF reaches percentile / 100 (compared on integer counts here, so no float cumsum drift).
double HistogramCalibrator::compute_percentile(double percentile) const {
  QAT_CHECK(percentile >= 0 && percentile <= 100,
            "HistogramCalibrator.compute_amax: expected a percentile in [0, 100], got ",
            percentile);
  int64_t total = 0;
  for (int64_t count : hist_) total += count;
  const double target = percentile / 100.0 * static_cast<double>(total);
  int64_t cumulative = 0;
  for (size_t i = 0; i < hist_.size(); ++i) {
    cumulative += hist_[i];
    if (static_cast<double>(cumulative) >= target) return static_cast<double>(i) * width_;
  }
  return static_cast<double>(hist_.size() - 1) * width_;
}

// pytorch-quantization's _compute_amax_mse: for each candidate amax = centre of bin i
// (i >= start_bin), fake-quantize every bin centre to num_bits with that amax and weight the
// squared error by the bin's count; the first minimum wins.
double HistogramCalibrator::compute_mse() const {
  const int64_t bins = static_cast<int64_t>(hist_.size());
  QAT_CHECK(bins > options_.start_bin(), "HistogramCalibrator.compute_amax(mse): expected more ",
            "than start_bin = ", options_.start_bin(), " bins, got ", bins);
  const int64_t bits = options_.num_bits();
  const double max_bound =
      options_.is_unsigned() ? std::ldexp(1.0, bits) - 1 : std::ldexp(1.0, bits - 1) - 1;
  // Only centres >= 0 are quantized, so the lower bound never binds.
  auto centre = [&](int64_t i) { return (static_cast<double>(i) + 0.5) * width_; };
  double best_mse = std::numeric_limits<double>::infinity();
  int64_t best = options_.start_bin();
  for (int64_t i = options_.start_bin(); i < bins; i += options_.stride()) {
    const double step_inv = max_bound / centre(i);  // pytorch-quantization's `scale`
    double mse = 0;
    for (int64_t j = 0; j < bins; ++j) {
      if (hist_[j] == 0) continue;
      const double q = std::min(std::nearbyint(centre(j) * step_inv), max_bound) / step_inv;
      mse += (q - centre(j)) * (q - centre(j)) * static_cast<double>(hist_[j]);
    }
    if (mse < best_mse) {
      best_mse = mse;
      best = i;
    }
  }
  return centre(best);
}

// TensorRT's entropy calibration as pytorch-quantization's _compute_amax_entropy. For each
// candidate clip bin i: the reference distribution P is bins [0, i) with everything beyond
// folded into bin i - 1; the candidate Q merges those bins into 2^(bits-1) quant bins
// (bin j -> j * nq / i) and spreads each quant bin's count evenly over its non-empty source
// bins. amax = i * width for the last i that minimises KL(P || Q). Bin 0 counts as bin 1 (it
// is dominated by exact zeros, e.g. after ReLU).
double HistogramCalibrator::compute_entropy() const {
  const int64_t stop = static_cast<int64_t>(hist_.size());
  QAT_CHECK(stop >= options_.start_bin(), "HistogramCalibrator.compute_amax(entropy): expected ",
            "at least start_bin = ", options_.start_bin(), " bins, got ", stop);
  const int64_t nq = int64_t{1} << (options_.num_bits() - 1 + (options_.is_unsigned() ? 1 : 0));
  std::vector<double> bins(hist_.begin(), hist_.end());
  if (stop > 1) bins[0] = bins[1];
  // suffix[i] = sum of bins[i:]
  std::vector<double> suffix(stop + 1, 0.0);
  for (int64_t i = stop - 1; i >= 0; --i) suffix[i] = suffix[i + 1] + bins[i];

  std::vector<double> group_sum(nq), group_nonzero(nq), p, q;
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best = stop;
  for (int64_t i = options_.start_bin(); i <= stop; i += options_.stride()) {
    std::fill(group_sum.begin(), group_sum.end(), 0.0);
    std::fill(group_nonzero.begin(), group_nonzero.end(), 0.0);
    for (int64_t j = 0; j < i; ++j) {
      if (bins[j] == 0) continue;
      group_sum[j * nq / i] += bins[j];
      group_nonzero[j * nq / i] += 1;
    }
    p.assign(bins.begin(), bins.begin() + i);
    p[i - 1] += suffix[i];
    q.assign(i, 0.0);
    for (int64_t j = 0; j < i; ++j) {
      if (bins[j] != 0) q[j] = group_sum[j * nq / i] / group_nonzero[j * nq / i];
    }
    // KL(P || Q) of the normalized distributions (scipy.stats.entropy).
    double p_total = 0, q_total = 0;
    for (int64_t j = 0; j < i; ++j) {
      p_total += p[j];
      q_total += q[j];
    }
    double kl = 0;
    for (int64_t j = 0; j < i && q_total > 0; ++j) {
      if (p[j] == 0) continue;
      if (q[j] == 0) {
        kl = std::numeric_limits<double>::infinity();
        break;
      }
      const double pj = p[j] / p_total, qj = q[j] / q_total;
      kl += pj * std::log(pj / qj);
    }
    if (q_total == 0) kl = std::numeric_limits<double>::infinity();
    if (kl <= best_kl) {  // <=: the last argmin
      best_kl = kl;
      best = i;
    }
  }
  return static_cast<double>(best) * width_;
}

}  // namespace qat::quant
