#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/data/dataset.h"

namespace qat::nn::data {

// Decompresses a complete single-member gzip stream held in memory. `what` names the source
// in errors (truncated or corrupt stream, trailing bytes).
std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& what);

// The images of an IDX3 file (magic 0x00000803, big-endian sizes count, rows, cols).
struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // [count, rows, cols]
};

// Parse decompressed IDX bytes (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"). The sizes
// must match the payload exactly; errors name `what` and the problem.
IdxImages parse_idx_images(const uint8_t* data, size_t size, const std::string& what);
// The labels of an IDX1 file (magic 0x00000801); each must be < num_classes.
std::vector<uint8_t> parse_idx_labels(const uint8_t* data, size_t size, const std::string& what,
                                      int num_classes = 10);

// Fashion-MNIST (or MNIST: same file names and format) from the IDX files, as
// torchvision.datasets.FashionMNIST without the download. The set stays in memory as uint8;
// get() converts one image to [1, rows, cols] float32 in [0, 1], as ToTensor().
class FashionMnist : public Dataset {
 public:
  // Reads <root>/{train,t10k}-images-idx3-ubyte.gz and the matching labels-idx1 file, e.g.
  // root = /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
  FashionMnist(const std::string& root, bool train);
  // From the bytes of the two files, each gzipped (detected by the 1f 8b magic) or raw; the
  // names appear in error messages.
  FashionMnist(const std::vector<uint8_t>& images_file, const std::string& images_name,
               const std::vector<uint8_t>& labels_file, const std::string& labels_name);

  size_t size() const override { return labels_.size(); }
  Example get(size_t index) const override;

 private:
  void load(const std::vector<uint8_t>& images_file, const std::string& images_name,
            const std::vector<uint8_t>& labels_file, const std::string& labels_name);

  IdxImages images_;
  std::vector<uint8_t> labels_;
};

}  // namespace qat::nn::data
