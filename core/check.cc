#include "core/check.h"

namespace qat::detail {

void check_failed(const char* file, int line, const char* condition, const std::string& message) {
  std::string text = message.empty() ? std::string("check failed") : message;
  text += " [";
  text += condition;
  text += " at ";
  text += file;
  text += ":";
  text += std::to_string(line);
  text += "]";
  throw Error(text);
}

}  // namespace qat::detail
