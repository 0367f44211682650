#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace qat {

// The one exception type of the project. User errors (bad shapes, bad files, bad configs)
// throw it with a message that names the offending value; `main` catches it once.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               const std::string& message);

}  // namespace detail
}  // namespace qat

// Always-on precondition check (also in -c opt): QAT_CHECK(x.dim() == 4, "conv2d: expected ...", x.dim());
// The message parts are streamed together; the failed condition and location are appended.
#define QAT_CHECK(condition, ...)                                                               \
  do {                                                                                          \
    if (!(condition)) {                                                                         \
      ::qat::detail::check_failed(__FILE__, __LINE__, #condition,                               \
                                  ::qat::detail::str_cat(__VA_ARGS__));                         \
    }                                                                                           \
  } while (0)
