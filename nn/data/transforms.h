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

// Bilinear resize to [C, height, width] with half-pixel centers, matching (to float rounding)
// F.interpolate(x[None], size, mode="bilinear", align_corners=False)[0], without antialiasing.
class Resize {
 public:
  Resize(int64_t height, int64_t width);
  Tensor operator()(const Tensor& image, Generator& gen) const;

 private:
  int64_t height_, width_;
};

}  // namespace qat::nn::data
