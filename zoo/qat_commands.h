#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "graph/int_model.h"
#include "zoo/config.h"
#include "zoo/flags.h"

// The subcommands of the `qat` tool (qat_main.cc dispatches), one file each: qat_calibrate.cc,
// qat_export.cc, qat_inspect.cc, qat_run.cc, qat_sensitivity.cc, qat_summary.cc, qat_verify.cc.
// A subcommand is a function taking its own argv (argv[0] is its name) and returning the exit
// code; it throws qat::Error for failures (exit code 1) and UsageError for command-line mistakes
// (exit code 2).
namespace qat::zoo::cli {

// A command-line mistake (unknown flag, missing --config): `qat` prints it and exits with 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

int calibrate_main(int argc, const char* const* argv);
int eval_main(int argc, const char* const* argv);
int export_main(int argc, const char* const* argv);
int inspect_main(int argc, const char* const* argv);
int run_main(int argc, const char* const* argv);
int sensitivity_main(int argc, const char* const* argv);
int summary_main(int argc, const char* const* argv);
int train_main(int argc, const char* const* argv);
// The per-model training programs (//zoo:resnet18, ...): `qat train` for configs of `model`.
int train_model_main(const std::string& model, int argc, const char* const* argv);
int verify_main(int argc, const char* const* argv);

// `bazel run` starts a binary in its runfiles tree; the user's relative paths are relative to
// the directory bazel was run from (BUILD_WORKING_DIRECTORY), which this enters.
void enter_invocation_directory();

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

// "true" / "1" or "false" / "0"; anything else is a UsageError naming --`flag`.
bool parse_bool(const std::string& flag, const std::string& value);

// The value of --batches (calibrate, verify): an integer >= 1, else a UsageError.
int64_t parse_batches(const std::string& text);

// ---- export and verify (qat_export.cc)

// The files `qat export` writes and `qat verify` checks.
struct ExportFiles {
  std::string onnx;  // empty: none
  std::string tnn;   // prefix; empty: none
  bool float_model = false;
};

// The flags "onnx", "tnn" and "float" of a command as given: empty / nullopt when not. A --float
// that is not a boolean is a UsageError.
struct ExportFlags {
  std::string onnx, tnn;
  std::optional<bool> float_model;
};
ExportFlags export_flags(const Flags& flags);

// The flags over the config's "export" section. Neither an ONNX nor a TNN file is a UsageError
// (naming `command` for its --help).
ExportFiles export_files(const ExportFlags& flags, const Config& config,
                         const std::string& command);

// For the int8 export: config_path has a "qat" section whose target writes the requested files
// (tensorrt: ONNX Q/DQ; tnn: TNN int8). Throws qat::Error saying what to change otherwise.
void check_int8_targets(const ExportFiles& files, const Config& config,
                        const std::string& config_path);

// For the float export: `checkpoint` is no QAT checkpoint (the error suggests dropping --float).
void check_float_checkpoint(const std::string& checkpoint);

// Writes the int8 model `int_model` as `files` say (ONNX Q/DQ and / or TNN int8), creating
// missing directories, and prints a line per file written to `report` (export: stdout; eval,
// whose stdout is its table: stderr).
void write_int8_files(const graph::IntModel& int_model, const ExportFiles& files,
                      std::FILE* report);

}  // namespace qat::zoo::cli
