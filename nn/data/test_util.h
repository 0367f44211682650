#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "core/check.h"

// Helpers shared by the nn/data tests.
namespace qat::nn::data::test_util {

// gzip-compresses `raw` (deflate with a gzip header and trailer).
inline std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw) {
  z_stream s{};
  EXPECT_EQ(deflateInit2(&s, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::vector<uint8_t> out(deflateBound(&s, raw.size()) + 32);
  s.next_in = const_cast<uint8_t*>(raw.data());
  s.avail_in = static_cast<uInt>(raw.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

// An IDX file: big-endian magic, big-endian u32 sizes, then `payload`.
inline std::vector<uint8_t> idx_file(uint32_t magic, const std::vector<uint32_t>& dims,
                                     const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out;
  const auto put_be32 = [&out](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  };
  put_be32(magic);
  for (uint32_t d : dims) put_be32(d);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// A fresh, empty directory under the test's scratch space.
inline std::string scratch_dir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::filesystem::path dir = std::filesystem::path(root != nullptr ? root : "/tmp") / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// Passes if `fn` throws qat::Error whose message contains every one of `parts`.
inline ::testing::AssertionResult throws_error_with(const std::function<void()>& fn,
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

}  // namespace qat::nn::data::test_util
