#include "core/serialize.h"

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include <gtest/gtest.h>

namespace qat {
namespace {

namespace fs = std::filesystem;

// A fresh, empty directory under the test's scratch space.
fs::path scratch_dir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  fs::path dir = fs::path(root != nullptr ? root : "/tmp") / ("serialize_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The bytes of a safetensors file: length prefix, header text, data.
std::vector<uint8_t> file_bytes(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

NamedTensors parse(const std::vector<uint8_t>& bytes, SafetensorsMetadata* metadata = nullptr) {
  return parse_safetensors(bytes.data(), bytes.size(), "fixture", metadata);
}

// Passes if `fn` throws qat::Error whose message contains every one of `parts`.
::testing::AssertionResult throws_error_with(const std::function<void()>& fn,
                                             const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    for (const std::string& part : parts) {
      if (std::string(e.what()).find(part) == std::string::npos) {
        return ::testing::AssertionFailure()
               << "message \"" << e.what() << "\" lacks \"" << part << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no qat::Error thrown";
}

void expect_same_tensors(const NamedTensors& actual, const NamedTensors& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    SCOPED_TRACE(expected[i].first);
    const Tensor& a = actual[i].second;
    const Tensor& e = expected[i].second;
    EXPECT_EQ(actual[i].first, expected[i].first);
    EXPECT_EQ(a.dtype(), e.dtype());
    EXPECT_EQ(a.shape(), e.shape());
    ASSERT_EQ(a.nbytes(), e.nbytes());
    EXPECT_EQ(std::memcmp(a.raw_data(), e.raw_data(), a.nbytes()), 0);
  }
}

TEST(Safetensors, RoundTripsEveryDtypeInSavedOrder) {
  const fs::path path = scratch_dir("round_trip") / "model.safetensors";
  // Names deliberately not sorted: the saved order must survive. The two empty tensors share an
  // offset; the header key order decides between them.
  const NamedTensors tensors = {
      {"z.f32", Tensor::from_vector<float>({1.5f, -2.25f, 3e-8f, -0.0f, 1e30f, 7.0f}, {2, 3})},
      {"y.f64", Tensor::from_vector<double>({3.141592653589793, -1e-300}, {2})},
      {"x.empty_b", Tensor::zeros({0, 3})},
      {"x.empty_a", Tensor::zeros({4, 0}, DType::kInt64)},
      {"bn.num_batches_tracked", Tensor::scalar(123456789012345.0, DType::kInt64)},
      {"i64", Tensor::from_vector<int64_t>({INT64_MIN, -1, INT64_MAX}, {3, 1})},
      {"i32", Tensor::from_vector<int32_t>({INT32_MIN, 0, INT32_MAX}, {1, 3})},
      {"i8", Tensor::from_vector<int8_t>({-128, -1, 0, 127}, {2, 2})},
      {"u8", Tensor::from_vector<uint8_t>({0, 1, 128, 255}, {4})},
      {"scalar_f32", Tensor::scalar(-0.5)},
  };
  const SafetensorsMetadata metadata = {{"format", "pt"}, {"epoch", "7"}};
  save_safetensors(path.string(), tensors, metadata);

  SafetensorsMetadata loaded_metadata;
  expect_same_tensors(load_safetensors(path.string(), &loaded_metadata), tensors);
  EXPECT_EQ(loaded_metadata, metadata);
  EXPECT_EQ(load_safetensors_metadata(path.string()), metadata);
}

TEST(Safetensors, WritesTheDocumentedLayout) {
  const fs::path path = scratch_dir("layout") / "t.safetensors";
  save_safetensors(path.string(), {{"w", Tensor::from_vector<float>({1.0f, 2.0f}, {2})}});
  const std::string bytes = read_text(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "data must start 8-byte aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 8);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})");
  float data[2];
  std::memcpy(data, bytes.data() + 8 + n, sizeof(data));
  EXPECT_EQ(data[0], 1.0f);
  EXPECT_EQ(data[1], 2.0f);
}

TEST(Safetensors, DecodesFloat16KnownBitPatterns) {
  const std::vector<std::pair<uint16_t, float>> cases = {
      {0x0000, 0.0f},
      {0x3c00, 1.0f},
      {0xc000, -2.0f},
      {0x3555, 0.333251953125f},
      {0x7bff, 65504.0f},                // largest finite
      {0x0400, 6.103515625e-05f},        // smallest normal, 2^-14
      {0x03ff, 6.097555160522461e-05f},  // largest subnormal, 1023 * 2^-24
      {0x0001, 5.960464477539063e-08f},  // smallest subnormal, 2^-24
      {0x8001, -5.960464477539063e-08f},
      {0x7c00, INFINITY},
      {0xfc00, -INFINITY},
  };
  std::vector<uint8_t> data;
  for (const auto& c : cases) {
    data.push_back(c.first & 0xff);
    data.push_back(c.first >> 8);
  }
  for (uint16_t special : {0x8000, 0x7e00, 0xfe01}) {  // -0, quiet NaN, negative NaN
    data.push_back(special & 0xff);
    data.push_back(special >> 8);
  }
  const size_t n = cases.size() + 3;
  const std::string header = R"({"h":{"dtype":"F16","shape":[)" + std::to_string(n) +
                             R"(],"data_offsets":[0,)" + std::to_string(2 * n) + "]}}";
  const NamedTensors loaded = parse(file_bytes(header, data));
  ASSERT_EQ(loaded.size(), 1u);
  const Tensor& h = loaded[0].second;
  ASSERT_EQ(h.dtype(), DType::kFloat32);
  const float* v = h.data<float>();
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(v[i], cases[i].second) << "case " << i;
  EXPECT_EQ(v[n - 3], 0.0f);
  EXPECT_TRUE(std::signbit(v[n - 3]));
  EXPECT_TRUE(std::isnan(v[n - 2]));
  EXPECT_TRUE(std::isnan(v[n - 1]));
}

// Every finite half against the textbook formula (-1)^s * 2^(e-15) * (1 + m/1024), or
// (-1)^s * 2^-14 * m/1024 for subnormals.
TEST(Safetensors, DecodesEveryFiniteFloat16) {
  std::vector<uint8_t> data;
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    data.push_back(bits & 0xff);
    data.push_back(bits >> 8);
  }
  const NamedTensors loaded =
      parse(file_bytes(R"({"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}})", data));
  const float* v = loaded.at(0).second.data<float>();
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const int sign = bits >> 15, e = (bits >> 10) & 31, m = bits & 1023;
    if (e == 31) continue;  // inf and NaN are covered above
    const double magnitude =
        e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, e - 15);
    ASSERT_EQ(v[bits], static_cast<float>(sign ? -magnitude : magnitude)) << std::hex << bits;
  }
}

TEST(Safetensors, DecodesBFloat16) {
  // 0x3f80 = 1.0; 0xc049 = -3.140625 (pi truncated to bfloat16); 0x0001 = smallest subnormal.
  const std::vector<uint8_t> data = {0x80, 0x3f, 0x49, 0xc0, 0x01, 0x00};
  const NamedTensors loaded =
      parse(file_bytes(R"({"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}})", data));
  const float* v = loaded.at(0).second.data<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -3.140625f);
  EXPECT_EQ(v[2], std::ldexp(1.0f, -133));
}

// What Python's safetensors.torch.save_file writes for a small state_dict: "__metadata__"
// {"format": "pt"} first, data sorted by dtype alignment then name, the header padded with
// spaces to a multiple of 8. Written by hand from the format description.
TEST(Safetensors, ReadsPyTorchWrittenFile) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
      R"("fc.bias":{"dtype":"F16","shape":[2],"data_offsets":[24,28]}})";
  header.resize((header.size() + 7) / 8 * 8, ' ');
  const std::vector<uint8_t> data = {
      0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // int64 42
      0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40,  // float 1, 2
      0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40,  // float 3, 4
      0x00, 0x38, 0x00, 0xbc,                          // half 0.5, -1
  };
  SafetensorsMetadata metadata;
  const NamedTensors loaded = parse(file_bytes(header, data), &metadata);
  EXPECT_EQ(metadata, (SafetensorsMetadata{{"format", "pt"}}));
  ASSERT_EQ(loaded.size(), 3u);
  EXPECT_EQ(loaded[0].first, "bn.num_batches_tracked");
  EXPECT_EQ(loaded[0].second.shape(), Shape{});
  EXPECT_EQ(loaded[0].second.item(), 42.0);
  EXPECT_EQ(loaded[1].first, "fc.weight");
  EXPECT_EQ(loaded[1].second.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(loaded[2].first, "fc.bias");
  EXPECT_EQ(loaded[2].second.to_vector<float>(), (std::vector<float>{0.5f, -1.0f}));
}

// One malformed header per case; `data_size` zero bytes follow the header.
struct MalformedCase {
  const char* name;
  std::string header;
  size_t data_size;
  std::vector<std::string> message_parts;
};

TEST(Safetensors, RejectsMalformedHeadersWithClearMessages) {
  const std::string ok_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<MalformedCase> cases = {
      {"invalid json", R"({"a":)", 8, {"'fixture'", "not valid JSON"}},
      {"not an object", "[1, 2]", 0, {"must be a JSON object, got array"}},
      {"nested too deep", R"({"a":[[[[[[[[[[]]]]]]]]]]})", 0, {"nests deeper than 8 levels"}},
      {"duplicate name", "{" + ok_a + "," + ok_a + "}", 8, {"duplicate key 'a'"}},
      {"entry not an object", R"({"a":5})", 0, {"tensor 'a'", "expected an object"}},
      {"missing field",
       R"({"a":{"dtype":"F32","data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "missing field 'shape'"}},
      {"extra field",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})",
       8,
       {"tensor 'a'", "unexpected field 'x'"}},
      {"dtype not a string",
       R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "dtype must be a string, got number"}},
      {"unknown dtype",
       R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})",
       2,
       {"tensor 'a'", "unsupported dtype 'BOOL'"}},
      {"shape not an array",
       R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "shape must be an array, got number"}},
      {"negative size",
       R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "negative size -2"}},
      {"fractional size",
       R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "shape sizes must be integers"}},
      {"numel overflow",
       R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "overflow"}},
      {"overflow hidden behind a zero",
       R"({"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})",
       0,
       {"tensor 'a'", "overflow"}},
      {"size beyond uint64",
       R"({"a":{"dtype":"U8","shape":[1e30],"data_offsets":[0,0]}})",
       0,
       {"tensor 'a'", "shape sizes must be integers"}},
      {"offsets not a pair",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
       8,
       {"tensor 'a'", "[begin, end]", "got 1 elements"}},
      {"negative offset",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})",
       8,
       {"tensor 'a'", "non-negative integers, got -8"}},
      {"nested offset",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,[8]]}})",
       8,
       {"tensor 'a'", "non-negative integers, got array"}},
      {"begin after end",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
       8,
       {"tensor 'a'", "begin > end"}},
      {"offsets past the buffer",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       4,
       {"tensor 'a'", "past the end of the 4-byte data buffer"}},
      {"byte count mismatch",
       R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
       8,
       {"tensor 'a'", "hold 8 bytes but F32 [3] needs 12"}},
      {"overlap",
       "{" + ok_a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12,
       {"tensor 'b'", "overlaps tensor 'a'"}},
      {"gap before",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12,
       {"bytes [0, 4) before tensor 'a' belong to no tensor"}},
      {"trailing bytes", "{" + ok_a + "}", 12, {"bytes [8, 12) after the last tensor"}},
      {"metadata not an object", R"({"__metadata__":[]})", 0, {"__metadata__ must be an object"}},
      {"metadata value not a string",
       R"({"__metadata__":{"epoch":3}})",
       0,
       {"__metadata__ value of 'epoch' must be a string, got number"}},
  };
  for (const MalformedCase& c : cases) {
    const std::vector<uint8_t> bytes = file_bytes(c.header, std::vector<uint8_t>(c.data_size));
    EXPECT_TRUE(throws_error_with([&] { parse(bytes); }, c.message_parts)) << c.name;
  }
}

TEST(Safetensors, RejectsBadLengthPrefix) {
  EXPECT_TRUE(throws_error_with([] { parse({1, 2, 3}); }, {"3 bytes is too short"}));

  std::vector<uint8_t> bytes = file_bytes("{}", {});
  bytes[0] = 200;  // longer than the file
  EXPECT_TRUE(throws_error_with([&] { parse(bytes); }, {"header length 200 exceeds the 2 bytes"}));

  bytes[0] = 0;
  bytes[5] = 1;  // 2^40: absurd
  EXPECT_TRUE(throws_error_with([&] { parse(bytes); }, {"exceeds the 100000000-byte limit"}));

  EXPECT_TRUE(parse(file_bytes("{}", {})).empty());
}

TEST(Safetensors, SaveRejectsBadInput) {
  const std::string path = (scratch_dir("bad_input") / "x.safetensors").string();
  const Tensor t = Tensor::zeros({2});
  EXPECT_TRUE(throws_error_with(
      [&] {
        save_safetensors(path, {{"a", t}, {"a", t}});
      },
      {path, "duplicate tensor name 'a'"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        save_safetensors(path, {{"a", Tensor()}});
      },
      {path, "tensor 'a' is undefined"}));
  EXPECT_TRUE(throws_error_with(
      [&] {
        save_safetensors(path, {{"__metadata__", t}});
      },
      {"reserved"}));
  EXPECT_TRUE(throws_error_with([&] { save_safetensors(path, {{"bad\xff", t}}); }, {"UTF-8"}));
  EXPECT_FALSE(fs::exists(path));
}

TEST(Safetensors, LoadNamesTheMissingFile) {
  EXPECT_TRUE(throws_error_with([] { load_safetensors("/nonexistent/w.safetensors"); },
                                {"cannot open '/nonexistent/w.safetensors'"}));
  EXPECT_TRUE(throws_error_with([] { load_safetensors_metadata("/nonexistent/w.safetensors"); },
                                {"cannot open '/nonexistent/w.safetensors'"}));
}

TEST(Safetensors, AtomicSaveLeavesOnlyTheTarget) {
  const fs::path dir = scratch_dir("atomic");
  const std::string path = (dir / "ckpt.safetensors").string();
  save_safetensors(path, {{"a", Tensor::ones({3})}});
  save_safetensors(path, {{"b", Tensor::ones({5})}});  // overwrites
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"ckpt.safetensors"});
  EXPECT_EQ(load_safetensors(path).at(0).first, "b");
}

TEST(Safetensors, FailedSaveNamesThePathAndLeavesNothing) {
  const fs::path dir = scratch_dir("unwritable");
  // Directory missing: nothing can be created.
  const std::string missing = (dir / "no_such_dir" / "ckpt.safetensors").string();
  EXPECT_TRUE(throws_error_with(
      [&] {
        save_safetensors(missing, {{"a", Tensor::ones({3})}});
      },
      {"save_safetensors '" + missing + "'", "No such file"}));
  // The target is a directory: the temporary file is written, then the rename fails.
  const fs::path target_dir = dir / "is_a_directory";
  fs::create_directory(target_dir);
  EXPECT_TRUE(throws_error_with(
      [&] {
        save_safetensors(target_dir.string(), {{"a", Tensor::ones({3})}});
      },
      {"save_safetensors '" + target_dir.string() + "'", "cannot rename"}));
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"is_a_directory"});
  EXPECT_TRUE(fs::is_directory(target_dir));
}

// A full disk, simulated with a file size limit: write() fails part way through. The previous
// checkpoint must survive byte for byte and no temporary file may remain.
TEST(Safetensors, DiskFullKeepsThePreviousFile) {
  const fs::path dir = scratch_dir("disk_full");
  const std::string path = (dir / "ckpt.safetensors").string();
  save_safetensors(path, {{"old", Tensor::ones({4})}});
  const std::string before = read_text(path);

  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 4096;
  const auto previous_handler = signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of a signal
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const bool threw = throws_error_with(
      [&] {
        save_safetensors(path, {{"new", Tensor::ones({1 << 16})}});
      },
      {"save_safetensors '" + path + "'", "cannot write"});
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, previous_handler);

  EXPECT_TRUE(threw);
  EXPECT_EQ(read_text(path), before);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"ckpt.safetensors"});
}

}  // namespace
}  // namespace qat
