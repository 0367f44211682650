#include "core/serialize.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

namespace qat {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; tensors are copied without byte swapping");

// Python's safetensors refuses larger headers too; it bounds what a hostile file can make us
// allocate before any data is validated.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";
// A valid header nests three levels (header, entry, shape). The bound keeps a hostile
// "[[[[..." from costing gigabytes of parser state.
constexpr int kMaxJsonDepth = 8;

// ---- dtypes

// How a stored element becomes a Tensor element: copied as is, or widened to float32.
enum class Encoding { kRaw, kFloat16, kBFloat16 };

struct FileDType {
  const char* name;  // the safetensors spelling
  size_t itemsize;   // bytes per element in the file
  DType dtype;       // the dtype of the loaded Tensor
  Encoding encoding;
};

constexpr FileDType kFileDTypes[] = {
    {"F32", 4, DType::kFloat32, Encoding::kRaw},
    {"F64", 8, DType::kFloat64, Encoding::kRaw},
    {"I64", 8, DType::kInt64, Encoding::kRaw},
    {"I32", 4, DType::kInt32, Encoding::kRaw},
    {"I8", 1, DType::kInt8, Encoding::kRaw},
    {"U8", 1, DType::kUInt8, Encoding::kRaw},
    {"F16", 2, DType::kFloat32, Encoding::kFloat16},
    {"BF16", 2, DType::kFloat32, Encoding::kBFloat16},
};

const FileDType* find_file_dtype(const std::string& name) {
  for (const FileDType& t : kFileDTypes) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

const char* file_dtype_name(DType dtype) {
  for (const FileDType& t : kFileDTypes) {
    if (t.dtype == dtype && t.encoding == Encoding::kRaw) return t.name;
  }
  QAT_CHECK(false, "save_safetensors: no safetensors dtype for ", dtype_name(dtype));
  return nullptr;
}

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// IEEE 754 binary16 -> binary32. Exact: every half value is representable as a float.
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return float_from_bits(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  if (exponent != 0) {  // normal: rebias the exponent from 15 to 127
    return float_from_bits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
  }
  // Zero or subnormal: mantissa * 2^-24, a normal float once widened.
  const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  return sign ? -magnitude : magnitude;
}

// bfloat16 is the top half of a float32.
float bfloat16_to_float(uint16_t h) { return float_from_bits(static_cast<uint32_t>(h) << 16); }

// ---- header

using Json = nlohmann::json;
// Writing keeps the caller's key order, so a reader breaks ties between empty tensors (which
// share an offset) the same way.
using OrderedJson = nlohmann::ordered_json;

struct Entry {
  std::string name;
  const FileDType* type = nullptr;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range in the data buffer
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offsets
  SafetensorsMetadata metadata;
};

std::string source(const std::string& what) { return "safetensors '" + what + "'"; }

// Parses the JSON text, rejecting duplicate keys at any depth (nlohmann silently keeps the
// last one). Returns the top-level keys in file order through `top_level_keys`.
Json parse_json(const uint8_t* text, size_t size, const std::string& what,
                std::vector<std::string>* top_level_keys) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far in each enclosing object
  std::string duplicate;
  const Json::parser_callback_t on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    QAT_CHECK(depth <= kMaxJsonDepth, source(what), ": the header nests deeper than ",
              kMaxJsonDepth, " levels");
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == Json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
      if (open_objects.size() == 1) top_level_keys->push_back(key);
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text, text + size, on_event);
  } catch (const Json::exception& e) {
    QAT_CHECK(false, source(what), ": the header is not valid JSON: ", e.what());
  }
  QAT_CHECK(duplicate.empty(), source(what), ": duplicate key '", duplicate, "' in the header");
  return json;
}

SafetensorsMetadata parse_metadata(const Json& json, const std::string& what) {
  QAT_CHECK(json.is_object(), source(what), ": ", kMetadataKey,
            " must be an object of strings, got ", json.type_name());
  SafetensorsMetadata metadata;
  for (const auto& item : json.items()) {
    QAT_CHECK(item.value().is_string(), source(what), ": ", kMetadataKey, " value of '", item.key(),
              "' must be a string, got ", item.value().type_name());
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

// Reads the "shape" array; checks that numel * itemsize fits in int64 without overflow, even
// in intermediate products (a zero dimension after huge ones must not overflow either).
Shape parse_shape(const Json& json, size_t itemsize, const std::string& where) {
  QAT_CHECK(json.is_array(), where, ": shape must be an array, got ", json.type_name());
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / itemsize;
  uint64_t product = 1;  // of the non-zero dimensions
  Shape shape;
  for (const Json& dim : json) {
    QAT_CHECK(!dim.is_number_integer() || dim.is_number_unsigned(), where,
              ": shape has a negative size ", dim.get<int64_t>());
    QAT_CHECK(dim.is_number_unsigned(), where, ": shape sizes must be integers, got a ",
              dim.type_name());
    const uint64_t size = dim.get<uint64_t>();
    QAT_CHECK(size == 0 || size <= limit / product, where, ": size ", size, " of dimension ",
              shape.size(), " makes numel * itemsize overflow int64");
    if (size != 0) product *= size;
    shape.push_back(static_cast<int64_t>(size));
  }
  return shape;
}

Entry parse_entry(const std::string& name, const Json& json, uint64_t data_size,
                  const std::string& what) {
  const std::string where = source(what) + ": tensor '" + name + "'";
  QAT_CHECK(json.is_object(), where,
            ": expected an object with dtype, shape and data_offsets, got ", json.type_name());
  for (const auto& item : json.items()) {
    QAT_CHECK(item.key() == "dtype" || item.key() == "shape" || item.key() == "data_offsets", where,
              ": unexpected field '", item.key(), "'");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    QAT_CHECK(json.contains(field), where, ": missing field '", field, "'");
  }
  Entry entry;
  entry.name = name;

  const Json& dtype = json.at("dtype");
  QAT_CHECK(dtype.is_string(), where, ": dtype must be a string, got ", dtype.type_name());
  entry.type = find_file_dtype(dtype.get<std::string>());
  QAT_CHECK(entry.type != nullptr, where, ": unsupported dtype '", dtype.get<std::string>(),
            "' (supported: F32, F64, I64, I32, I8, U8, F16, BF16)");

  entry.shape = parse_shape(json.at("shape"), entry.type->itemsize, where);

  const Json& offsets = json.at("data_offsets");
  QAT_CHECK(
      offsets.is_array() && offsets.size() == 2, where,
      ": data_offsets must be a [begin, end] array, got ",
      offsets.is_array() ? std::to_string(offsets.size()) + " elements" : offsets.type_name());
  for (const Json& offset : offsets) {
    QAT_CHECK(offset.is_number_unsigned(), where,
              ": data_offsets must hold non-negative integers, got ",
              offset.is_primitive() ? offset.dump() : offset.type_name());
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  QAT_CHECK(entry.begin <= entry.end, where, ": data_offsets [", entry.begin, ", ", entry.end,
            "] has begin > end");
  QAT_CHECK(entry.end <= data_size, where, ": data_offsets [", entry.begin, ", ", entry.end,
            "] run past the end of the ", data_size, "-byte data buffer");
  const uint64_t nbytes = static_cast<uint64_t>(shape_numel(entry.shape)) * entry.type->itemsize;
  QAT_CHECK(entry.end - entry.begin == nbytes, where, ": data_offsets [", entry.begin, ", ",
            entry.end, "] hold ", entry.end - entry.begin, " bytes but ", entry.type->name, " ",
            shape_str(entry.shape), " needs ", nbytes);
  return entry;
}

// The format requires the tensors to tile the data buffer exactly: no overlap (two tensors
// reading the same bytes) and no gaps (hidden payloads).
void check_layout(const std::vector<Entry>& entries, uint64_t data_size, const std::string& what) {
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    QAT_CHECK(e.begin >= covered, source(what), ": tensor '", e.name, "' data [", e.begin, ", ",
              e.end, ") overlaps tensor '", previous->name, "' [", previous->begin, ", ",
              previous->end, ")");
    QAT_CHECK(e.begin == covered, source(what), ": data bytes [", covered, ", ", e.begin,
              ") before tensor '", e.name, "' belong to no tensor");
    covered = e.end;
    previous = &e;
  }
  QAT_CHECK(covered == data_size, source(what), ": data bytes [", covered, ", ", data_size,
            ") after the last tensor belong to no tensor");
}

Header parse_header(const uint8_t* text, size_t size, uint64_t data_size, const std::string& what) {
  std::vector<std::string> keys;
  const Json json = parse_json(text, size, what, &keys);
  QAT_CHECK(json.is_object(), source(what), ": the header must be a JSON object, got ",
            json.type_name());
  Header header;
  for (const std::string& key : keys) {
    if (key == kMetadataKey) {
      header.metadata = parse_metadata(json.at(key), what);
    } else {
      header.entries.push_back(parse_entry(key, json.at(key), data_size, what));
    }
  }
  std::stable_sort(header.entries.begin(), header.entries.end(),
                   [](const Entry& a, const Entry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  check_layout(header.entries, data_size, what);
  return header;
}

// Reads the 8-byte length prefix and checks that the header fits in a file of `file_size`.
uint64_t header_length(const uint8_t* prefix, uint64_t file_size, const std::string& what) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  QAT_CHECK(n <= kMaxHeaderBytes, source(what), ": header length ", n, " exceeds the ",
            kMaxHeaderBytes, "-byte limit (not a safetensors file?)");
  QAT_CHECK(n <= file_size - 8, source(what), ": header length ", n, " exceeds the ", file_size - 8,
            " bytes that follow the length prefix (truncated file?)");
  return n;
}

Tensor decode(const Entry& entry, const uint8_t* src) {
  Tensor t = Tensor::empty(entry.shape, entry.type->dtype);
  if (entry.type->encoding == Encoding::kRaw) {
    std::memcpy(t.raw_data(), src, t.nbytes());
    return t;
  }
  const auto widen = entry.type->encoding == Encoding::kFloat16 ? half_to_float : bfloat16_to_float;
  float* out = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) out[i] = widen(load_u16(src + 2 * i));
  return t;
}

std::string make_header(const NamedTensors& tensors, const SafetensorsMetadata& metadata,
                        const std::string& path) {
  OrderedJson header = OrderedJson::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    QAT_CHECK(t.defined(), "save_safetensors '", path, "': tensor '", name, "' is undefined");
    QAT_CHECK(name != kMetadataKey, "save_safetensors '", path, "': '", kMetadataKey,
              "' is reserved and cannot name a tensor");
    QAT_CHECK(names.insert(name).second, "save_safetensors '", path, "': duplicate tensor name '",
              name, "'");
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = file_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = OrderedJson::array({offset, offset + t.nbytes()});
    header[name] = std::move(entry);
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const OrderedJson::exception& e) {
    QAT_CHECK(false, "save_safetensors '", path,
              "': tensor names and metadata must be valid UTF-8: ", e.what());
  }
  // Pad with spaces (valid JSON whitespace) so the data buffer starts 8-byte aligned, as
  // Python's safetensors does.
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return text;
}

// ---- POSIX file helpers

std::string errno_text() { return std::strerror(errno); }

// Owns a file descriptor; close() reports errors, the destructor (error paths) ignores them.
class File {
 public:
  File(const std::string& path, int flags, mode_t mode = 0)
      : path_(path), fd_(::open(path.c_str(), flags | O_CLOEXEC, mode)) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  uint64_t size() const {
    struct stat st;
    QAT_CHECK(::fstat(fd_, &st) == 0, "cannot stat '", path_, "': ", errno_text());
    return static_cast<uint64_t>(st.st_size);
  }

  void read_exact(void* out, size_t n) {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
      const ssize_t got = ::read(fd_, p, n);
      if (got < 0 && errno == EINTR) continue;
      QAT_CHECK(got >= 0, "cannot read '", path_, "': ", errno_text());
      QAT_CHECK(got > 0, "cannot read '", path_, "': unexpected end of file");
      p += got;
      n -= static_cast<size_t>(got);
    }
  }

  void write_all(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t put = ::write(fd_, p, n);
      if (put < 0 && errno == EINTR) continue;
      QAT_CHECK(put > 0, "cannot write '", path_, "': ", errno_text());
      p += put;
      n -= static_cast<size_t>(put);
    }
  }

  void sync_and_close() {
    QAT_CHECK(::fsync(fd_) == 0, "cannot fsync '", path_, "': ", errno_text());
    const int fd = fd_;
    fd_ = -1;
    QAT_CHECK(::close(fd) == 0, "cannot close '", path_, "': ", errno_text());
  }

 private:
  std::string path_;
  int fd_;
};

// Makes the rename itself durable: it lives in the directory, not in the file.
void sync_parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  File directory(dir, O_RDONLY | O_DIRECTORY);
  QAT_CHECK(directory.is_open(), "cannot open directory '", dir, "': ", errno_text());
  directory.sync_and_close();
}

// Creates `<path>.tmp.<pid>`, lets `write` fill it, fsyncs it and renames it over `path`. On an
// error the temporary file is removed and the error, prefixed by `what`, is rethrown.
template <class WriteFn>
void write_atomically(const std::string& path, const std::string& what, WriteFn&& write) {
  const std::string tmp_path = path + ".tmp." + std::to_string(::getpid());
  try {
    File file(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    QAT_CHECK(file.is_open(), "cannot create '", tmp_path, "': ", errno_text());
    write(file);
    file.sync_and_close();
    QAT_CHECK(::rename(tmp_path.c_str(), path.c_str()) == 0, "cannot rename '", tmp_path, "' to '",
              path, "': ", errno_text());
  } catch (const Error& e) {
    ::unlink(tmp_path.c_str());
    throw Error(what + e.what());
  }
  sync_parent_directory(path);
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata) {
  const std::string header = make_header(tensors, metadata, path);
  write_atomically(path, "save_safetensors '" + path + "': ", [&](File& file) {
    uint8_t prefix[8];
    for (int i = 0; i < 8; ++i)
      prefix[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
    file.write_all(prefix, sizeof(prefix));
    file.write_all(header.data(), header.size());
    for (const auto& named : tensors)
      file.write_all(named.second.raw_data(), named.second.nbytes());
  });
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  write_atomically(path, "", [&](File& file) { file.write_all(bytes.data(), bytes.size()); });
}

NamedTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& what,
                               SafetensorsMetadata* metadata) {
  QAT_CHECK(size >= 8, source(what), ": ", size,
            " bytes is too short for the 8-byte header length prefix");
  const uint64_t n = header_length(data, size, what);
  const uint8_t* buffer = data + 8 + n;
  const Header header = parse_header(data + 8, n, size - 8 - n, what);
  NamedTensors tensors;
  tensors.reserve(header.entries.size());
  for (const Entry& e : header.entries) tensors.emplace_back(e.name, decode(e, buffer + e.begin));
  if (metadata != nullptr) *metadata = header.metadata;
  return tensors;
}

NamedTensors load_safetensors(const std::string& path, SafetensorsMetadata* metadata) {
  File file(path, O_RDONLY);
  QAT_CHECK(file.is_open(), "load_safetensors: cannot open '", path, "': ", errno_text());
  std::vector<uint8_t> bytes(file.size());
  file.read_exact(bytes.data(), bytes.size());
  return parse_safetensors(bytes.data(), bytes.size(), path, metadata);
}

SafetensorsMetadata load_safetensors_metadata(const std::string& path) {
  File file(path, O_RDONLY);
  QAT_CHECK(file.is_open(), "load_safetensors_metadata: cannot open '", path, "': ", errno_text());
  const uint64_t file_size = file.size();
  QAT_CHECK(file_size >= 8, source(path), ": ", file_size,
            " bytes is too short for the 8-byte header length prefix");
  uint8_t prefix[8];
  file.read_exact(prefix, sizeof(prefix));
  const uint64_t n = header_length(prefix, file_size, path);
  std::vector<uint8_t> text(n);
  file.read_exact(text.data(), text.size());
  return parse_header(text.data(), text.size(), file_size - 8 - n, path).metadata;
}

}  // namespace qat
