#include "nn/data/image_folder.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include "core/serialize.h"
#include "nn/data/data_loader.h"
#include "nn/data/test_util.h"
#include "tests/testing/compare.h"

namespace qat::nn::data {
namespace {

namespace fs = std::filesystem;
using test_util::throws_error_with;

// The fixtures written by tests/golden/gen_image_fixtures.py (PIL 9.4, torchvision 0.14).
constexpr const char* kTestData = "nn/data/testdata/";

Tensor fixture(const std::string& name) {
  static const NamedTensors tensors =
      load_safetensors(std::string(kTestData) + "image_fixtures.safetensors");
  for (const auto& [key, t] : tensors) {
    if (key == name) return t;
  }
  ADD_FAILURE() << "no fixture tensor " << name;
  return Tensor::zeros({1});
}

// Pixel (y, x, c) of the test PNGs: a function of the position and `seed`.
uint8_t pixel(int y, int x, int c, int seed) {
  return static_cast<uint8_t>((seed * 101 + y * 31 + x * 17 + c * 89) % 256);
}

std::vector<uint8_t> rgb_pixels(int w, int h, int seed) {
  std::vector<uint8_t> px(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) px[(y * w + x) * 3 + c] = pixel(y, x, c, seed);
    }
  }
  return px;
}

void write_png(const std::string& path, int w, int h, int seed) {
  fs::create_directories(fs::path(path).parent_path());
  const std::vector<uint8_t> px = rgb_pixels(w, h, seed);
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, 3, px.data(), w * 3), 0) << path;
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), {});
}

// A PNG cut inside its image data: the header is intact (stbi_info succeeds), the body is not.
void write_truncated_png(const std::string& path) {
  write_png(path, 16, 16, 7);
  std::vector<uint8_t> bytes = read_bytes(path);
  bytes.resize(bytes.size() / 2);
  test_util::write_file(path, bytes);
}

// Collects skip reports.
struct Reports {
  std::vector<std::string> paths;
  UnreadableImageFn fn() {
    return [this](const std::string& path, const std::string&) { paths.push_back(path); };
  }
};

TEST(ImageFolder, SortsClassesAndFilesAndLabelsByClassIndex) {
  const std::string root = test_util::scratch_dir("if_sorted");
  write_png(root + "/dog/b.png", 3, 2, 1);
  write_png(root + "/dog/A.PNG", 3, 2, 2);  // extensions are case-insensitive
  write_png(root + "/dog/sub/c.png", 3, 2, 3);
  write_png(root + "/dog/a-b/d.png", 3, 2, 4);  // "dog/a-b" < "dog/sub" (os.walk order)
  write_png(root + "/cat/x.Png", 2, 2, 5);
  write_png(root + "/cat/x.bmp", 2, 2, 6);  // not an extension of ours: ignored
  write_text(root + "/cat/notes.txt", "ignored");
  write_text(root + "/README.txt", "files in root are not classes");

  const ImageFolder folder(root);
  EXPECT_EQ(folder.classes(), (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(folder.class_to_idx().at("dog"), 1);
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {root + "/cat/x.Png", 0},     {root + "/dog/A.PNG", 1},     {root + "/dog/b.png", 1},
      {root + "/dog/a-b/d.png", 1}, {root + "/dog/sub/c.png", 1},
  };
  EXPECT_EQ(folder.samples(), expected);
  ASSERT_EQ(folder.size(), 5u);
  EXPECT_TRUE(folder.unreadable().empty());

  // Pixels: [3, H, W] float32, value / 255 (ToTensor).
  const Example e = folder.get(2);  // dog/b.png, seed 1
  EXPECT_EQ(e.label, 1);
  ASSERT_EQ(e.image.shape(), (Shape{3, 2, 3}));
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 2; ++y) {
      for (int x = 0; x < 3; ++x) {
        ASSERT_EQ(e.image.data<float>()[(c * 2 + y) * 3 + x],
                  static_cast<float>(pixel(y, x, c, 1)) / 255.0f);
      }
    }
  }
  EXPECT_EQ(folder.get(0).image.shape(), (Shape{3, 2, 2}));
  EXPECT_TRUE(throws_error_with([&] { folder.get(5); }, {"index 5 out of range for 5"}));
}

// The committed fixtures were written by PIL (libpng, libjpeg); the expected tensors are
// torchvision's pil_loader + ToTensor, and convert("L") for one channel.
TEST(ImageFolder, DecodesLikeTorchvisionPilLoader) {
  const std::string root = test_util::scratch_dir("if_pil");
  const std::vector<std::string> files = {"gray.png", "palette.png", "photo.jpg", "rgb.png",
                                          "rgba.png"};  // sorted, as the dataset orders them
  fs::create_directories(root + "/all");
  for (const std::string& f : files) fs::copy_file(kTestData + f, root + "/all/" + f);

  const ImageFolder rgb(root);
  const ImageFolder gray(root, ImageFolderOptions().channels(1));
  ASSERT_EQ(rgb.size(), files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    SCOPED_TRACE(files[i]);
    std::string key = files[i];
    key[key.find('.')] = '_';
    const bool jpeg = files[i] == "photo.jpg";
    // stb_image and libjpeg differ in IDCT and chroma upsampling: at most 2 levels here.
    const double atol = jpeg ? 2.5 / 255 : 0.0;
    EXPECT_TRUE(testing::all_close(rgb.get(i).image, fixture(key + ".rgb"), 0.0, atol));
    EXPECT_TRUE(testing::all_close(gray.get(i).image, fixture(key + ".l"), 0.0, atol));
  }
}

TEST(ImageFolder, FailModeNamesTheFirstUnreadableFile) {
  const std::string root = test_util::scratch_dir("if_fail");
  write_png(root + "/a/good.png", 4, 4, 1);
  write_text(root + "/a/not_image.png", "this is text, not a PNG");
  write_text(root + "/a/notes.txt", "ignored");
  write_png(root + "/b/good.png", 4, 4, 2);
  EXPECT_TRUE(throws_error_with([&] { ImageFolder{root}; },
                                {"ImageFolder: cannot read image '" + root + "/a/not_image.png'",
                                 "stb_image: ", "on_error \"skip\""}));
  // A body that fails to decode passes construction (headers only) and throws in get().
  fs::remove(root + "/a/not_image.png");
  write_truncated_png(root + "/a/truncated.png");
  const ImageFolder folder(root);
  ASSERT_EQ(folder.size(), 3u);
  EXPECT_EQ(folder.get(0).label, 0);
  EXPECT_TRUE(throws_error_with(
      [&] { folder.get(1); },
      {"ImageFolder: cannot decode image '" + root + "/a/truncated.png'", "stb_image: "}));
  // verify(true) decodes everything up front.
  EXPECT_TRUE(throws_error_with([&] { ImageFolder(root, ImageFolderOptions().verify(true)); },
                                {"cannot read image '" + root + "/a/truncated.png'"}));
}

TEST(ImageFolder, SkipModeReportsEachUnreadableFileOnceAndLeavesItOut) {
  const std::string root = test_util::scratch_dir("if_skip");
  write_png(root + "/a/good.png", 4, 4, 1);
  write_text(root + "/a/not_image.png", "this is text, not a PNG");
  write_text(root + "/a/empty.jpg", "");
  write_truncated_png(root + "/a/truncated.png");
  write_png(root + "/b/good.png", 4, 4, 2);
  fs::create_symlink(root + "/nowhere.png", root + "/b/broken_link.png");

  Reports reports;
  const ImageFolder folder(
      root, ImageFolderOptions().on_error(OnImageError::kSkip).on_unreadable(reports.fn()));
  // Headers are probed at construction: three files are out before indices are assigned.
  EXPECT_EQ(reports.paths,
            (std::vector<std::string>{root + "/a/empty.jpg", root + "/a/not_image.png",
                                      root + "/b/broken_link.png"}));
  ASSERT_EQ(folder.size(), 3u);  // a/good, a/truncated, b/good
  EXPECT_EQ(folder.samples()[1].first, root + "/a/truncated.png");

  // The truncated body fails in get(): reported once, replaced by the next example (b/good).
  const Example replaced = folder.get(1);
  EXPECT_EQ(replaced.label, 1);
  EXPECT_EQ(replaced.image.to_vector<float>(), folder.get(2).image.to_vector<float>());
  EXPECT_EQ(folder.get(1).label, 1);
  EXPECT_EQ(reports.paths.size(), 4u);
  EXPECT_EQ(reports.paths.back(), root + "/a/truncated.png");
  const auto unreadable = folder.unreadable();
  ASSERT_EQ(unreadable.size(), 4u);
  EXPECT_EQ(unreadable[3].first, root + "/a/truncated.png");
  EXPECT_NE(unreadable[1].second.find("stb_image: "), std::string::npos) << unreadable[1].second;
  EXPECT_NE(unreadable[2].second.find("broken link"), std::string::npos) << unreadable[2].second;

  // verify(true): the truncated file is left out at construction too.
  Reports verified_reports;
  const ImageFolder verified(root, ImageFolderOptions()
                                       .on_error(OnImageError::kSkip)
                                       .on_unreadable(verified_reports.fn())
                                       .verify(true));
  EXPECT_EQ(verified.size(), 2u);
  EXPECT_EQ(verified_reports.paths.size(), 4u);
}

TEST(ImageFolder, SkipModeReportsOnStderrByDefault) {
  const std::string root = test_util::scratch_dir("if_stderr");
  write_png(root + "/a/good.png", 2, 2, 1);
  write_text(root + "/a/bad.jpeg", "not a jpeg");
  ::testing::internal::CaptureStderr();
  const ImageFolder folder(root, ImageFolderOptions().on_error(OnImageError::kSkip));
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(folder.size(), 1u);
  EXPECT_NE(err.find("ImageFolder: skipping unreadable image '" + root + "/a/bad.jpeg'"),
            std::string::npos)
      << err;
}

TEST(ImageFolder, SkipModeWrapsAroundAndFailsWhenNothingDecodes) {
  const std::string root = test_util::scratch_dir("if_wrap");
  write_png(root + "/a/a.png", 2, 2, 1);
  write_truncated_png(root + "/a/b.png");
  Reports reports;
  const ImageFolder folder(
      root, ImageFolderOptions().on_error(OnImageError::kSkip).on_unreadable(reports.fn()));
  ASSERT_EQ(folder.size(), 2u);
  EXPECT_EQ(folder.get(1).image.shape(), (Shape{3, 2, 2}));  // the last wraps to index 0

  const std::string all_bad = test_util::scratch_dir("if_all_bad");
  write_truncated_png(all_bad + "/a/x.png");
  const ImageFolder bad(
      all_bad, ImageFolderOptions().on_error(OnImageError::kSkip).on_unreadable(reports.fn()));
  EXPECT_TRUE(throws_error_with([&] { bad.get(0); }, {"none of the 1 images", "decodes"}));
}

TEST(ImageFolder, ClearErrorsForBadLayouts) {
  const std::string base = test_util::scratch_dir("if_layouts");
  EXPECT_TRUE(throws_error_with([&] { ImageFolder{base + "/missing"}; },
                                {"ImageFolder: root '" + base + "/missing' does not exist"}));
  write_text(base + "/file", "x");
  EXPECT_TRUE(throws_error_with([&] { ImageFolder(base + "/file"); }, {"is not a directory"}));
  fs::create_directories(base + "/flat");
  write_png(base + "/flat/image.png", 2, 2, 1);
  EXPECT_TRUE(throws_error_with([&] { ImageFolder(base + "/flat"); },
                                {"no class directories in '" + base + "/flat'"}));
  write_png(base + "/classes/full/image.png", 2, 2, 1);
  write_text(base + "/classes/only_text/readme.txt", "x");
  fs::create_directories(base + "/classes/empty");
  EXPECT_TRUE(throws_error_with([&] { ImageFolder(base + "/classes"); },
                                {"no .png/.jpg/.jpeg files for the classes empty, only_text"}));
  write_text(base + "/unreadable/a/x.png", "text");
  EXPECT_TRUE(throws_error_with(
      [&] {
        ImageFolder(base + "/unreadable",
                    ImageFolderOptions()
                        .on_error(OnImageError::kSkip)
                        .on_unreadable([](const std::string&, const std::string&) {}));
      },
      {"no readable images under", "(1 unreadable)"}));
  EXPECT_TRUE(
      throws_error_with([&] { ImageFolder(base + "/classes", ImageFolderOptions().channels(2)); },
                        {"channels must be 1 or 3, got 2"}));
  EXPECT_TRUE(throws_error_with(
      [&] { ImageFolder(base + "/classes/full/..", ImageFolderOptions().max_pixels(0)); },
      {"max_pixels must be positive"}));
}

TEST(ImageFolder, MaxPixelsMakesLargeImagesUnreadable) {
  const std::string root = test_util::scratch_dir("if_large");
  write_png(root + "/a/small.png", 2, 2, 1);
  write_png(root + "/a/large.png", 8, 8, 1);
  EXPECT_TRUE(throws_error_with([&] { ImageFolder(root, ImageFolderOptions().max_pixels(10)); },
                                {"large.png", "8x8 is larger than 10 pixels"}));
}

TEST(ImageFolder, OnErrorFromString) {
  EXPECT_EQ(on_image_error_from_string("skip", "cfg"), OnImageError::kSkip);
  EXPECT_EQ(on_image_error_from_string("fail", "cfg"), OnImageError::kFail);
  EXPECT_TRUE(
      throws_error_with([] { on_image_error_from_string("ignore", "cfg.data.on_error"); },
                        {"cfg.data.on_error: expected \"fail\" or \"skip\", got \"ignore\""}));
}

TEST(ImageFolder, SymlinkCyclesEndAndLinkedDirectoriesAreFollowed) {
  const std::string root = test_util::scratch_dir("if_links");
  write_png(root + "/a/x.png", 2, 2, 1);
  write_png(root + "/shared/y.png", 2, 2, 2);
  fs::create_directory_symlink(root + "/a", root + "/a/loop");         // a/loop -> a
  fs::create_directory_symlink(root + "/shared", root + "/a/linked");  // followed, as os.walk
  const ImageFolder folder(root);
  EXPECT_EQ(folder.classes(), (std::vector<std::string>{"a", "shared"}));
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {root + "/a/x.png", 0}, {root + "/a/linked/y.png", 0}, {root + "/shared/y.png", 1}};
  EXPECT_EQ(folder.samples(), expected);
}

// Seeded mutations of a PNG and a JPEG (bit flips, byte sets, truncation): each file either
// decodes or is reported, in both modes; nothing crashes and only qat::Error escapes.
TEST(ImageFolder, MutatedFilesDecodeOrAreReported) {
  const std::string root = test_util::scratch_dir("if_fuzz");
  const std::string png = root + "/src.png", jpg = root + "/src.jpg";
  const std::vector<uint8_t> px = rgb_pixels(9, 7, 3);
  ASSERT_NE(stbi_write_png(png.c_str(), 9, 7, 3, px.data(), 27), 0);
  ASSERT_NE(stbi_write_jpg(jpg.c_str(), 9, 7, 3, px.data(), 80), 0);
  const std::vector<std::vector<uint8_t>> sources = {read_bytes(png), read_bytes(jpg)};
  std::mt19937_64 rng(12345);
  const auto below = [&rng](size_t n) { return n == 0 ? size_t{0} : rng() % n; };
  int decoded = 0, reported = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<uint8_t> bytes = sources[round % 2];
    switch (below(3)) {
      case 0:
        for (size_t k = 1 + below(4); k > 0; --k) bytes[below(bytes.size())] ^= 1u << below(8);
        break;
      case 1:
        for (size_t k = 1 + below(4); k > 0; --k) {
          bytes[below(std::min<size_t>(bytes.size(), 40))] = static_cast<uint8_t>(rng());
        }
        break;
      default:
        bytes.resize(below(bytes.size()));
        break;
    }
    const std::string dir = root + "/case";
    fs::remove_all(dir);
    fs::create_directories(dir + "/c");
    test_util::write_file(dir + "/c/x" + (round % 2 == 0 ? ".png" : ".jpg"), bytes);
    Reports reports;
    try {
      const ImageFolder folder(
          dir, ImageFolderOptions().on_error(OnImageError::kSkip).on_unreadable(reports.fn()));
      const Example e = folder.get(0);
      for (float v : e.image.to_vector<float>()) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
      ++decoded;
    } catch (const Error&) {
      ++reported;  // header or body unreadable: no readable image left
    }
    try {
      ImageFolder(dir).get(0);
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(dir + "/c/x"), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(decoded, 0);
  EXPECT_GT(reported, 0);
}

// Several loader threads decode at once; a corrupt body is replaced the same way every time.
TEST(ImageFolder, FeedsAPrefetchingDataLoader) {
  const std::string root = test_util::scratch_dir("if_loader");
  for (int i = 0; i < 12; ++i) {
    write_png(root + "/c" + std::to_string(i % 3) + "/" + std::to_string(i) + ".png", 5 + i % 4, 6,
              i);
  }
  write_truncated_png(root + "/c1/zz.png");
  Reports reports;
  auto folder = std::make_shared<ImageFolder>(
      root, ImageFolderOptions().on_error(OnImageError::kSkip).on_unreadable(reports.fn()));
  ASSERT_EQ(folder->size(), 13u);
  DataLoader loader(
      folder, DataLoaderOptions().batch_size(4).shuffle(true).seed(3).num_workers(3).transforms(
                  {Resize(6), CenterCrop(4), RandomHorizontalFlip()}));
  std::vector<float> first_epoch;
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(0);
    std::vector<float> values;
    int64_t examples = 0;
    while (std::optional<Batch> batch = loader.next()) {
      ASSERT_EQ(batch->images.shape()[1], 3);
      ASSERT_EQ(batch->images.shape()[2], 4);
      examples += batch->labels.numel();
      for (float v : batch->images.to_vector<float>()) values.push_back(v);
    }
    EXPECT_EQ(examples, 13);
    if (epoch == 0) first_epoch = values;
    EXPECT_EQ(values, first_epoch);  // the same epoch replays exactly
  }
  EXPECT_EQ(reports.paths, (std::vector<std::string>{root + "/c1/zz.png"}));
}

}  // namespace
}  // namespace qat::nn::data
