#include "nn/data/mnist.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include <zlib.h>

namespace qat::nn::data {
namespace {

// Larger than any IDX set in use (EMNIST's biggest is ~550 MB); stops a hostile stream from
// inflating without bound.
constexpr size_t kMaxDecompressedBytes = size_t{2} << 30;
// zlib counts in 32-bit uInt; feed and drain it in pieces well below that.
constexpr size_t kZlibChunk = size_t{1} << 30;

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte data, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte data, 1 dimension

uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

std::string hex(uint32_t v) {
  char text[11];
  std::snprintf(text, sizeof(text), "0x%08x", v);
  return text;
}

// Checks the magic and the header length; returns the dimension sizes.
std::vector<uint64_t> parse_idx_header(const uint8_t* data, size_t size, uint32_t magic,
                                       const std::string& what) {
  const char* kind = magic == kImagesMagic ? "IDX3 images" : "IDX1 labels";
  QAT_CHECK(size >= 4, what, ": ", size, " bytes is too short for an ", kind, " file");
  QAT_CHECK(load_be32(data) == magic, what, ": bad magic ", hex(load_be32(data)), ", expected ",
            hex(magic), " for ", kind);
  const size_t ndim = magic & 0xff;
  QAT_CHECK(size >= 4 + 4 * ndim, what, ": truncated header: ", ndim, " dimension sizes need ",
            4 + 4 * ndim, " bytes, got ", size);
  std::vector<uint64_t> dims(ndim);
  for (size_t d = 0; d < ndim; ++d) dims[d] = load_be32(data + 4 + 4 * d);
  return dims;
}

// Owns a zlib inflate stream.
class Inflater {
 public:
  explicit Inflater(const std::string& what) {
    // 16 + MAX_WBITS: expect a gzip header and trailer (checked CRC), not a raw zlib stream.
    QAT_CHECK(inflateInit2(&stream_, 16 + MAX_WBITS) == Z_OK, what, ": cannot start zlib inflate");
  }
  ~Inflater() { inflateEnd(&stream_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  z_stream& stream() { return stream_; }

 private:
  z_stream stream_{};
};

bool is_gzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  QAT_CHECK(file, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)), {});
  QAT_CHECK(!file.bad(), "cannot read '", path, "': ", std::strerror(errno));
  return bytes;
}

}  // namespace

std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& what) {
  Inflater inflater(what);
  z_stream& s = inflater.stream();
  std::vector<uint8_t> out(std::min(std::max<size_t>(4 * size, 1 << 16), kMaxDecompressedBytes));
  size_t consumed = 0, produced = 0;
  for (;;) {
    if (s.avail_in == 0 && consumed < size) {
      const size_t n = std::min(size - consumed, kZlibChunk);
      s.next_in = const_cast<uint8_t*>(data + consumed);  // zlib never writes through next_in
      s.avail_in = static_cast<uInt>(n);
      consumed += n;
    }
    if (produced == out.size()) {
      QAT_CHECK(out.size() < kMaxDecompressedBytes, what, ": decompresses to more than ",
                kMaxDecompressedBytes, " bytes");
      out.resize(std::min(2 * out.size(), kMaxDecompressedBytes));
    }
    const size_t room = std::min(out.size() - produced, kZlibChunk);
    s.next_out = out.data() + produced;
    s.avail_out = static_cast<uInt>(room);
    const int ret = inflate(&s, Z_NO_FLUSH);
    produced += room - s.avail_out;
    if (ret == Z_STREAM_END) break;
    // Z_BUF_ERROR = no progress; with output room to spare that means the input ran out.
    QAT_CHECK(ret != Z_BUF_ERROR || s.avail_in > 0 || consumed < size, what,
              ": truncated gzip stream (", size, " bytes)");
    QAT_CHECK(ret == Z_OK || ret == Z_BUF_ERROR, what, ": corrupt gzip stream (",
              s.msg != nullptr ? s.msg : zError(ret), ")");
  }
  const size_t trailing = s.avail_in + (size - consumed);
  QAT_CHECK(trailing == 0, what, ": ", trailing, " unexpected bytes after the gzip stream");
  out.resize(produced);
  return out;
}

IdxImages parse_idx_images(const uint8_t* data, size_t size, const std::string& what) {
  const std::vector<uint64_t> dims = parse_idx_header(data, size, kImagesMagic, what);
  IdxImages images;
  images.count = static_cast<int64_t>(dims[0]);
  images.rows = static_cast<int64_t>(dims[1]);
  images.cols = static_cast<int64_t>(dims[2]);
  QAT_CHECK(images.rows > 0 && images.cols > 0, what, ": image size must be positive, got ",
            images.rows, "x", images.cols);
  // count * rows * cols < 2^96 may overflow 64 bits; compare against the payload by division.
  const uint64_t image_bytes = dims[1] * dims[2];
  const size_t payload = size - 16;
  QAT_CHECK(payload % image_bytes == 0 && payload / image_bytes == dims[0], what, ": header says ",
            dims[0], " images of ", dims[1], "x", dims[2], " but ", payload,
            " bytes of pixels follow (truncated or padded file?)");
  images.pixels.assign(data + 16, data + size);
  return images;
}

std::vector<uint8_t> parse_idx_labels(const uint8_t* data, size_t size, const std::string& what,
                                      int num_classes) {
  const std::vector<uint64_t> dims = parse_idx_header(data, size, kLabelsMagic, what);
  const size_t payload = size - 8;
  QAT_CHECK(payload == dims[0], what, ": header says ", dims[0], " labels but ", payload,
            " bytes follow (truncated or padded file?)");
  std::vector<uint8_t> labels(data + 8, data + size);
  for (size_t i = 0; i < labels.size(); ++i) {
    QAT_CHECK(labels[i] < num_classes, what, ": label ", int{labels[i]}, " of example ", i,
              " is out of range [0, ", num_classes, ")");
  }
  return labels;
}

FashionMnist::FashionMnist(const std::string& root, bool train) {
  const std::string prefix = root + (train ? "/train" : "/t10k");
  const std::string images_path = prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = prefix + "-labels-idx1-ubyte.gz";
  const std::vector<uint8_t> images_file = read_file(images_path);
  load(images_file, images_path, read_file(labels_path), labels_path);
}

FashionMnist::FashionMnist(const std::vector<uint8_t>& images_file, const std::string& images_name,
                           const std::vector<uint8_t>& labels_file,
                           const std::string& labels_name) {
  load(images_file, images_name, labels_file, labels_name);
}

void FashionMnist::load(const std::vector<uint8_t>& images_file, const std::string& images_name,
                        const std::vector<uint8_t>& labels_file, const std::string& labels_name) {
  const std::vector<uint8_t> images =
      is_gzip(images_file) ? gunzip(images_file.data(), images_file.size(), images_name)
                           : images_file;
  const std::vector<uint8_t> labels =
      is_gzip(labels_file) ? gunzip(labels_file.data(), labels_file.size(), labels_name)
                           : labels_file;
  images_ = parse_idx_images(images.data(), images.size(), images_name);
  labels_ = parse_idx_labels(labels.data(), labels.size(), labels_name);
  QAT_CHECK(static_cast<size_t>(images_.count) == labels_.size(), images_name, " holds ",
            images_.count, " images but ", labels_name, " holds ", labels_.size(), " labels");
}

Example FashionMnist::get(size_t index) const {
  QAT_CHECK(index < size(), "FashionMnist: index ", index, " out of range for ", size(),
            " examples");
  Example example;
  example.label = labels_[index];
  example.image = Tensor::empty({1, images_.rows, images_.cols});
  float* out = example.image.data<float>();
  const int64_t n = images_.rows * images_.cols;
  const uint8_t* in = images_.pixels.data() + index * static_cast<size_t>(n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) / 255.0f;  // as ToTensor
  return example;
}

}  // namespace qat::nn::data
