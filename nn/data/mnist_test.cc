#include "nn/data/mnist.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "nn/data/test_util.h"

namespace qat::nn::data {
namespace {

using test_util::gzip;
using test_util::idx_file;
using test_util::throws_error_with;

constexpr uint32_t kImages = 0x803, kLabels = 0x801;

// Three 2x3 images with pixel values 0..17, labels 9, 0, 5.
std::vector<uint8_t> small_images() {
  std::vector<uint8_t> pixels(18);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 15);
  return idx_file(kImages, {3, 2, 3}, pixels);
}

std::vector<uint8_t> small_labels() { return idx_file(kLabels, {3}, {9, 0, 5}); }

TEST(FashionMnist, ReadsGzippedFilesFromRoot) {
  const std::string root = test_util::scratch_dir("mnist_root");
  test_util::write_file(root + "/t10k-images-idx3-ubyte.gz", gzip(small_images()));
  test_util::write_file(root + "/t10k-labels-idx1-ubyte.gz", gzip(small_labels()));
  const FashionMnist test_set(root, /*train=*/false);
  ASSERT_EQ(test_set.size(), 3u);
  const Example e = test_set.get(1);
  EXPECT_EQ(e.label, 0);
  ASSERT_EQ(e.image.shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(e.image.dtype(), DType::kFloat32);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(e.image.data<float>()[i], static_cast<float>((6 + i) * 15) / 255.0f);
  }
  EXPECT_EQ(test_set.get(2).label, 5);
  EXPECT_TRUE(throws_error_with([&] { test_set.get(3); }, {"index 3 out of range for 3"}));
  EXPECT_TRUE(throws_error_with([&] { FashionMnist(root, /*train=*/true); },
                                {"cannot open '" + root + "/train-images-idx3-ubyte.gz'"}));
}

TEST(FashionMnist, ReadsRawAndGzippedBytes) {
  const FashionMnist raw(small_images(), "images", small_labels(), "labels");
  const FashionMnist gzipped(gzip(small_images()), "images", gzip(small_labels()), "labels");
  ASSERT_EQ(raw.size(), 3u);
  ASSERT_EQ(gzipped.size(), 3u);
  EXPECT_EQ(raw.get(2).image.to_vector<float>(), gzipped.get(2).image.to_vector<float>());
  EXPECT_EQ(raw.get(2).image.data<float>()[5], 1.0f);  // pixel 255
}

TEST(FashionMnist, RejectsMalformedIdx) {
  const auto load = [](const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels) {
    FashionMnist(images, "img.idx", labels, "lbl.idx");
  };
  std::vector<uint8_t> images = small_images(), labels = small_labels();

  EXPECT_TRUE(throws_error_with([&] { load(labels, labels); },
                                {"img.idx", "bad magic 0x00000801, expected 0x00000803"}));
  EXPECT_TRUE(throws_error_with([&] { load(images, images); }, {"lbl.idx", "bad magic"}));
  EXPECT_TRUE(throws_error_with([&] { load({0, 0}, labels); }, {"img.idx", "too short"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        load({0, 0, 8, 3, 0, 0, 0, 1}, labels);
      },
      {"img.idx", "truncated header"}));
  const std::vector<uint8_t> short_pixels(images.begin(), images.end() - 1);
  EXPECT_TRUE(throws_error_with([&] { load(short_pixels, labels); },
                                {"img.idx", "3 images of 2x3 but 17 bytes of pixels follow"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        load(idx_file(kImages, {1, 0, 3}, {}), labels);
      },
      {"image size must be positive"}));
  // 2^32-1 images of (2^32-1)^2 pixels: the product overflows 64 bits.
  EXPECT_TRUE(throws_error_with(
      [&] {
        load(idx_file(kImages, {0xffffffff, 0xffffffff, 0xffffffff}, {1, 2}), labels);
      },
      {"img.idx", "4294967295 images"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        load(images, idx_file(kLabels, {4}, {1, 2, 3}));
      },
      {"lbl.idx", "4 labels but 3 bytes follow"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        load(images, idx_file(kLabels, {2}, {1, 2}));
      },
      {"img.idx holds 3 images but lbl.idx holds 2 labels"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        load(images, idx_file(kLabels, {3}, {1, 10, 2}));
      },
      {"lbl.idx", "label 10 of example 1 is out of range [0, 10)"}));
}

TEST(FashionMnist, RejectsBrokenGzip) {
  const std::vector<uint8_t> gz = gzip(small_images());
  const auto load_images = [](const std::vector<uint8_t>& images) {
    FashionMnist(images, "img.gz", idx_file(kLabels, {3}, {1, 2, 3}), "lbl");
  };
  const std::vector<uint8_t> truncated(gz.begin(), gz.begin() + gz.size() / 2);
  EXPECT_TRUE(throws_error_with([&] { load_images(truncated); }, {"img.gz", "truncated gzip"}));

  std::vector<uint8_t> bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0x01;  // the CRC-32 sits in the 8-byte trailer
  EXPECT_TRUE(throws_error_with([&] { load_images(bad_crc); }, {"img.gz", "corrupt gzip"}));

  std::vector<uint8_t> trailing = gz;
  trailing.push_back(0);
  EXPECT_TRUE(throws_error_with([&] { load_images(trailing); },
                                {"img.gz", "1 unexpected bytes after the gzip stream"}));
}

TEST(FashionMnist, GunzipsLargeOutputsInSeveralSteps) {
  std::vector<uint8_t> raw(3 << 20);  // far beyond the initial output guess of 4x the input
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<uint8_t>((i * i) >> 7);
  const std::vector<uint8_t> gz = gzip(raw);
  EXPECT_EQ(gunzip(gz.data(), gz.size(), "big"), raw);
}

// Debian's dataset-fashion-mnist package, which CI installs.
TEST(FashionMnist, ReadsTheDebianPackage) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  ASSERT_TRUE(std::filesystem::exists(root + "/train-images-idx3-ubyte.gz"))
      << root << " is missing: apt-get install dataset-fashion-mnist";
  const FashionMnist train(root, /*train=*/true);
  const FashionMnist test(root, /*train=*/false);
  ASSERT_EQ(train.size(), 60000u);
  ASSERT_EQ(test.size(), 10000u);

  std::vector<int> train_histogram(10), test_histogram(10);
  double pixel_sum = 0;
  for (size_t i = 0; i < train.size(); ++i) {
    const Example e = train.get(i);
    ++train_histogram.at(e.label);
    for (float v : e.image.to_vector<float>()) pixel_sum += v;
  }
  for (size_t i = 0; i < test.size(); ++i) ++test_histogram.at(test.get(i).label);
  EXPECT_EQ(train_histogram, std::vector<int>(10, 6000));
  EXPECT_EQ(test_histogram, std::vector<int>(10, 1000));
  // The usual Normalize mean for Fashion-MNIST.
  EXPECT_NEAR(pixel_sum / (60000.0 * 28 * 28), 0.2860, 1e-4);

  const Example first = train.get(0);
  EXPECT_EQ(first.image.shape(), (Shape{1, 28, 28}));
  EXPECT_EQ(first.label, 9);  // an ankle boot
  EXPECT_EQ(test.get(0).label, 9);
}

}  // namespace
}  // namespace qat::nn::data
