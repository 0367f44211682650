#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "zoo/flags.h"

// The subcommands of the `qat` tool (qat_main.cc dispatches), one file each: qat_calibrate.cc,
// qat_inspect.cc, qat_run.cc, qat_summary.cc. A subcommand is a function taking its own argv
// (argv[0] is its name) and returning the exit code; it throws qat::Error for failures (exit code
// 1) and UsageError for command-line mistakes (exit code 2).
namespace qat::zoo::cli {

// A command-line mistake (unknown flag, missing --config): `qat` prints it and exits with 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

int calibrate_main(int argc, const char* const* argv);
int inspect_main(int argc, const char* const* argv);
int run_main(int argc, const char* const* argv);
int summary_main(int argc, const char* const* argv);

// One flag of a subcommand, for parsing and for its --help.
struct FlagSpec {
  std::string name;         // without "--"
  std::string placeholder;  // the value in the usage line: "C.json"
  std::string help;
  std::optional<std::string> default_value;  // std::nullopt: the flag is required
};

struct CommandSpec {
  std::string name;         // "run"
  std::string description;  // the paragraph of its --help
  std::vector<FlagSpec> flags;
};

// "usage: qat run --config C.json [--mode float]", the description and one line per flag.
std::string command_help(const CommandSpec& spec);

// Parses a subcommand's argv against its spec. Returns std::nullopt when --help was given (the
// help is printed to stdout); throws UsageError for an unknown flag, a flag without a value or
// a missing required flag.
std::optional<Flags> parse_command_line(const CommandSpec& spec, int argc, const char* const* argv);

}  // namespace qat::zoo::cli
