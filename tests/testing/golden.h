#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/check.h"
#include "core/serialize.h"
#include "core/tensor.h"
#include "tests/testing/compare.h"

namespace qat::testing {

// Golden fixtures (PyTorch reference values) live in tests/data/, written by
// tests/golden/gen_fixtures.py. Bazel runs a test in the workspace's runfiles tree, so a file
// listed in the test's `data` is at tests/data/<file> relative to the working directory.
inline const char* const kGoldenDir = "tests/data/";

// Reads tests/data/<file>.
inline NamedTensors load_fixture(const std::string& file) {
  const std::string path = kGoldenDir + file;
  QAT_CHECK(std::ifstream(path).good(), "cannot open golden fixture '", path,
            "' (relative to the test's working directory).\nHINT: list it in the test's "
            "data = glob([\"data/*.safetensors\"]) in tests/BUILD, or regenerate it with "
            "/usr/bin/python3 tests/golden/gen_fixtures.py");
  return load_safetensors(path);
}

inline bool has_fixture(const NamedTensors& tensors, const std::string& name) {
  for (const auto& entry : tensors) {
    if (entry.first == name) return true;
  }
  return false;
}

// The tensor called `name`. A missing name throws qat::Error listing the names that share its
// first dotted component, which is usually enough to spot a typo or a stale fixture.
inline Tensor fixture(const NamedTensors& tensors, const std::string& name) {
  for (const auto& entry : tensors) {
    if (entry.first == name) return entry.second;
  }
  const std::string prefix = name.substr(0, name.find('.') + 1);
  std::string similar;
  for (const auto& entry : tensors) {
    if (entry.first.compare(0, prefix.size(), prefix) == 0) similar += " " + entry.first;
  }
  QAT_CHECK(false, "golden fixture has no tensor '", name, "' (", tensors.size(),
            " tensors; names starting with '", prefix, "':", similar.empty() ? " none" : similar,
            ").\nHINT: regenerate tests/data with /usr/bin/python3 tests/golden/gen_fixtures.py");
  return Tensor();
}

// A fresh leaf copy of a fixture tensor that requires grad (so .grad() collects the gradient
// without touching the loaded fixture).
inline Tensor fixture_leaf(const NamedTensors& tensors, const std::string& name) {
  Tensor t = fixture(tensors, name).clone();
  t.requires_grad_();
  return t;
}

// all_close(got, fixture(name)) with the fixture name in the message; an undefined `got` (for
// example a gradient that never arrived) fails instead of throwing.
inline ::testing::AssertionResult matches_fixture(const Tensor& got, const NamedTensors& tensors,
                                                  const std::string& name, double rtol,
                                                  double atol) {
  if (!got.defined()) {
    return ::testing::AssertionFailure() << name << ": qat produced an undefined tensor";
  }
  ::testing::AssertionResult result = all_close(got, fixture(tensors, name), rtol, atol);
  if (!result) return ::testing::AssertionFailure() << name << ": " << result.message();
  return result;
}

}  // namespace qat::testing
