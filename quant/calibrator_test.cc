#include "quant/calibrator.h"
#include "tests/testing/errors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace qat::quant {
namespace {

using qat::testing::error_of;

Tensor floats(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

// n samples of N(0, 1) and one outlier at `outlier` (which sets the histogram range).
HistogramCalibrator gaussian_with_outlier(int64_t n, float outlier) {
  HistogramCalibrator calib;
  calib.collect(floats({outlier}));
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  calib.collect(floats(v));
  return calib;
}

TEST(MaxCalibrator, RunningMaxOfAbsPerTensorAndPerAxis) {
  MaxCalibrator per_tensor;
  per_tensor.collect(floats({-3.0f, 1.0f}));
  per_tensor.collect(floats({2.0f}));
  EXPECT_EQ(per_tensor.compute_amax().dim(), 0);
  EXPECT_EQ(per_tensor.compute_amax().item(), 3.0);

  MaxCalibrator per_axis(0);  // weights [K, C]: one amax per output channel
  per_axis.collect(Tensor::from_vector(std::vector<float>{1, -4, 0.5f, 0.25f}, {2, 2}));
  per_axis.collect(Tensor::from_vector(std::vector<float>{2, 0, -0.1f, 0.75f}, {2, 2}));
  EXPECT_EQ(per_axis.compute_amax().to_vector<float>(), (std::vector<float>{4.0f, 0.75f}));
  EXPECT_NE(error_of([&] {
              per_axis.collect(Tensor::zeros({3, 2}));
            }).find("expected 2 channels along axis 0 as before, got input [3, 2]"),
            std::string::npos);
  per_axis.reset();
  EXPECT_NE(error_of([&] { per_axis.compute_amax(); }).find("no data collected"),
            std::string::npos);
}

TEST(HistogramCalibrator, BinsGrowWithTheRange) {
  HistogramCalibrator calib;
  calib.collect(floats({0.0f, 0.0f}));  // zeros before any range: kept for bin 0
  calib.collect(floats({-2.0f, 0.5f}));
  EXPECT_EQ(calib.histogram().size(), 2048u);
  EXPECT_EQ(calib.bin_width(), 2.0 / 2048);
  EXPECT_EQ(calib.histogram()[0], 2);
  EXPECT_EQ(calib.histogram()[512], 1);   // 0.5
  EXPECT_EQ(calib.histogram()[2047], 1);  // |-2|: the top edge is in the last bin
  calib.collect(floats({5.0f}));
  EXPECT_EQ(calib.histogram().size(), 5120u);  // same width, ceil(5 / width) bins
  EXPECT_EQ(calib.bin_width(), 2.0 / 2048);
  EXPECT_EQ(calib.histogram()[2047], 1);
  EXPECT_EQ(calib.histogram()[5119], 1);
}

// Width 1: bin j holds j + 0.5. 9999 values fill bins 0..99, one sits at the top (bin 2047).
HistogramCalibrator constructed_bulk_and_outlier() {
  HistogramCalibrator calib;
  calib.collect(floats({2048.0f}));
  std::vector<float> bulk;
  for (int i = 0; i < 9999; ++i) bulk.push_back(static_cast<float>(i % 100) + 0.5f);
  calib.collect(floats(bulk));
  return calib;
}

TEST(HistogramCalibrator, PercentileIsTheLeftEdgeWhereTheCdfArrives) {
  const HistogramCalibrator calib = constructed_bulk_and_outlier();
  // 99.99% of 10000 = 9999 values: reached in bin 99, whose left edge is 99.
  EXPECT_EQ(calib.compute_amax(CalibMethod::kPercentile).item(), 99.0);
  EXPECT_EQ(calib.compute_amax(CalibMethod::kPercentile, 100).item(), 2047.0);
  EXPECT_EQ(calib.compute_amax(CalibMethod::kPercentile, 50).item(), 49.0);
  EXPECT_NE(error_of([&] {
              calib.compute_amax(CalibMethod::kPercentile, 101);
            }).find("expected a percentile in [0, 100], got 101"),
            std::string::npos);
}

TEST(HistogramCalibrator, PercentileOfAGaussian) {
  // 99.99% of |N(0, 1)| lies below 3.8906; bins are 20 / 2048 wide.
  const HistogramCalibrator calib = gaussian_with_outlier(1000000, 20.0f);
  const double amax = calib.compute_amax(CalibMethod::kPercentile).item();
  EXPECT_NEAR(amax, 3.89, 0.08);
}

TEST(HistogramCalibrator, MseOfASingleValueIsItsBinCentre) {
  // Everything in the last bin: any amax below its centre clips, the centre itself is exact.
  HistogramCalibrator calib;
  calib.collect(Tensor::full({100}, 3.0));
  const double width = 3.0 / 2048;
  EXPECT_DOUBLE_EQ(calib.compute_amax(CalibMethod::kMse).item(),
                   static_cast<double>(static_cast<float>(2047.5 * width)));
}

TEST(HistogramCalibrator, MseAndEntropyClipALoneOutlier) {
  // The bulk's quantization error outweighs clipping one outlier at 20 sigma.
  const HistogramCalibrator calib = gaussian_with_outlier(1000000, 20.0f);
  for (CalibMethod method : {CalibMethod::kMse, CalibMethod::kEntropy}) {
    const double amax = calib.compute_amax(method).item();
    EXPECT_GT(amax, 3.5) << static_cast<int>(method);
    EXPECT_LT(amax, 5.0) << static_cast<int>(method);
  }
}

TEST(HistogramCalibrator, EntropyKeepsTheFullRangeOfAUniformHistogram) {
  // Every bin holds 10 values: merging into 128 quant bins loses nothing at i = 2048 (KL 0),
  // while any smaller i folds the tail into its last bin.
  HistogramCalibrator calib;
  calib.collect(floats({2048.0f}));
  std::vector<float> uniform;
  for (int j = 0; j < 2048; ++j) {
    for (int r = 0; r < (j == 2047 ? 9 : 10); ++r) uniform.push_back(static_cast<float>(j) + 0.5f);
  }
  calib.collect(floats(uniform));
  EXPECT_EQ(calib.compute_amax(CalibMethod::kEntropy).item(), 2048.0);
}

TEST(HistogramCalibrator, EntropyNeverClipsIntoAnEmptyBin) {
  // num_bins 256, width 1: bins 0..199 hold 5 values each, 200..254 are empty, bin 255 holds
  // the range-setting maximum. Clipping at i in 201..255 folds that maximum into an empty bin
  // (Q = 0 where P > 0: KL = inf); clipping at i <= 200 folds it into the bulk (KL > 0); at
  // i = 256 every 2-bin quant bin is uniform or holds the lone maximum alone, so Q = P: KL 0.
  HistogramCalibrator calib(HistogramCalibratorOptions().num_bins(256));
  calib.collect(floats({256.0f}));
  std::vector<float> bulk;
  for (int j = 0; j < 200; ++j) {
    for (int r = 0; r < 5; ++r) bulk.push_back(static_cast<float>(j) + 0.5f);
  }
  calib.collect(floats(bulk));
  EXPECT_EQ(calib.compute_amax(CalibMethod::kEntropy).item(), 256.0);
}

TEST(HistogramCalibrator, RefusesARangeThatOutgrowsTheBins) {
  HistogramCalibrator calib;
  calib.collect(floats({1e-6f}));  // bins of 1e-6 / 2048
  EXPECT_NE(error_of([&] { calib.collect(floats({100.0f})); })
                .find("set by the first batch (HINT: reset() and start with a representative"),
            std::string::npos);
}

TEST(HistogramCalibrator, ErrorsBeforeData) {
  HistogramCalibrator calib;
  EXPECT_NE(error_of([&] {
              calib.compute_amax(CalibMethod::kEntropy);
            }).find("no non-zero data collected"),
            std::string::npos);
  calib.collect(floats({0.0f}));
  EXPECT_NE(
      error_of([&] { calib.compute_amax(CalibMethod::kMse); }).find("no non-zero data collected"),
      std::string::npos);
  EXPECT_NE(error_of([&] { calib.collect(floats({NAN})); }).find("expected finite values"),
            std::string::npos);
}

}  // namespace
}  // namespace qat::quant
