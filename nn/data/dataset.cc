#include "nn/data/dataset.h"

#include <utility>

#include "core/check.h"
#include "core/random.h"

namespace qat::nn::data {

uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  // SplitMix64's finalizer over seed + golden-ratio step * (stream + 1): nearby inputs give
  // unrelated outputs, which matters because mt19937 seeded with 1, 2, 3 starts out correlated.
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

SyntheticDataset::SyntheticDataset(size_t num_examples, Shape shape, int64_t num_classes,
                                   uint64_t seed)
    : num_examples_(num_examples),
      shape_(std::move(shape)),
      num_classes_(num_classes),
      seed_(seed) {
  QAT_CHECK(num_classes > 0, "SyntheticDataset: num_classes must be positive, got ", num_classes);
  for (int64_t s : shape_) {
    QAT_CHECK(s > 0, "SyntheticDataset: image shape must be positive, got ", shape_str(shape_));
  }
  // Stream 0 holds the prototypes; example i uses stream i + 1.
  Generator gen(derive_seed(seed_, 0));
  prototypes_.assign(num_classes, std::vector<float>(shape_numel(shape_)));
  for (std::vector<float>& prototype : prototypes_) {
    for (float& v : prototype) v = static_cast<float>(gen.normal(0.0, 1.0));
  }
}

Example SyntheticDataset::get(size_t index) const {
  QAT_CHECK(index < num_examples_, "SyntheticDataset: index ", index, " out of range for ",
            num_examples_, " examples");
  Example example;
  example.label = static_cast<int64_t>(index % static_cast<size_t>(num_classes_));
  example.image = Tensor::empty(shape_);
  const std::vector<float>& prototype = prototypes_[example.label];
  float* out = example.image.data<float>();
  Generator gen(derive_seed(seed_, index + 1));
  for (size_t i = 0; i < prototype.size(); ++i) {
    out[i] = prototype[i] + static_cast<float>(gen.normal(0.0, 1.0));
  }
  return example;
}

Subset::Subset(std::shared_ptr<const Dataset> base, std::vector<size_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  QAT_CHECK(base_ != nullptr, "Subset: no base dataset");
  for (size_t index : indices_) {
    QAT_CHECK(index < base_->size(), "Subset: index ", index, " is outside the dataset of ",
              base_->size(), " examples");
  }
}

std::shared_ptr<Subset> Subset::evenly_spaced(std::shared_ptr<const Dataset> base,
                                              size_t count) {
  QAT_CHECK(base != nullptr, "Subset: no base dataset");
  const size_t size = base->size();
  QAT_CHECK(count >= 1 && count <= size, "Subset: cannot take ", count, " examples of ", size);
  std::vector<size_t> indices(count);
  for (size_t i = 0; i < count; ++i) indices[i] = i * size / count;  // < size, increasing
  return std::make_shared<Subset>(std::move(base), std::move(indices));
}

Example Subset::get(size_t index) const {
  QAT_CHECK(index < indices_.size(), "Subset: index ", index, " out of range for ",
            indices_.size(), " examples");
  return base_->get(indices_[index]);
}

}  // namespace qat::nn::data
