#include "nn/data/transforms.h"

#include <set>

#include <gtest/gtest.h>

#include "core/serialize.h"
#include "nn/data/test_util.h"
#include "tests/testing/compare.h"

namespace qat::nn::data {
namespace {

using test_util::throws_error_with;

// The fixture formula shared with the PyTorch snippets below: x[i] = (i * 37 % 101) / 101.
Tensor test_image(int64_t C, int64_t H, int64_t W) {
  Tensor t = Tensor::empty({C, H, W});
  for (int64_t i = 0; i < t.numel(); ++i) {
    t.data<float>()[i] = static_cast<float>((i * 37) % 101) / 101.0f;
  }
  return t;
}

TEST(Normalize, SubtractsMeanAndDividesByStdPerChannel) {
  Generator gen;
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 1, 2});
  const Tensor y = Normalize({1.0f, 2.0f, 3.0f}, {0.5f, 2.0f, 4.0f})(x, gen);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0, 2, 0.5f, 1, 0.5f, 0.75f}));
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));  // input untouched
  // One value applies to every channel.
  EXPECT_EQ(Normalize({1.0f}, {2.0f})(x, gen).to_vector<float>(),
            (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        Normalize({0, 0}, {1, 1})(x, gen);
      },
      {"2 mean/std values for an image with 3 channels"}));
  EXPECT_TRUE(throws_error_with([] { Normalize({0}, {0}); }, {"std must be non-zero"}));
  EXPECT_TRUE(throws_error_with([] { Normalize({0, 1}, {1}); }, {"same, non-zero length"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        Normalize({0}, {1})(Tensor::zeros({4, 4}), gen);
      },
      {"Normalize: expected a [C, H, W] float32 image, got [4, 4]"}));
}

TEST(Pad, SurroundsEveryChannelWithTheFillValue) {
  Generator gen;
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 1, 2});
  const Tensor y = Pad(1, -1.0f)(x, gen);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(y.to_vector<float>(),
            (std::vector<float>{-1, -1, -1, -1, -1, 1, 2, -1, -1, -1, -1, -1,
                                -1, -1, -1, -1, -1, 3, 4, -1, -1, -1, -1, -1}));
  EXPECT_EQ(Pad(2)(Tensor::zeros({1, 28, 28}), gen).shape(), (Shape{1, 32, 32}));
  EXPECT_TRUE(throws_error_with([] { Pad(-1); }, {"padding must be >= 0"}));
}

TEST(RandomCrop, TakesEveryWindowOfThePaddedImageUniformly) {
  Generator gen(7);
  const Tensor x = test_image(2, 3, 3);
  const Tensor padded = Pad(2)(x, gen);
  const RandomCrop crop(3, /*padding=*/2);
  std::set<std::pair<int64_t, int64_t>> offsets_seen;
  for (int draw = 0; draw < 500; ++draw) {
    const Tensor y = crop(x, gen);
    ASSERT_EQ(y.shape(), (Shape{2, 3, 3}));
    // y must equal exactly one 3x3 window of the padded image.
    int matches = 0;
    for (int64_t top = 0; top <= 4; ++top) {
      for (int64_t left = 0; left <= 4; ++left) {
        bool equal = true;
        for (int64_t c = 0; c < 2 && equal; ++c) {
          for (int64_t h = 0; h < 3 && equal; ++h) {
            for (int64_t w = 0; w < 3 && equal; ++w) {
              equal = y.data<float>()[(c * 3 + h) * 3 + w] ==
                      padded.data<float>()[(c * 7 + top + h) * 7 + left + w];
            }
          }
        }
        if (equal) {
          ++matches;
          offsets_seen.emplace(top, left);
        }
      }
    }
    ASSERT_EQ(matches, 1) << "draw " << draw;
  }
  EXPECT_EQ(offsets_seen.size(), 25u);  // every offset in [0, 4] x [0, 4]

  Generator a(3), b(3);
  EXPECT_EQ(crop(x, a).to_vector<float>(), crop(x, b).to_vector<float>());
  EXPECT_TRUE(throws_error_with([&] { RandomCrop(8, 2)(x, gen); },
                                {"crop size 8 is larger than the padded image [2, 7, 7]"}));
}

TEST(RandomHorizontalFlip, MirrorsTheWidthAxisWithProbabilityP) {
  Generator gen(1);
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  EXPECT_EQ(RandomHorizontalFlip(1.0)(x, gen).to_vector<float>(),
            (std::vector<float>{3, 2, 1, 6, 5, 4}));
  EXPECT_EQ(RandomHorizontalFlip(0.0)(x, gen).to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));  // input untouched

  const RandomHorizontalFlip flip;
  int flipped = 0;
  for (int i = 0; i < 2000; ++i) flipped += flip(x, gen).data<float>()[0] == 3.0f;
  EXPECT_NEAR(flipped, 1000, 120);  // ~5 standard deviations
  EXPECT_TRUE(throws_error_with([] { RandomHorizontalFlip(1.5); }, {"p must be in [0, 1]"}));
}

// Expected values from PyTorch 1.13:
//   x = torch.tensor([((i * 37) % 101) / 101.0 for i in range(70)]).view(2, 5, 7)
//   F.interpolate(x[None], size=(8, 4), mode="bilinear", align_corners=False)[0]
TEST(Resize, MatchesTorchBilinearWithoutAlignCorners) {
  Generator gen;
  const Tensor expected = Tensor::from_vector<float>(
      {
          0.137376249f, 0.65346539f,  0.419554472f, 0.435643554f, 0.384282202f, 0.517558813f,
          0.283647895f, 0.518486977f, 0.674504995f, 0.370281547f, 0.136370659f, 0.6212098f,
          0.40222773f,  0.644879282f, 0.410968423f, 0.583307564f, 0.325262994f, 0.685102105f,
          0.451191187f, 0.623530328f, 0.443610758f, 0.490949869f, 0.257038981f, 0.741878092f,
          0.421333551f, 0.718672633f, 0.484761775f, 0.508663356f, 0.394801974f, 0.910891116f,
          0.676980257f, 0.318069339f, 0.584158421f, 0.600247562f, 0.366336644f, 0.257425725f,
          0.557626843f, 0.409653485f, 0.558555067f, 0.340269178f, 0.535349667f, 0.192063734f,
          0.778465331f, 0.442991942f, 0.653697431f, 0.466661513f, 0.506188095f, 0.405089736f,
          0.693920195f, 0.506884277f, 0.546410918f, 0.4453125f,   0.656017959f, 0.312732071f,
          0.899133682f, 0.563660324f, 0.407178223f, 0.540454865f, 0.689356446f, 0.541383088f,
          0.216584161f, 0.732673287f, 0.498762399f, 0.514851511f,
      },
      {2, 8, 4});
  EXPECT_TRUE(testing::all_close(Resize(8, 4)(test_image(2, 5, 7), gen), expected, 1e-6, 1e-7));
}

// Same formula, 28x28 -> 32x32: sum 506.492655 and four sampled values.
TEST(Resize, MatchesTorchOnFashionMnistSize) {
  Generator gen;
  const Tensor y = Resize(32, 32)(test_image(1, 28, 28), gen);
  ASSERT_EQ(y.shape(), (Shape{1, 32, 32}));
  double sum = 0;
  for (float v : y.to_vector<float>()) sum += v;
  EXPECT_NEAR(sum, 506.492655, 1e-4);
  const float* v = y.data<float>();
  EXPECT_NEAR(v[0], 0.0f, 1e-7);
  EXPECT_NEAR(v[5 * 32 + 17], 0.536509931f, 1e-6);
  EXPECT_NEAR(v[31 * 32 + 31], 0.841584146f, 1e-6);
  EXPECT_NEAR(v[16 * 32 + 3], 0.526608944f, 1e-6);
}

TEST(Resize, SameSizeIsIdentityAndConstantsStayConstant) {
  Generator gen;
  const Tensor x = test_image(3, 6, 5);
  EXPECT_EQ(Resize(6, 5)(x, gen).to_vector<float>(), x.to_vector<float>());
  for (float v : Resize(13, 2)(Tensor::full({1, 4, 9}, 0.25), gen).to_vector<float>()) {
    ASSERT_EQ(v, 0.25f);
  }
  EXPECT_TRUE(throws_error_with([] { Resize(0, 3); }, {"size must be positive"}));
}

// From tests/golden/gen_image_fixtures.py (torchvision 0.14 on tensors, antialias=False).
Tensor fixture(const std::string& name) {
  static const NamedTensors tensors =
      load_safetensors("nn/data/testdata/image_fixtures.safetensors");
  for (const auto& [key, t] : tensors) {
    if (key == name) return t;
  }
  ADD_FAILURE() << "no fixture tensor " << name;
  return Tensor::zeros({1});
}

TEST(Resize, ShorterSideMatchesTorchvision) {
  Generator gen;
  const Tensor x = test_image(3, 7, 10);
  EXPECT_EQ(Resize(4).output_size(7, 10), std::make_pair(int64_t{4}, int64_t{5}));  // int(40/7)
  EXPECT_EQ(Resize(4).output_size(10, 7), std::make_pair(int64_t{5}, int64_t{4}));
  EXPECT_EQ(Resize(3).output_size(6, 6), std::make_pair(int64_t{3}, int64_t{3}));
  EXPECT_EQ(Resize(5, 3).output_size(7, 10), std::make_pair(int64_t{5}, int64_t{3}));
  EXPECT_TRUE(testing::all_close(Resize(4)(x, gen), fixture("resize.short4"), 1e-6, 1e-7));
  EXPECT_TRUE(testing::all_close(Resize(9)(x, gen), fixture("resize.short9"), 1e-6, 1e-7));
  EXPECT_TRUE(testing::all_close(Resize(5, 3)(x, gen), fixture("resize.hw5x3"), 1e-6, 1e-7));
  // Already the target size: returned as is, as torchvision does.
  EXPECT_EQ(Resize(7)(x, gen).data<float>(), x.data<float>());
  EXPECT_TRUE(throws_error_with([] { Resize(0); }, {"size must be positive, got 0"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        Resize(4)(Tensor::zeros({1, 0, 3}), gen);
      },
      {"cannot resize an empty image [1, 0, 3]"}));
}

TEST(CenterCrop, MatchesTorchvisionIncludingZeroPadding) {
  Generator gen;
  const Tensor x = test_image(3, 7, 10);
  EXPECT_EQ(CenterCrop(4, 5)(x, gen).to_vector<float>(),
            fixture("center_crop.4x5").to_vector<float>());
  EXPECT_EQ(CenterCrop(9, 4)(x, gen).to_vector<float>(),  // 7 rows padded to 9
            fixture("center_crop.9x4").to_vector<float>());
  // Offsets round half to even, as Python's round(): (5 - 2) / 2 = 1.5 -> 2; (7 - 2) / 2 -> 2.
  const Tensor row = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6}, {1, 1, 7});
  EXPECT_EQ(CenterCrop(1, 2)(row, gen).to_vector<float>(), (std::vector<float>{2, 3}));
  const Tensor five = Tensor::from_vector<float>({0, 1, 2, 3, 4}, {1, 1, 5});
  EXPECT_EQ(CenterCrop(1, 2)(five, gen).to_vector<float>(), (std::vector<float>{2, 3}));
  EXPECT_EQ(CenterCrop(1, 8)(five, gen).to_vector<float>(),  // pad 1 before, 2 after
            (std::vector<float>{0, 0, 1, 2, 3, 4, 0, 0}));
  EXPECT_TRUE(throws_error_with([] { CenterCrop(0); }, {"CenterCrop: size must be positive"}));
}

TEST(RandomResizedCrop, ResizedCropMatchesTorchvision) {
  Generator gen;
  const Tensor box = fixture("resized_crop.box");
  const std::vector<int64_t> b = box.to_vector<int64_t>();
  const Tensor y = resized_crop(test_image(3, 7, 10), CropBox{b[0], b[1], b[2], b[3]}, 6, 6);
  EXPECT_TRUE(testing::all_close(y, fixture("resized_crop.y"), 1e-6, 1e-7));
  EXPECT_TRUE(throws_error_with(
      [] {
        resized_crop(test_image(1, 4, 4), CropBox{1, 0, 4, 4}, 2, 2);
      },
      {"box (top 1, left 0, 4x4) is not inside the image [1, 4, 4]"}));
}

TEST(RandomResizedCrop, FallbackMatchesTorchvision) {
  // scale (2, 3) asks for more than the whole image, so all ten tries fail.
  const RandomResizedCrop rrc(8, {2.0, 3.0});
  Generator gen(1);
  for (const auto& [h, w] :
       std::vector<std::pair<int64_t, int64_t>>{{10, 40}, {40, 10}, {30, 32}, {7, 3}}) {
    const CropBox box = rrc.get_params(h, w, gen);
    EXPECT_EQ(
        (std::vector<int64_t>{box.top, box.left, box.height, box.width}),
        fixture("rrc_fallback." + std::to_string(h) + "x" + std::to_string(w)).to_vector<int64_t>())
        << h << "x" << w;
  }
}

TEST(RandomResizedCrop, BoxesRespectScaleAndRatio) {
  const RandomResizedCrop rrc(5, 7);
  Generator gen(11);
  const int64_t H = 40, W = 60;
  std::set<int64_t> tops, heights;
  for (int draw = 0; draw < 1000; ++draw) {
    const CropBox box = rrc.get_params(H, W, gen);
    ASSERT_TRUE(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 &&
                box.top + box.height <= H && box.left + box.width <= W);
    tops.insert(box.top);
    heights.insert(box.height);
    if (box.height == H && box.width == W) continue;  // rare fallback
    // Rounding w and h to integers moves area and ratio a little off their ranges.
    const double area = static_cast<double>(box.height * box.width) / (H * W);
    const double ratio = static_cast<double>(box.width) / box.height;
    EXPECT_GE(area, 0.08 * 0.8);
    EXPECT_LE(area, 1.0);
    EXPECT_GE(ratio, 0.75 * 0.8);
    EXPECT_LE(ratio, 4.0 / 3.0 * 1.25);
  }
  EXPECT_GT(tops.size(), 20u);
  EXPECT_GT(heights.size(), 20u);

  const Tensor x = test_image(2, H, W);
  Generator a(5), b(5);
  const Tensor y = rrc(x, a);
  EXPECT_EQ(y.shape(), (Shape{2, 5, 7}));
  EXPECT_EQ(y.to_vector<float>(), rrc(x, b).to_vector<float>());  // same seed, same crop

  // scale (1, 1) and the image's own ratio: the whole image, resized.
  Generator c(2);
  EXPECT_EQ(RandomResizedCrop(5, 7, {1.0, 1.0}, {1.5, 1.5})(x, c).to_vector<float>(),
            Resize(5, 7)(x, c).to_vector<float>());
  EXPECT_TRUE(throws_error_with(
      [] {
        RandomResizedCrop(4, {0.5, 0.1});
      },
      {"scale must be (min, max) with 0 <= min <= max"}));
  EXPECT_TRUE(throws_error_with(
      [] {
        RandomResizedCrop(4, {0.1, 1.0}, {0.0, 1.0});
      },
      {"ratio must be (min, max) with 0 < min <= max"}));
}

TEST(Compose, AppliesTransformsInOrder) {
  Generator gen;
  const Compose pad_then_normalize({Pad(1), Normalize({1.0f}, {2.0f})});
  const Tensor y = pad_then_normalize(Tensor::full({1, 1, 1}, 5.0), gen);
  // The padding (0) is normalized too: (0 - 1) / 2.
  EXPECT_EQ(y.to_vector<float>(),
            (std::vector<float>{-0.5f, -0.5f, -0.5f, -0.5f, 2.0f, -0.5f, -0.5f, -0.5f, -0.5f}));
}

}  // namespace
}  // namespace qat::nn::data
