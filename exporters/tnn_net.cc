#include "exporters/tnn_net.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"

namespace qat::exporters {
namespace {

// TNN's DataType enum (include/tnn/core/common.h).
constexpr int32_t kDataFloat = 0;
constexpr int32_t kDataInt8 = 2;
constexpr int32_t kDataInt32 = 3;

// The resource type strings whose payload this file knows (§2.3).
enum class Payload { kConvolution, kInnerProduct, kBlobScale, kBatchNorm };

bool payload_of_type(const std::string& type, Payload& out) {
  if (type == "Convolution" || type == "QuantizedConvolution") {
    out = Payload::kConvolution;
  } else if (type == "InnerProduct" || type == "QuantizedInnerProduct") {
    out = Payload::kInnerProduct;
  } else if (type == "BlobScale") {
    out = Payload::kBlobScale;
  } else if (type == "BatchNormCxx") {
    out = Payload::kBatchNorm;
  } else {
    return false;
  }
  return true;
}

// The old header form carries no type string: the LayerType int decides.
bool payload_of_layer_type(int32_t layer_type, Payload& out) {
  switch (layer_type) {
    case 1:
      out = Payload::kConvolution;
      return true;
    case 19:
      out = Payload::kInnerProduct;
      return true;
    case 600:
      out = Payload::kBlobScale;
      return true;
    case 2:
      out = Payload::kBatchNorm;
      return true;
    default:
      return false;
  }
}

// ----- writing -----

class ByteWriter {
 public:
  void u32(uint32_t v) { append(&v, 4); }  // little-endian host (x86, ARM)
  void i32(int32_t v) { append(&v, 4); }
  void str(const std::string& s) {
    i32(static_cast<int32_t>(s.size()));
    bytes_ += s;
  }
  // Serializer::PutRaw with the v2 magic: dtype, byte length, then (if any) dims and data.
  void raw(const Tensor& t) {
    u32(kTnnMagicV2);
    if (!t.defined() || t.numel() == 0) {
      i32(kDataFloat);
      i32(0);
      return;
    }
    int32_t data_type = kDataFloat;
    switch (t.dtype()) {
      case DType::kFloat32:
        data_type = kDataFloat;
        break;
      case DType::kInt8:
        data_type = kDataInt8;
        break;
      case DType::kInt32:
        data_type = kDataInt32;
        break;
      default:
        QAT_CHECK(false, "tnn: a RawBuffer holds float32, int8 or int32, got ",
                  dtype_name(t.dtype()));
    }
    i32(data_type);
    i32(static_cast<int32_t>(t.nbytes()));
    i32(static_cast<int32_t>(t.dim()));
    for (const int64_t d : t.shape()) i32(static_cast<int32_t>(d));
    append(t.raw_data(), t.nbytes());
  }
  const std::string& bytes() const { return bytes_; }

 private:
  void append(const void* p, size_t n) { bytes_.append(static_cast<const char*>(p), n); }
  std::string bytes_;
};

void write_resource(ByteWriter& w, const TnnResource& r) {
  Payload payload;
  QAT_CHECK(payload_of_type(r.type, payload), "tnn: no payload writer for resource type '", r.type,
            "' (resource '", r.name, "')");
  w.i32(r.layer_type);
  w.str(r.type);
  w.str(r.name);
  switch (payload) {
    case Payload::kConvolution:
      w.str(r.name);
      w.i32(r.has_bias ? 1 : 0);
      break;
    case Payload::kInnerProduct:
      w.str(r.name);
      break;
    case Payload::kBlobScale:
    case Payload::kBatchNorm:
      break;
  }
  for (const Tensor& t : r.buffers) w.raw(t);
}

std::string join(const std::vector<std::string>& words, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) out += (i ? sep : "") + words[i];
  return out;
}

// ----- reading -----

std::vector<std::string> split(const std::string& s, char sep, bool skip_blank) {
  std::vector<std::string> out;
  std::string current;
  auto flush = [&] {
    if (!skip_blank || !current.empty()) out.push_back(current);
    current.clear();
  };
  for (const char c : s) {
    if (c == sep) {
      flush();
    } else {
      current += c;
    }
  }
  flush();
  return out;
}

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(' ');
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(' ') - begin + 1);
}

int64_t parse_int(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  QAT_CHECK(false, "tnn proto: ", what, " must be an integer, got '", s, "'");
  return 0;
}

class ByteReader {
 public:
  explicit ByteReader(const std::string& bytes) : bytes_(bytes) {}

  size_t remaining() const { return bytes_.size() - pos_; }
  size_t position() const { return pos_; }
  void seek(size_t pos) { pos_ = pos; }
  uint32_t u32() {
    uint32_t v;
    take(&v, 4);
    return v;
  }
  int32_t i32() {
    int32_t v;
    take(&v, 4);
    return v;
  }
  std::string str() {
    const int32_t n = i32();
    QAT_CHECK(n >= 0 && static_cast<size_t>(n) <= remaining(), "tnn model: a string of ", n,
              " bytes at offset ", pos_ - 4, " runs past the end of the file");
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  Tensor raw() {
    const uint32_t magic = u32();
    QAT_CHECK(magic == kTnnMagicV2 || magic == kTnnMagicV1, "tnn model: expected a RawBuffer magic",
              " at offset ", pos_ - 4, ", got 0x", std::hex, magic);
    const int32_t data_type = i32();
    const int32_t length = i32();
    QAT_CHECK(length >= 0 && static_cast<size_t>(length) <= remaining(),
              "tnn model: a RawBuffer of ", length, " bytes runs past the end of the file");
    DType dtype = DType::kFloat32;
    size_t element = 4;
    if (data_type == kDataInt8) {
      dtype = DType::kInt8;
      element = 1;
    } else if (data_type == kDataInt32) {
      dtype = DType::kInt32;
    } else {
      QAT_CHECK(data_type == kDataFloat, "tnn model: RawBuffer data type ", data_type,
                " is not supported (float 0, int8 2, int32 3)");
    }
    if (length == 0) return Tensor::empty({0}, dtype);
    QAT_CHECK(length % element == 0, "tnn model: a RawBuffer of ", length,
              " bytes is not a whole number of ", dtype_name(dtype), " elements");
    const auto count = static_cast<int64_t>(length / element);
    Shape dims;
    if (magic == kTnnMagicV2) {
      const int32_t ndims = i32();
      QAT_CHECK(ndims >= 0 && ndims <= 8, "tnn model: RawBuffer with ", ndims, " dims");
      for (int32_t d = 0; d < ndims; ++d) dims.push_back(i32());
    }
    if (dims.empty() || shape_numel(dims) != count) dims = {count};
    QAT_CHECK(static_cast<size_t>(length) <= remaining(), "tnn model: RawBuffer data runs past",
              " the end of the file");
    Tensor t = Tensor::empty(dims, dtype);
    take(t.raw_data(), static_cast<size_t>(length));
    return t;
  }

 private:
  void take(void* out, size_t n) {
    QAT_CHECK(n <= remaining(), "tnn model: unexpected end of file at offset ", pos_);
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
  }

  const std::string& bytes_;
  size_t pos_ = 0;
};

// Reads the zero point / scale pair of a quantized weight or blob scale: int8 zero points
// first (new form), or directly the float scale (old form, zero point 0).
void read_zero_point_and_scale(ByteReader& r, TnnResource& out) {
  Tensor first = r.raw();
  if (first.dtype() == DType::kInt8) {
    out.buffers.push_back(first);
    out.buffers.push_back(r.raw());
  } else {
    out.buffers.push_back(Tensor());
    out.buffers.push_back(first);
  }
}

TnnResource read_resource(ByteReader& r) {
  TnnResource out;
  out.layer_type = r.i32();
  const std::string first = r.str();
  Payload payload;
  if (payload_of_type(first, payload)) {
    out.type = first;
    out.name = r.str();
  } else {
    QAT_CHECK(payload_of_layer_type(out.layer_type, payload), "tnn model: resource '", first,
              "' has LayerType ", out.layer_type,
              ", whose payload this reader does not know (it reads Convolution, InnerProduct, "
              "BlobScale and BatchNormCxx)");
    out.name = first;
  }
  switch (payload) {
    case Payload::kConvolution: {
      r.str();  // the layer name again
      out.has_bias = r.i32() != 0;
      const Tensor filter = r.raw();
      out.buffers.push_back(filter);
      if (out.has_bias) out.buffers.push_back(r.raw());
      if (filter.dtype() == DType::kInt8) read_zero_point_and_scale(r, out);
      break;
    }
    case Payload::kInnerProduct: {
      r.str();
      const Tensor weight = r.raw();
      out.buffers.push_back(weight);
      out.buffers.push_back(r.raw());
      if (weight.dtype() == DType::kInt8) read_zero_point_and_scale(r, out);
      break;
    }
    case Payload::kBlobScale:
      read_zero_point_and_scale(r, out);
      out.buffers.push_back(r.raw());
      break;
    case Payload::kBatchNorm:
      out.buffers.push_back(r.raw());
      out.buffers.push_back(r.raw());
      break;
  }
  return out;
}

std::vector<TnnInput> parse_inputs(const std::string& token, bool v2) {
  std::vector<TnnInput> inputs;
  for (const std::string& item : split(token, ':', /*skip_blank=*/true)) {
    const std::vector<std::string> words = split(item, ' ', /*skip_blank=*/true);
    if (words.empty()) continue;
    TnnInput in;
    in.name = words[0];
    if (v2) {
      QAT_CHECK(words.size() >= 2, "tnn proto: input '", in.name, "' has no dims");
      const int64_t ndims = parse_int(words[1], "the input's number of dims");
      QAT_CHECK(ndims >= 0 && static_cast<int64_t>(words.size()) == ndims + 3, "tnn proto: input '",
                in.name, "' needs ", ndims, " dims and a data type");
      for (int64_t d = 0; d < ndims; ++d) in.dims.push_back(parse_int(words[2 + d], "a dim"));
      in.data_type = static_cast<int32_t>(parse_int(words.back(), "the input data type"));
    } else {
      for (size_t d = 1; d < words.size(); ++d) in.dims.push_back(parse_int(words[d], "a dim"));
    }
    inputs.push_back(in);
  }
  return inputs;
}

TnnLayer parse_layer(const std::string& token) {
  const std::vector<std::string> words = split(token, ' ', /*skip_blank=*/true);
  QAT_CHECK(words.size() >= 4, "tnn proto: layer line '", token, "' is too short");
  TnnLayer layer;
  layer.type = words[0];
  layer.name = words[1];
  const int64_t n_in = parse_int(words[2], "layer '" + layer.name + "' input count");
  const int64_t n_out = parse_int(words[3], "layer '" + layer.name + "' output count");
  QAT_CHECK(n_in >= 0 && n_out >= 0 && static_cast<int64_t>(words.size()) >= 4 + n_in + n_out,
            "tnn proto: layer '", layer.name, "' lists ", n_in, " inputs and ", n_out,
            " outputs but has ", words.size() - 4, " words after its counts");
  size_t i = 4;
  for (int64_t k = 0; k < n_in; ++k) layer.inputs.push_back(words[i++]);
  for (int64_t k = 0; k < n_out; ++k) layer.outputs.push_back(words[i++]);
  layer.params.assign(words.begin() + static_cast<std::ptrdiff_t>(i), words.end());
  return layer;
}

}  // namespace

std::string tnn_proto_text(const TnnNet& net) {
  std::ostringstream os;
  os << "\"1 " << net.blobs.size() << " 1 " << kTnnMagicV2 << " ,\"\n";
  std::vector<std::string> inputs;
  for (const TnnInput& in : net.inputs) {
    std::string item = in.name + " " + std::to_string(in.dims.size());
    for (const int64_t d : in.dims) item += " " + std::to_string(d);
    inputs.push_back(item + " " + std::to_string(in.data_type));
  }
  os << "\"" << join(inputs, " : ") << " ,\"\n";
  os << "\" " << join(net.blobs, " ") << " ,\"\n";
  os << "\"" << join(net.outputs, " ") << " ,\"\n";
  os << "\" " << net.layers.size() << " ,\"\n";
  for (const TnnLayer& l : net.layers) {
    os << "\"" << l.type << " " << l.name << " " << l.inputs.size() << " " << l.outputs.size();
    for (const std::string& b : l.inputs) os << " " << b;
    for (const std::string& b : l.outputs) os << " " << b;
    for (const std::string& p : l.params) os << " " << p;
    os << " ,\"\n";
  }
  return os.str();
}

std::string tnn_model_bytes(const TnnNet& net) {
  ByteWriter w;
  w.u32(kTnnMagicV2);
  w.i32(static_cast<int32_t>(net.resources.size()));
  for (const TnnResource& r : net.resources) write_resource(w, r);
  return w.bytes();
}

std::vector<std::string> tnn_proto_tokens(const std::string& proto_text) {
  std::string text;
  for (const char c : proto_text)
    if (c != '"' && c != '\n' && c != '\r') text += c;
  std::vector<std::string> tokens;
  for (const std::string& t : split(text, ',', /*skip_blank=*/false)) tokens.push_back(trim(t));
  return tokens;
}

TnnNet parse_tnn(const std::string& proto_text, const std::string& model_bytes) {
  const std::vector<std::string> tokens = tnn_proto_tokens(proto_text);
  QAT_CHECK(tokens.size() >= 5, "tnn proto: expected a header, inputs, blobs, outputs and a ",
            "layer count, got ", tokens.size(), " comma-separated items");
  for (size_t i = 0; i < tokens.size(); ++i) {
    QAT_CHECK(i == 2 || tokens[i].size() <= kTnnMaxTokenLength, "tnn proto: item ", i, " is ",
              tokens[i].size(), " characters long; TNN cuts items after ", kTnnMaxTokenLength);
  }
  const std::vector<std::string> header = split(tokens[0], ' ', /*skip_blank=*/true);
  QAT_CHECK(header.size() >= 4, "tnn proto: the header '", tokens[0],
            "' has no magic number (4th word)");
  const int64_t magic = parse_int(header[3], "the header magic");
  QAT_CHECK(magic == kTnnMagicV2 || magic == kTnnMagicV1, "tnn proto: unknown magic ", magic,
            " (v1 ", kTnnMagicV1, ", v2 ", kTnnMagicV2, ")");
  TnnNet net;
  net.inputs = parse_inputs(tokens[1], magic == kTnnMagicV2);
  net.blobs = split(tokens[2], ' ', /*skip_blank=*/true);
  net.outputs = split(tokens[3], ' ', /*skip_blank=*/true);
  for (size_t i = 5; i < tokens.size(); ++i)
    if (!tokens[i].empty()) net.layers.push_back(parse_layer(tokens[i]));

  ByteReader r(model_bytes);
  if (r.remaining() >= 4) {
    const uint32_t first = r.u32();
    if (first != kTnnMagicV2 && first != kTnnMagicV1) r.seek(0);
  }
  const int32_t count = r.i32() & 0x1FFFFFFF;
  QAT_CHECK(count < 10000, "tnn model: ", count, " resources (TNN reads fewer than 10000)");
  for (int32_t i = 0; i < count; ++i) {
    try {
      net.resources.push_back(read_resource(r));
    } catch (const Error& e) {
      throw Error("tnn model: resource " + std::to_string(i) + ": " + e.what());
    }
  }
  return net;
}

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QAT_CHECK(in, "cannot open '", path, "'");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace qat::exporters
