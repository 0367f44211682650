#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace qat::nn {

// An (h, w) pair that also accepts a single int, like PyTorch's _pair:
// Conv2d(3, 64, 7) means kernel_size (7, 7); Conv2dOptions().stride({2, 1}) sets (2, 1).
// It remembers which form it was given, so layer reprs print "3" or "(3, 1)" as PyTorch does.
class IntPair {
 public:
  IntPair(int64_t value) : h(value), w(value), scalar_(true) {}  // NOLINT: implicit on purpose
  IntPair(int64_t h, int64_t w) : h(h), w(w), scalar_(false) {}

  std::array<int64_t, 2> array() const { return {h, w}; }
  bool operator==(const IntPair& other) const { return h == other.h && w == other.w; }
  bool operator!=(const IntPair& other) const { return !(*this == other); }
  // "(7, 7)": Conv2d always prints tuples (_pair converts its arguments).
  std::string tuple_str() const { return "(" + std::to_string(h) + ", " + std::to_string(w) + ")"; }
  // "3" or "(3, 1)", as given: pooling layers keep their arguments as passed.
  std::string str() const { return scalar_ ? std::to_string(h) : tuple_str(); }

  int64_t h;
  int64_t w;

 private:
  bool scalar_;
};

}  // namespace qat::nn
