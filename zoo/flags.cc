#include "zoo/flags.h"

#include <cstdlib>

#include "core/check.h"

namespace qat::zoo {

Flags::Flags(std::map<std::string, std::pair<std::string, std::string>> defaults, int argc,
             const char* const* argv)
    : defaults_(std::move(defaults)) {
  for (const auto& [name, entry] : defaults_) values_[name] = entry.first;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    QAT_CHECK(arg.rfind("--", 0) == 0, "unexpected argument '", arg, "' (flags look like --name value)");
    std::string name = arg.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      QAT_CHECK(i + 1 < argc, "flag --", name, " needs a value");
      value = argv[++i];
    }
    QAT_CHECK(defaults_.count(name), "unknown flag --", name, " (HINT: --help lists the flags)");
    values_[name] = value;
  }
}

const std::string& Flags::raw(const std::string& name) const {
  auto it = values_.find(name);
  QAT_CHECK(it != values_.end(), "flag --", name, " was not declared");
  return it->second;
}

std::string Flags::get_string(const std::string& name) const { return raw(name); }

int64_t Flags::get_int(const std::string& name) const {
  const std::string& text = raw(name);
  char* end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  QAT_CHECK(!text.empty() && *end == '\0', "flag --", name, " expects an integer, got '", text, "'");
  return value;
}

double Flags::get_double(const std::string& name) const {
  const std::string& text = raw(name);
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  QAT_CHECK(!text.empty() && *end == '\0', "flag --", name, " expects a number, got '", text, "'");
  return value;
}

std::string Flags::usage(const std::string& program) const {
  std::string text = "usage: " + program + " [flags]\n";
  for (const auto& [name, entry] : defaults_)
    text += "  --" + name + " (default " + (entry.first.empty() ? "\"\"" : entry.first) + ")  " +
            entry.second + "\n";
  return text;
}

}  // namespace qat::zoo
