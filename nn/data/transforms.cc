#include "nn/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

namespace qat::nn::data {
namespace {

void check_image(const Tensor& image, const char* transform) {
  QAT_CHECK(image.dim() == 3 && image.dtype() == DType::kFloat32, transform,
            ": expected a [C, H, W] float32 image, got ", shape_str(image.shape()), " ",
            dtype_name(image.dtype()));
}

// A uniform index in [0, n). Modulo bias is below 2^-40 for any image size.
int64_t random_index(Generator& gen, int64_t n) {
  return static_cast<int64_t>(gen.engine()() % static_cast<uint64_t>(n));
}

// Rows [top, top + height) and columns [left, left + width) of every channel.
Tensor crop(const Tensor& image, int64_t top, int64_t left, int64_t height, int64_t width) {
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  Tensor out = Tensor::empty({C, height, width});
  const float* x = image.data<float>();  // [C, H, W]
  float* y = out.data<float>();          // [C, height, width]
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t h = 0; h < height; ++h) {
      std::memcpy(y + (c * height + h) * width, x + (c * H + top + h) * W + left,
                  sizeof(float) * width);
    }
  }
  return out;
}

// The two source pixels and their weights for one output pixel along one axis.
struct LinearTap {
  int64_t i0, i1;
  float w0, w1;
};

// Half-pixel-center sampling along an axis of size `in` resized to `out`, as PyTorch's
// area_pixel_compute_source_index and guard_index_and_lambda (aten/src/ATen/native/UpSample.h).
// Results agree with F.interpolate to float rounding (<= 1e-6), not bit for bit: PyTorch's
// kernel rounds its intermediate sums differently.
std::vector<LinearTap> linear_taps(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<LinearTap> taps(out);
  for (int64_t o = 0; o < out; ++o) {
    const float src = std::max(scale * (static_cast<float>(o) + 0.5f) - 0.5f, 0.0f);
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    const float w1 = std::clamp(src - static_cast<float>(i0), 0.0f, 1.0f);
    taps[o] = {i0, std::min(i0 + 1, in - 1), 1.0f - w1, w1};
  }
  return taps;
}

// Bilinear resize of [C, H, W] to [C, height, width], half-pixel centers, no antialiasing.
Tensor resize_bilinear(const Tensor& image, int64_t height, int64_t width) {
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  const std::vector<LinearTap> rows = linear_taps(H, height), cols = linear_taps(W, width);
  Tensor out = Tensor::empty({C, height, width});
  const float* x = image.data<float>();  // [C, H, W]
  float* y = out.data<float>();          // [C, height, width]
  for (int64_t c = 0; c < C; ++c) {
    const float* plane = x + c * H * W;
    for (int64_t oh = 0; oh < height; ++oh) {
      const LinearTap& r = rows[oh];
      const float* row0 = plane + r.i0 * W;
      const float* row1 = plane + r.i1 * W;
      for (int64_t ow = 0; ow < width; ++ow) {
        const LinearTap& k = cols[ow];
        // PyTorch's order: interpolate along W within each row, then blend the two rows.
        const float top = row0[k.i0] * k.w0 + row0[k.i1] * k.w1;
        const float bottom = row1[k.i0] * k.w0 + row1[k.i1] * k.w1;
        y[(c * height + oh) * width + ow] = top * r.w0 + bottom * r.w1;
      }
    }
  }
  return out;
}

// Like crop(), but the window may reach outside the image (negative top/left, or past the
// end); those pixels are 0, as torchvision's pad-then-crop.
Tensor crop_zero_filled(const Tensor& image, int64_t top, int64_t left, int64_t height,
                        int64_t width) {
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  if (top >= 0 && left >= 0 && top + height <= H && left + width <= W) {
    return crop(image, top, left, height, width);
  }
  Tensor out = Tensor::zeros({C, height, width});
  const float* x = image.data<float>();  // [C, H, W]
  float* y = out.data<float>();          // [C, height, width]
  const int64_t w0 = std::max<int64_t>(0, -left), w1 = std::min(width, W - left);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t h = std::max<int64_t>(0, -top); h < std::min(height, H - top); ++h) {
      if (w1 > w0) {
        std::memcpy(y + (c * height + h) * width + w0, x + (c * H + top + h) * W + left + w0,
                    sizeof(float) * (w1 - w0));
      }
    }
  }
  return out;
}

// Python's int(round(v)): ties to even (the default floating-point rounding mode).
int64_t round_half_even(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

}  // namespace

Tensor Compose::operator()(const Tensor& image, Generator& gen) const {
  Tensor out = image;
  for (const Transform& transform : transforms_) out = transform(out, gen);
  return out;
}

Normalize::Normalize(std::vector<float> mean, std::vector<float> std)
    : mean_(std::move(mean)), std_(std::move(std)) {
  QAT_CHECK(!mean_.empty() && mean_.size() == std_.size(),
            "Normalize: mean and std need the same, non-zero length, got ", mean_.size(), " and ",
            std_.size());
  for (float s : std_) QAT_CHECK(s != 0.0f, "Normalize: std must be non-zero");
}

Tensor Normalize::operator()(const Tensor& image, Generator& /*gen*/) const {
  check_image(image, "Normalize");
  const int64_t C = image.size(0), HW = image.size(1) * image.size(2);
  QAT_CHECK(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == C,
            "Normalize: ", mean_.size(), " mean/std values for an image with ", C, " channels");
  Tensor out = Tensor::empty(image.shape());
  const float* x = image.data<float>();
  float* y = out.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const float m = mean_[mean_.size() == 1 ? 0 : c], s = std_[std_.size() == 1 ? 0 : c];
    for (int64_t i = c * HW; i < (c + 1) * HW; ++i) y[i] = (x[i] - m) / s;
  }
  return out;
}

Pad::Pad(int64_t padding, float fill) : padding_(padding), fill_(fill) {
  QAT_CHECK(padding >= 0, "Pad: padding must be >= 0, got ", padding);
}

Tensor Pad::operator()(const Tensor& image, Generator& /*gen*/) const {
  check_image(image, "Pad");
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2), P = padding_;
  const int64_t OH = H + 2 * P, OW = W + 2 * P;
  Tensor out = Tensor::empty({C, OH, OW});
  float* y = out.data<float>();  // [C, OH, OW]
  std::fill(y, y + out.numel(), fill_);
  const float* x = image.data<float>();  // [C, H, W]
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t h = 0; h < H; ++h) {
      std::memcpy(y + (c * OH + h + P) * OW + P, x + (c * H + h) * W, sizeof(float) * W);
    }
  }
  return out;
}

RandomCrop::RandomCrop(int64_t size, int64_t padding) : size_(size), pad_(padding) {
  QAT_CHECK(size > 0, "RandomCrop: size must be positive, got ", size);
}

Tensor RandomCrop::operator()(const Tensor& image, Generator& gen) const {
  check_image(image, "RandomCrop");
  const Tensor padded = pad_(image, gen);
  const int64_t H = padded.size(1), W = padded.size(2);
  QAT_CHECK(size_ <= H && size_ <= W, "RandomCrop: crop size ", size_,
            " is larger than the padded image ", shape_str(padded.shape()));
  const int64_t top = random_index(gen, H - size_ + 1);
  const int64_t left = random_index(gen, W - size_ + 1);
  return crop(padded, top, left, size_, size_);
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  QAT_CHECK(p >= 0.0 && p <= 1.0, "RandomHorizontalFlip: p must be in [0, 1], got ", p);
}

Tensor RandomHorizontalFlip::operator()(const Tensor& image, Generator& gen) const {
  check_image(image, "RandomHorizontalFlip");
  // Always draw, so the stream position (and later transforms) do not depend on the outcome.
  if (!(gen.uniform(0.0, 1.0) < p_)) return image;
  Tensor out = image.clone();
  const int64_t rows = image.size(0) * image.size(1), W = image.size(2);
  float* y = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) std::reverse(y + r * W, y + (r + 1) * W);
  return out;
}

Resize::Resize(int64_t size) : size_(size) {
  QAT_CHECK(size > 0, "Resize: size must be positive, got ", size);
}

Resize::Resize(int64_t height, int64_t width) : height_(height), width_(width) {
  QAT_CHECK(height > 0 && width > 0, "Resize: size must be positive, got ", height, "x", width);
}

std::pair<int64_t, int64_t> Resize::output_size(int64_t in_height, int64_t in_width) const {
  if (size_ == 0) return {height_, width_};
  // torchvision's _compute_resized_output_size: int(size * long / short), a truncation of the
  // correctly rounded quotient (both operands are exact in double).
  const int64_t shorter = std::min(in_height, in_width), longer = std::max(in_height, in_width);
  const int64_t new_long =
      static_cast<int64_t>(static_cast<double>(size_ * longer) / static_cast<double>(shorter));
  return in_width <= in_height ? std::make_pair(new_long, size_) : std::make_pair(size_, new_long);
}

Tensor Resize::operator()(const Tensor& image, Generator& /*gen*/) const {
  check_image(image, "Resize");
  const int64_t H = image.size(1), W = image.size(2);
  QAT_CHECK(H > 0 && W > 0, "Resize: cannot resize an empty image ", shape_str(image.shape()));
  const auto [height, width] = output_size(H, W);  // never empty: long / short >= 1
  if (height == H && width == W) return image;
  return resize_bilinear(image, height, width);
}

CenterCrop::CenterCrop(int64_t height, int64_t width) : height_(height), width_(width) {
  QAT_CHECK(height > 0 && width > 0, "CenterCrop: size must be positive, got ", height, "x", width);
}

Tensor CenterCrop::operator()(const Tensor& image, Generator& /*gen*/) const {
  check_image(image, "CenterCrop");
  const int64_t H = image.size(1), W = image.size(2);
  // torchvision pads a short side by (d - H) // 2 in front, which puts the window at -that; a
  // long side is cropped at round((H - d) / 2).
  const int64_t top = height_ > H ? -((height_ - H) / 2) : round_half_even((H - height_) / 2.0);
  const int64_t left = width_ > W ? -((width_ - W) / 2) : round_half_even((W - width_) / 2.0);
  return crop_zero_filled(image, top, left, height_, width_);
}

RandomResizedCrop::RandomResizedCrop(int64_t height, int64_t width, std::pair<double, double> scale,
                                     std::pair<double, double> ratio)
    : height_(height), width_(width), scale_(scale), ratio_(ratio) {
  QAT_CHECK(height > 0 && width > 0, "RandomResizedCrop: size must be positive, got ", height, "x",
            width);
  QAT_CHECK(0.0 <= scale.first && scale.first <= scale.second,
            "RandomResizedCrop: scale must be (min, max) with 0 <= min <= max, got (", scale.first,
            ", ", scale.second, ")");
  QAT_CHECK(0.0 < ratio.first && ratio.first <= ratio.second,
            "RandomResizedCrop: ratio must be (min, max) with 0 < min <= max, got (", ratio.first,
            ", ", ratio.second, ")");
}

CropBox RandomResizedCrop::get_params(int64_t in_height, int64_t in_width, Generator& gen) const {
  const double area = static_cast<double>(in_height * in_width);
  const double log_r0 = std::log(ratio_.first), log_r1 = std::log(ratio_.second);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * gen.uniform(scale_.first, scale_.second);
    const double aspect_ratio = std::exp(gen.uniform(log_r0, log_r1));
    const int64_t w = round_half_even(std::sqrt(target_area * aspect_ratio));
    const int64_t h = round_half_even(std::sqrt(target_area / aspect_ratio));
    if (0 < w && w <= in_width && 0 < h && h <= in_height) {
      const int64_t top = random_index(gen, in_height - h + 1);
      const int64_t left = random_index(gen, in_width - w + 1);
      return {top, left, h, w};
    }
  }
  // Fallback: the central crop, clamped to the ratio range.
  const double in_ratio = static_cast<double>(in_width) / static_cast<double>(in_height);
  int64_t w = in_width, h = in_height;
  if (in_ratio < ratio_.first) {
    h = round_half_even(static_cast<double>(w) / ratio_.first);
  } else if (in_ratio > ratio_.second) {
    w = round_half_even(static_cast<double>(h) * ratio_.second);
  }
  h = std::max<int64_t>(h, 1);  // only an extreme ratio range rounds a side down to 0
  w = std::max<int64_t>(w, 1);
  return {(in_height - h) / 2, (in_width - w) / 2, h, w};
}

Tensor RandomResizedCrop::operator()(const Tensor& image, Generator& gen) const {
  check_image(image, "RandomResizedCrop");
  QAT_CHECK(image.size(1) > 0 && image.size(2) > 0,
            "RandomResizedCrop: cannot crop an empty image ", shape_str(image.shape()));
  return resized_crop(image, get_params(image.size(1), image.size(2), gen), height_, width_);
}

Tensor resized_crop(const Tensor& image, const CropBox& box, int64_t height, int64_t width) {
  check_image(image, "resized_crop");
  QAT_CHECK(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 &&
                box.top + box.height <= image.size(1) && box.left + box.width <= image.size(2),
            "resized_crop: box (top ", box.top, ", left ", box.left, ", ", box.height, "x",
            box.width, ") is not inside the image ", shape_str(image.shape()));
  QAT_CHECK(height > 0 && width > 0, "resized_crop: size must be positive, got ", height, "x",
            width);
  const Tensor window = crop(image, box.top, box.left, box.height, box.width);
  if (box.height == height && box.width == width) return window;
  return resize_bilinear(window, height, width);
}

}  // namespace qat::nn::data
