#pragma once

#include <map>
#include <string>
#include <vector>

namespace qat::zoo {

// Strict `--name value` / `--name=value` command-line flags. Every flag must be declared with a
// default; an unknown flag, a missing value or a value of the wrong type is a qat::Error that
// names the flag. `--help` sets help_requested().
class Flags {
 public:
  // defaults: flag name (without "--") -> {default value, help text}.
  Flags(std::map<std::string, std::pair<std::string, std::string>> defaults, int argc,
        const char* const* argv);

  std::string get_string(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool help_requested() const { return help_requested_; }
  std::string usage(const std::string& program) const;

 private:
  const std::string& raw(const std::string& name) const;

  std::map<std::string, std::pair<std::string, std::string>> defaults_;
  std::map<std::string, std::string> values_;
  bool help_requested_ = false;
};

}  // namespace qat::zoo
