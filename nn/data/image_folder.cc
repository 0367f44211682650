#include "nn/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <system_error>

#include <stb/stb_image.h>

namespace qat::nn::data {
namespace {

namespace fs = std::filesystem;

// torchvision's IMG_EXTENSIONS, restricted to the formats this loader is meant for.
constexpr const char* kExtensions[] = {".png", ".jpg", ".jpeg"};

bool has_image_extension(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* ext : kExtensions) {
    const size_t n = std::strlen(ext);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, ext) == 0) return true;
  }
  return false;
}

// Sub-directories of `dir` (symlinks followed), sorted by name.
std::vector<std::string> list_dirs(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code status_ec;
    if (fs::is_directory(it->path(), status_ec)) names.push_back(it->path().filename().string());
  }
  QAT_CHECK(!ec, "ImageFolder: cannot list '", dir.string(), "': ", ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

// Files with an image extension anywhere under `dir`, following directory symlinks (as
// os.walk(followlinks=True)) but entering each real directory once, so a symlink cycle ends.
// Order as torchvision's sorted(os.walk(dir)): directories by path string, then file names.
void walk_images(const fs::path& dir, std::set<std::string>& visited,
                 std::vector<std::pair<std::string, std::vector<std::string>>>& out) {
  std::error_code ec;
  const fs::path real = fs::canonical(dir, ec);
  if (ec || !visited.insert(real.string()).second) return;
  std::vector<std::string> files;
  std::vector<fs::path> subdirs;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code status_ec;
    if (fs::is_directory(it->path(), status_ec)) {
      subdirs.push_back(it->path());
    } else if (has_image_extension(it->path().filename().string())) {
      files.push_back(it->path().filename().string());  // also broken links: reported later
    }
  }
  QAT_CHECK(!ec, "ImageFolder: cannot list '", dir.string(), "': ", ec.message());
  std::sort(files.begin(), files.end());
  out.emplace_back(dir.string(), std::move(files));
  for (const fs::path& sub : subdirs) walk_images(sub, visited, out);
}

// Owns a FILE*.
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Opens `path` for stb_image; on failure returns null and sets `reason`.
File open_image(const std::string& path, std::string& reason) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    // Also keeps a FIFO named x.png from blocking the reader.
    reason = fs::exists(path, ec) ? "not a regular file" : "no such file (broken link?)";
    return nullptr;
  }
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) reason = std::string("cannot open: ") + std::strerror(errno);
  return file;
}

// Reads the header from the current position (which it restores): the format is known and the
// size is sane. Returns "" when both hold, else the reason.
std::string check_header(std::FILE* file, int64_t max_pixels) {
  int w = 0, h = 0, comp = 0;
  if (stbi_info_from_file(file, &w, &h, &comp) == 0) {
    return std::string("stb_image: ") + stbi_failure_reason();
  }
  if (static_cast<int64_t>(w) * h > max_pixels) {
    return "image of " + std::to_string(w) + "x" + std::to_string(h) + " is larger than " +
           std::to_string(max_pixels) + " pixels (max_pixels)";
  }
  return "";
}

std::string probe(const std::string& path, int64_t max_pixels) {
  std::string reason;
  File file = open_image(path, reason);
  return file ? check_header(file.get(), max_pixels) : reason;
}

// ToTensor on 8-bit RGB: [3, H, W] in [0, 1], or luma as PIL's convert("L").
Tensor to_tensor(const uint8_t* rgb, int64_t H, int64_t W, int64_t channels) {
  const int64_t HW = H * W;
  Tensor image = Tensor::empty({channels, H, W});
  float* out = image.data<float>();  // [channels, H, W]
  if (channels == 3) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t i = 0; i < HW; ++i)
        out[c * HW + i] = static_cast<float>(rgb[i * 3 + c]) / 255.0f;
    }
    return image;
  }
  // PIL (libImaging/Convert.c, L24): L = R * 299/1000 + G * 587/1000 + B * 114/1000 in 16-bit
  // fixed point, rounded: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16.
  for (int64_t i = 0; i < HW; ++i) {
    const uint32_t l =
        (rgb[i * 3] * 19595u + rgb[i * 3 + 1] * 38470u + rgb[i * 3 + 2] * 7471u + 0x8000u) >> 16;
    out[i] = static_cast<float>(l) / 255.0f;
  }
  return image;
}

}  // namespace

OnImageError on_image_error_from_string(const std::string& value, const std::string& what) {
  if (value == "fail") return OnImageError::kFail;
  if (value == "skip") return OnImageError::kSkip;
  QAT_CHECK(false, what, ": expected \"fail\" or \"skip\", got \"", value, "\"");
  return OnImageError::kFail;
}

ImageFolder::ImageFolder(const std::string& root, ImageFolderOptions options)
    : root_(root), options_(std::move(options)) {
  QAT_CHECK(options_.channels() == 1 || options_.channels() == 3,
            "ImageFolder: channels must be 1 or 3, got ", options_.channels());
  QAT_CHECK(options_.max_pixels() > 0, "ImageFolder: max_pixels must be positive, got ",
            options_.max_pixels());
  std::error_code ec;
  QAT_CHECK(fs::exists(root_, ec), "ImageFolder: root '", root_, "' does not exist");
  QAT_CHECK(fs::is_directory(root_, ec), "ImageFolder: root '", root_, "' is not a directory");
  classes_ = list_dirs(root_);
  QAT_CHECK(!classes_.empty(), "ImageFolder: no class directories in '", root_,
            "' (expected root/<class>/<image>)");

  std::string empty_classes;
  size_t num_unreadable = 0;
  for (size_t label = 0; label < classes_.size(); ++label) {
    class_to_idx_[classes_[label]] = static_cast<int64_t>(label);
    std::set<std::string> visited;
    std::vector<std::pair<std::string, std::vector<std::string>>> dirs;
    walk_images(fs::path(root_) / classes_[label], visited, dirs);
    std::sort(dirs.begin(), dirs.end());
    size_t num_files = 0;
    for (const auto& [dir, files] : dirs) {
      for (const std::string& file : files) {
        ++num_files;
        const std::string path = (fs::path(dir) / file).string();
        std::string reason = probe(path, options_.max_pixels());
        if (reason.empty()) {
          samples_.emplace_back(path, static_cast<int64_t>(label));
          Example unused;
          if (!options_.verify() || decode(samples_.size() - 1, unused, reason)) continue;
          samples_.pop_back();
        }
        QAT_CHECK(options_.on_error() == OnImageError::kSkip, "ImageFolder: cannot read image '",
                  path, "': ", reason, "\nHINT: on_error \"skip\" leaves unreadable files out");
        ++num_unreadable;
        report(path, reason);
      }
    }
    if (num_files == 0) empty_classes += (empty_classes.empty() ? "" : ", ") + classes_[label];
  }
  QAT_CHECK(empty_classes.empty(), "ImageFolder: no .png/.jpg/.jpeg files for the classes ",
            empty_classes, " under '", root_, "'");
  QAT_CHECK(!samples_.empty(), "ImageFolder: no readable images under '", root_, "' (",
            num_unreadable, " unreadable)");
}

bool ImageFolder::decode(size_t index, Example& example, std::string& reason) const {
  const std::string& path = samples_[index].first;
  File file = open_image(path, reason);
  if (!file) return false;
  // Check the size again: the file may have changed since construction.
  reason = check_header(file.get(), options_.max_pixels());
  if (!reason.empty()) return false;
  int w = 0, h = 0, comp = 0;
  // Always decode to RGB, as torchvision's loader does (img.convert("RGB")): alpha is dropped,
  // gray and palette images are expanded. 16-bit images come back as 8-bit.
  std::unique_ptr<stbi_uc, void (*)(void*)> rgb(
      stbi_load_from_file(file.get(), &w, &h, &comp, /*req_comp=*/3), stbi_image_free);
  if (!rgb) {
    reason = std::string("stb_image: ") + stbi_failure_reason();
    return false;
  }
  example.image = to_tensor(rgb.get(), h, w, options_.channels());
  example.label = samples_[index].second;
  return true;
}

void ImageFolder::report(const std::string& path, const std::string& reason) const {
  std::lock_guard<std::mutex> report_lock(report_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // not held in the callback: it may call back
    unreadable_.emplace_back(path, reason);
  }
  if (options_.on_unreadable()) {
    options_.on_unreadable()(path, reason);
  } else {
    std::cerr << "ImageFolder: skipping unreadable image '" << path << "': " << reason << "\n";
  }
}

Example ImageFolder::get(size_t index) const {
  QAT_CHECK(index < size(), "ImageFolder: index ", index, " out of range for ", size(),
            " examples");
  Example example;
  std::string reason;
  if (options_.on_error() == OnImageError::kFail) {
    QAT_CHECK(decode(index, example, reason), "ImageFolder: cannot decode image '",
              samples_[index].first, "': ", reason);
    return example;
  }
  // kSkip: the first example from `index` on (wrapping) whose image decodes.
  for (size_t k = 0; k < size(); ++k) {
    const size_t i = (index + k) % size();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failed_.count(i) != 0) continue;
    }
    if (decode(i, example, reason)) return example;
    bool first_failure = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      first_failure = failed_.insert(i).second;
    }
    if (first_failure) report(samples_[i].first, reason);
  }
  QAT_CHECK(false, "ImageFolder: none of the ", size(), " images under '", root_,
            "' decodes (see the skipped paths reported above)");
  return example;
}

std::vector<std::pair<std::string, std::string>> ImageFolder::unreadable() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return unreadable_;
}

}  // namespace qat::nn::data
