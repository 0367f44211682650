#pragma once

#include <string>

#include "core/check.h"

namespace qat::testing {

// The message of the qat::Error that fn() throws, or "" when it throws none. Tests match the
// part of the message a user relies on:
//   EXPECT_NE(error_of([&] { conv2d(x, w, b); }).find("expects 6 (groups=2)"), std::string::npos);
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace qat::testing
