#include "zoo/qat_commands.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

namespace qat::zoo::cli {

void enter_invocation_directory() {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  if (dir != nullptr && ::chdir(dir) != 0)
    throw Error(std::string("cannot enter ") + dir + ": " + std::strerror(errno));
}

std::string command_help(const CommandSpec& spec) {
  std::string usage = "usage: qat " + spec.name;
  size_t width = 0;  // of the "--name VALUE" column
  for (const FlagSpec& flag : spec.flags) {
    const std::string flag_text = "--" + flag.name + " " + flag.placeholder;
    usage += " " + (flag.default_value ? "[" + flag_text + "]" : flag_text);
    width = std::max(width, flag_text.size());
  }
  std::string text = usage + "\n\n" + spec.description + "\n\nflags:\n";
  for (const FlagSpec& flag : spec.flags) {
    const std::string flag_text = "--" + flag.name + " " + flag.placeholder;
    text += "  " + flag_text + std::string(width - flag_text.size() + 2, ' ') + flag.help;
    if (flag.default_value && !flag.default_value->empty())
      text += " (default: " + *flag.default_value + ")";
    text += "\n";
  }
  return text;
}

std::optional<Flags> parse_command_line(const CommandSpec& spec, int argc,
                                        const char* const* argv) {
  std::map<std::string, std::pair<std::string, std::string>> defaults;
  for (const FlagSpec& flag : spec.flags)
    defaults[flag.name] = {flag.default_value.value_or(""), flag.help};
  std::optional<Flags> flags;
  try {
    flags.emplace(std::move(defaults), argc, argv);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  if (flags->help_requested()) {
    std::fputs(command_help(spec).c_str(), stdout);
    return std::nullopt;
  }
  for (const FlagSpec& flag : spec.flags) {
    if (!flag.default_value && flags->get_string(flag.name).empty()) {
      throw UsageError("missing --" + flag.name + " (see 'qat " + spec.name + " --help')");
    }
  }
  return flags;
}

int64_t parse_batches(const std::string& text) {
  char* end = nullptr;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || n < 1)
    throw UsageError("--batches must be a positive integer, got '" + text + "'");
  return n;
}

}  // namespace qat::zoo::cli
