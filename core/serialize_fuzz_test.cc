// Seeded mutation fuzzing of parse_safetensors: every mutated buffer must either parse or throw
// qat::Error; any other exception, a crash, or (under --config=asan) an out-of-bounds read fails.

#include "core/serialize.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>

#include <gtest/gtest.h>

namespace qat {
namespace {

constexpr int kMutations = 4000;

std::vector<uint8_t> prefix_bytes(uint64_t n) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  return out;
}

// A valid file as save_safetensors writes it, plus one with the read-only F16/BF16 dtypes.
std::vector<std::vector<uint8_t>> seed_files() {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::string path =
      (std::filesystem::path(root != nullptr ? root : "/tmp") / "fuzz_seed.safetensors").string();
  save_safetensors(path,
                   {{"conv.weight", Tensor::arange(24).view({2, 3, 2, 2})},
                    {"bn.num_batches_tracked", Tensor::scalar(3, DType::kInt64)},
                    {"empty", Tensor::zeros({0, 4})},
                    {"q", Tensor::arange(5, DType::kInt8)},
                    {"u", Tensor::arange(3, DType::kUInt8)},
                    {"d", Tensor::arange(2, DType::kFloat64)},
                    {"i", Tensor::arange(2, DType::kInt32)}},
                   {{"format", "pt"}});
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> saved((std::istreambuf_iterator<char>(in)), {});

  const std::string header =
      R"({"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})";
  std::vector<uint8_t> halves = prefix_bytes(header.size());
  halves.insert(halves.end(), header.begin(), header.end());
  for (uint8_t b : {0x00, 0x3c, 0x01, 0x00, 0x00, 0x7c, 0xff, 0xff, 0x80, 0x3f, 0x49, 0xc0}) {
    halves.push_back(b);
  }
  return {saved, halves};
}

// Replacements that steer the JSON toward the validator's edge cases.
const std::vector<std::string> kTokens = {
    "-1",
    "0",
    "1",
    "8",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e400",
    "2.5",
    "\"F32\"",
    "\"F16\"",
    "\"BF16\"",
    "\"I64\"",
    "\"U8\"",
    "\"X\"",
    "null",
    "true",
    "[]",
    "{}",
    "[0,0]",
    "[1,2,3]",
    "\"shape\"",
    "\"dtype\"",
    "\"data_offsets\"",
    "\"__metadata__\"",
    ",",
    ":",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\u0000",
    "\xff",
};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::vector<uint8_t> mutate(std::vector<uint8_t> bytes) {
    const int rounds = 1 + static_cast<int>(below(2));
    for (int r = 0; r < rounds; ++r) {
      switch (below(7)) {
        case 0:
          flip_bits(bytes);
          break;
        case 1:
          set_bytes(bytes);
          break;
        case 2:
          bytes.resize(below(bytes.size() + 1));
          break;
        case 3:
          edit_length_prefix(bytes);
          break;
        case 4:
          scramble_data(bytes);
          break;  // must still parse: any bit pattern is a value
        default:
          edit_json(bytes);
          break;  // twice as likely: the header holds the logic
      }
    }
    return bytes;
  }

 private:
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // Byte offset of the data buffer, or 0 if the length prefix does not fit the buffer.
  size_t data_start(const std::vector<uint8_t>& bytes) {
    if (bytes.size() < 8) return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    return n <= bytes.size() - 8 ? 8 + n : 0;
  }

  void scramble_data(std::vector<uint8_t>& bytes) {
    const size_t start = data_start(bytes);
    if (start == 0 || start == bytes.size()) return;
    for (uint64_t k = 1 + below(16); k > 0; --k) {
      bytes[start + below(bytes.size() - start)] = static_cast<uint8_t>(rng_());
    }
  }

  void flip_bits(std::vector<uint8_t>& bytes) {
    for (uint64_t k = 1 + below(8); k > 0 && !bytes.empty(); --k) {
      bytes[below(bytes.size())] ^= static_cast<uint8_t>(1u << below(8));
    }
  }

  void set_bytes(std::vector<uint8_t>& bytes) {
    static const uint8_t kInteresting[] = {0,   0xff, 0x7f, 0x80, '"', '{', '}',
                                           '[', ']',  ',',  ':',  '-', '9', ' '};
    for (uint64_t k = 1 + below(4); k > 0 && !bytes.empty(); --k) {
      bytes[below(bytes.size())] =
          below(2) ? kInteresting[below(sizeof(kInteresting))] : static_cast<uint8_t>(rng_());
    }
  }

  void edit_length_prefix(std::vector<uint8_t>& bytes) {
    if (bytes.size() < 8) return;
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    switch (below(3)) {
      case 0:
        n += below(17) - 8;
        break;  // off by a few, wrapping below zero
      case 1:
        n = below(bytes.size() + 16);
        break;
      default:
        n = rng_();
        break;
    }
    const std::vector<uint8_t> prefix = prefix_bytes(n);
    std::copy(prefix.begin(), prefix.end(), bytes.begin());
  }

  // Splices a token into the header text and rewrites the length prefix to match, so the
  // mutation reaches the validator instead of failing at the length check.
  void edit_json(std::vector<uint8_t>& bytes) {
    const size_t start = data_start(bytes);
    if (start == 0) return;
    std::string header(bytes.begin() + 8, bytes.begin() + start);
    const std::vector<uint8_t> data(bytes.begin() + start, bytes.end());
    const size_t at = below(header.size() + 1);
    const size_t erase = below(2) ? below(std::min<size_t>(header.size() - at, 12) + 1) : 0;
    header.replace(at, erase, kTokens[below(kTokens.size())]);
    bytes = prefix_bytes(header.size());
    bytes.insert(bytes.end(), header.begin(), header.end());
    bytes.insert(bytes.end(), data.begin(), data.end());
  }

  std::mt19937_64 rng_;
};

TEST(SafetensorsFuzz, MutatedFilesParseOrThrowQatError) {
  const std::vector<std::vector<uint8_t>> seeds = seed_files();
  for (const auto& seed : seeds) ASSERT_NO_THROW(parse_safetensors(seed.data(), seed.size(), "s"));
  int parsed = 0, rejected = 0;
  for (int i = 0; i < kMutations; ++i) {
    Mutator mutator(i);
    const std::vector<uint8_t> mutated = mutator.mutate(seeds[i % seeds.size()]);
    // An exactly sized heap copy, so AddressSanitizer flags any read past the end.
    const std::unique_ptr<uint8_t[]> exact(new uint8_t[mutated.size()]);
    std::copy(mutated.begin(), mutated.end(), exact.get());
    try {
      const NamedTensors tensors = parse_safetensors(exact.get(), mutated.size(), "mutant");
      size_t total = 0;
      for (const auto& named : tensors) total += named.second.nbytes();
      EXPECT_LE(total, 2 * mutated.size()) << "mutation " << i;  // F16 -> F32 at most doubles
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "mutation " << i << " threw a non-qat exception: " << e.what();
    }
  }
  // Both outcomes must be common, or the mutations are not exploring anything.
  EXPECT_GT(parsed, kMutations / 20);
  EXPECT_GT(rejected, kMutations / 4);
  std::cout << parsed << " mutants parsed, " << rejected << " rejected\n";
}

}  // namespace
}  // namespace qat
