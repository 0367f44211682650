#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace qat::nn::data {

// Maps one image [C, H, W] float32 to another. The input is never modified, but the result
// may share its storage when there is nothing to do. Random transforms draw from `gen`, which
// the DataLoader seeds per batch, so augmentation is reproducible. The classes below mirror
// torchvision.transforms on tensors, and each converts to a Transform:
//   std::vector<Transform>{Pad(2), RandomHorizontalFlip(), Normalize({0.2860f}, {0.3530f})}
using Transform = std::function<Tensor(const Tensor& image, Generator& gen)>;

// Applies transforms in order, as transforms.Compose.
class Compose {
 public:
  explicit Compose(std::vector<Transform> transforms) : transforms_(std::move(transforms)) {}
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  std::vector<Transform> transforms_;
};

// (x - mean[c]) / std[c] per channel, as transforms.Normalize. A single mean/std value
// applies to every channel.
class Normalize {
 public:
  Normalize(std::vector<float> mean, std::vector<float> std);
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  std::vector<float> mean_, std_;
};

// Constant padding on all four sides, [C, H, W] -> [C, H + 2p, W + 2p], as
// transforms.Pad(padding, fill). Pad(2) turns 28x28 Fashion-MNIST into 32x32.
class Pad {
 public:
  explicit Pad(int64_t padding, float fill = 0.0f);
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  int64_t padding_;
  float fill_;
};

// A uniformly placed size x size window, after zero padding by `padding`, as
// transforms.RandomCrop(size, padding).
class RandomCrop {
 public:
  explicit RandomCrop(int64_t size, int64_t padding = 0);
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  int64_t size_;
  Pad pad_;
};

// Mirrors the width axis with probability p, as transforms.RandomHorizontalFlip(p).
class RandomHorizontalFlip {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  double p_;
};

// Bilinear resize with half-pixel centers, matching (to float rounding) torchvision's
// transforms.Resize on tensors with antialias=False, i.e.
// F.interpolate(x[None], size, mode="bilinear", align_corners=False)[0]. Resize(height, width)
// gives [C, height, width]; Resize(size) scales the shorter side to `size` and the longer one to
// int(size * long / short), as transforms.Resize(size). An image already of the target size is
// returned as is.
class Resize {
 public:
  explicit Resize(int64_t size);
  Resize(int64_t height, int64_t width);
  Tensor operator()(const Tensor& image, Generator& gen) const;
  // The [height, width] an image of in_height x in_width is resized to.
  std::pair<int64_t, int64_t> output_size(int64_t in_height, int64_t in_width) const;

 private:
  int64_t size_ = 0;  // > 0: shorter-side mode
  int64_t height_ = 0, width_ = 0;
};

// The central height x width window, as transforms.CenterCrop: the offset (H - height) / 2 is
// rounded half to even, like Python's round(); a side shorter than the crop is first padded with
// zeros, (d - H) / 2 before and the rest after.
class CenterCrop {
 public:
  explicit CenterCrop(int64_t size) : CenterCrop(size, size) {}
  CenterCrop(int64_t height, int64_t width);
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  int64_t height_, width_;
};

// A crop box: rows [top, top + height), columns [left, left + width).
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// Crops `box` (which must lie inside the image) and resizes the window to height x width
// (bilinear, as Resize), as F.resized_crop(image, top, left, h, w, [height, width]).
Tensor resized_crop(const Tensor& image, const CropBox& box, int64_t height, int64_t width);

// A random window covering `scale` of the area with aspect ratio (w / h) log-uniform in `ratio`,
// resized (bilinear, as Resize) to height x width: transforms.RandomResizedCrop with its
// defaults, scale (0.08, 1) and ratio (3/4, 4/3). Ten tries, then the central crop clamped to the
// ratio range, exactly as RandomResizedCrop.get_params; only the random stream differs.
class RandomResizedCrop {
 public:
  explicit RandomResizedCrop(int64_t size, std::pair<double, double> scale = {0.08, 1.0},
                             std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0})
      : RandomResizedCrop(size, size, scale, ratio) {}
  RandomResizedCrop(int64_t height, int64_t width, std::pair<double, double> scale = {0.08, 1.0},
                    std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0});
  Tensor operator()(const Tensor& image, Generator& gen) const;
  // The box for an in_height x in_width image, as RandomResizedCrop.get_params.
  CropBox get_params(int64_t in_height, int64_t in_width, Generator& gen) const;

 private:
  int64_t height_, width_;
  std::pair<double, double> scale_, ratio_;
};

}  // namespace qat::nn::data
