#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"

// The two files of a Tencent TNN model (.tnnproto text, .tnnmodel binary) as plain data, with
// their writer and parser (shared/specs/tnn_format.md §1-2). Format only: what a layer means is
// tnn_export.cc's and tnn_reader.cc's business.
namespace qat::exporters {

// TNN's v2 magic (0xFABC0004): the .tnnproto header's 4th word and every v2 RawBuffer's first.
inline constexpr uint32_t kTnnMagicV2 = 0xFABC0004u;
inline constexpr uint32_t kTnnMagicV1 = 0xFABC0002u;
// SplitUtils::SplitStr copies each comma-separated token into a 4096-byte buffer (NUL
// included) and silently drops the rest (§1.1).
inline constexpr size_t kTnnMaxTokenLength = 4095;

// One model input of the v2 input line: name, dims, DataType (0 = float).
struct TnnInput {
  std::string name;
  Shape dims;
  int32_t data_type = 0;
};

// One layer line: "<type> <name> <n_in> <n_out> <inputs> <outputs> <params>".
struct TnnLayer {
  std::string type;  // "QuantizedConvolution", "Pooling", ...
  std::string name;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<std::string> params;  // by position, as written
};

// One resource of the .tnnmodel. `buffers` are its RawBuffers in file order as tensors (float32,
// int8 or int32; shape = the stored dims, or [count] when none were stored).
//   Convolution / QuantizedConvolution   filter, [bias], [zero_point], [scale]   (+ has_bias)
//   InnerProduct / QuantizedInnerProduct weight, bias (may be empty), [zero_point], [scale]
//   BlobScale                            [zero_point], scale, bias
//   BatchNormCxx                         k, b
// A zero point the file left out (the old scale-only form) is read as an undefined tensor in
// its place, so positions stay fixed.
struct TnnResource {
  int32_t layer_type = 0;  // TNN's LayerType enum (1 = Convolution, 600 = BlobScale, ...)
  std::string type;        // the type string of the header ("Convolution", "BlobScale", ...)
  std::string name;        // layer name, or "<blob>_scale_data_"
  bool has_bias = false;   // convolution only
  std::vector<Tensor> buffers;
};

struct TnnNet {
  std::vector<TnnInput> inputs;
  std::vector<std::string> blobs;  // every blob name (the header's list; TNN ignores it)
  std::vector<std::string> outputs;
  std::vector<TnnLayer> layers;  // in execution order
  std::vector<TnnResource> resources;
};

// The .tnnproto text, formatted as TNN's ModelPacker writes it (one quoted item per line).
std::string tnn_proto_text(const TnnNet& net);
// The .tnnmodel bytes: v2 magic, the resource count, the resources in order.
std::string tnn_model_bytes(const TnnNet& net);

// Parses both files as TNN's ModelInterpreter does (quotes and newlines dropped, split on ',',
// each layer split on spaces). Accepts v1 and v2 headers and RawBuffers, the old scale-only
// zero point form and a missing leading magic. A malformed file throws qat::Error naming what
// it could not read.
TnnNet parse_tnn(const std::string& proto_text, const std::string& model_bytes);

// The comma-separated tokens of a .tnnproto as TNN's reader sees them (quotes and newlines
// removed, trimmed, blank ones dropped): for checking the 4095-character limit.
std::vector<std::string> tnn_proto_tokens(const std::string& proto_text);

// Reads a whole file into a string (binary); a missing file throws qat::Error.
std::string read_file_bytes(const std::string& path);
// Writing: qat::write_file_atomically (core/serialize.h).

}  // namespace qat::exporters
