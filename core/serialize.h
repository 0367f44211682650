#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qat {

// Ordered (name, tensor) pairs, as a PyTorch state_dict.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// The free-form string map stored under "__metadata__" in a safetensors header.
using SafetensorsMetadata = std::map<std::string, std::string>;

// Writes `tensors` in the safetensors format (https://github.com/huggingface/safetensors):
// u64 little-endian header length, JSON header, raw little-endian data. Tensors are stored
// in the given order. Atomic: writes `<path>.tmp.<pid>`, fsyncs it and renames it over
// `path`, so a failure (unwritable directory, disk full) throws qat::Error naming the path
// and leaves any previous file at `path` untouched. Supported dtypes: every qat DType
// (F32, F64, I64, I32, I8, U8).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata = {});

// Writes `bytes` to `path` atomically, as save_safetensors writes its file: `<path>.tmp.<pid>`,
// fsync, rename over `path`, fsync of the directory. A failure throws qat::Error naming the file
// ("cannot create '<path>.tmp.<pid>': ...") and leaves any previous file at `path` untouched.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Reads a safetensors file. Besides the written dtypes it reads F16 and BF16 (converted to
// float32). Tensors come back in the order of their data offsets (empty tensors sharing an
// offset in header order), which for files written by save_safetensors is the order they were
// saved in, and for Python's safetensors its dtype-then-name order. `metadata`, when given,
// receives "__metadata__". Any malformed input throws qat::Error naming the file, the tensor
// and the problem; the data buffer must be covered exactly, without gaps or overlaps, as the
// format requires.
NamedTensors load_safetensors(const std::string& path, SafetensorsMetadata* metadata = nullptr);

// Only the "__metadata__" of a safetensors file; reads the header, not the tensor data
// (the header is still fully validated).
SafetensorsMetadata load_safetensors_metadata(const std::string& path);

// The in-memory parser behind load_safetensors. `what` names the source in error messages
// (a file path, "fixture", ...). Never reads outside [data, data + size).
NamedTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& what,
                               SafetensorsMetadata* metadata = nullptr);

}  // namespace qat
