#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/arg.h"
#include "nn/data/dataset.h"

namespace qat::nn::data {

// What ImageFolder does with a file it cannot decode (wrong contents, truncated, unreadable).
enum class OnImageError {
  kFail,  // throw qat::Error naming the path (at construction, or in get())
  kSkip,  // report the path once and leave the file out (see ImageFolder)
};

// "fail" -> kFail, "skip" -> kSkip; anything else throws qat::Error naming `what`.
OnImageError on_image_error_from_string(const std::string& value, const std::string& what);

// Called once per unreadable file in kSkip mode, with the path and the reason. May be called
// from DataLoader worker threads, but never two at once.
using UnreadableImageFn = std::function<void(const std::string& path, const std::string& reason)>;

struct ImageFolderOptions {
  QAT_ARG(int64_t, channels) = 3;  // 3: RGB; 1: luma as PIL's convert("L")
  QAT_ARG(OnImageError, on_error) = OnImageError::kFail;
  // Where kSkip reports; empty = one "ImageFolder: skipping ..." line on stderr.
  QAT_ARG(UnreadableImageFn, on_unreadable) = {};
  // Fully decode every image at construction instead of only reading its header. Slow on large
  // sets, but then kSkip leaves out corrupt bodies (a truncated PNG has a valid header) too.
  QAT_ARG(bool, verify) = false;
  // Images with more pixels are unreadable (guards against decompression bombs). PIL warns at
  // 89478485 pixels and refuses twice that.
  QAT_ARG(int64_t, max_pixels) = 2 * 89478485;
};

// Class-per-directory images, as torchvision.datasets.ImageFolder(root) with its PIL loader:
//   root/<class>/**/<file>.{png,jpg,jpeg}   (extensions case-insensitive; other files ignored)
// Classes are the sub-directories of root sorted by name, with labels 0..C-1; files are sorted
// per directory, directories by path (torchvision's order). get() decodes with stb_image into a
// [channels, H, W] float32 image in [0, 1] (ToTensor). JPEG pixels can differ from PIL's by a
// few levels: stb_image and libjpeg use different IDCTs and chroma upsampling.
//
// Every file's header is probed at construction (stbi_info), so an unreadable file either
// fails the constructor (kFail) or is left out before indices are assigned (kSkip): indices
// are stable. A file whose body fails to decode later throws in get() (kFail), or, in kSkip
// mode, is reported once and replaced by the next example (in index order, wrapping) that does
// decode, so the result still depends on the index alone. A class whose every file is skipped
// keeps its label (classes come from the directories) but has no examples. get() is thread-safe.
class ImageFolder : public Dataset {
 public:
  explicit ImageFolder(const std::string& root, ImageFolderOptions options = {});

  size_t size() const override { return samples_.size(); }
  Example get(size_t index) const override;

  const std::vector<std::string>& classes() const { return classes_; }  // sorted; index = label
  const std::map<std::string, int64_t>& class_to_idx() const { return class_to_idx_; }
  // (path, label) per index, as ImageFolder.samples.
  const std::vector<std::pair<std::string, int64_t>>& samples() const { return samples_; }
  // Every file reported unreadable so far (kSkip), with the reason, in report order.
  std::vector<std::pair<std::string, std::string>> unreadable() const;

 private:
  // Decodes samples_[index]; on failure returns false and sets `reason`.
  bool decode(size_t index, Example& example, std::string& reason) const;
  void report(const std::string& path, const std::string& reason) const;

  std::string root_;
  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::map<std::string, int64_t> class_to_idx_;
  std::vector<std::pair<std::string, int64_t>> samples_;

  mutable std::mutex report_mutex_;  // one report at a time
  mutable std::mutex mutex_;         // guards the two members below
  mutable std::set<size_t> failed_;  // indices whose body did not decode in get()
  mutable std::vector<std::pair<std::string, std::string>> unreadable_;
};

}  // namespace qat::nn::data
