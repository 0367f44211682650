#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace qat::nn::data {

// One labelled image: image [C, H, W] float32, label a class index.
struct Example {
  Tensor image;
  int64_t label = 0;
};

// A map-style dataset, as torch.utils.data.Dataset. get() must be safe to call from several
// threads at once: the DataLoader's workers do.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual size_t size() const = 0;
  virtual Example get(size_t index) const = 0;  // a fresh image the caller may modify
};

// A deterministic, learnable stand-in for real data: example i has label i % num_classes and
// image = prototype[label] + N(0, 1) noise, where the prototypes are N(0, 1) tensors of
// `shape`. Everything is a function of (seed, index), so get() needs no state.
class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(size_t num_examples, Shape shape, int64_t num_classes, uint64_t seed);

  size_t size() const override { return num_examples_; }
  Example get(size_t index) const override;

 private:
  size_t num_examples_;
  Shape shape_;
  int64_t num_classes_;
  uint64_t seed_;
  std::vector<std::vector<float>> prototypes_;  // [num_classes][numel(shape)]
};

// The examples of `base` at `indices`, in that order, as torch.utils.data.Subset. An index
// outside `base` is an error at construction.
class Subset : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, std::vector<size_t> indices);
  // `count` examples spread evenly over `base`: indices floor(i * size / count), i < count.
  // A fixed subset without a random stream, covering every part of an ordered dataset.
  static std::shared_ptr<Subset> evenly_spaced(std::shared_ptr<const Dataset> base, size_t count);

  size_t size() const override { return indices_.size(); }
  Example get(size_t index) const override;

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<size_t> indices_;
};

// Derives an independent seed for sub-stream `stream` of `seed` (SplitMix64 mixing), so
// (seed, epoch, batch) or (seed, example) each get their own reproducible generator.
uint64_t derive_seed(uint64_t seed, uint64_t stream);

}  // namespace qat::nn::data
