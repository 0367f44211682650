// The `qat` command-line tool: `qat <command> [flags]`.
//   bazel run //:qat -- summary --config zoo/configs/resnet18_fashion_mnist.json
// Errors are one line on stderr, "qat: error: ...", with exit code 1; command-line mistakes
// exit with 2.
#include <cstdio>
#include <exception>
#include <string>

#include "zoo/qat_commands.h"

namespace qat::zoo::cli {
namespace {

struct Command {
  const char* name;
  const char* summary;  // for `qat --help`
  int (*main)(int argc, const char* const* argv);
};

// New subcommands (train, eval, sensitivity) go here.
constexpr Command kCommands[] = {
    {"calibrate", "calibrate a float checkpoint for QAT and write the QAT checkpoint",
     calibrate_main},
    {"eval", "top-1 / top-5 / loss of a checkpoint: float, fake-quant, int8, ONNX Runtime, TNN",
     eval_main},
    {"export", "write the int8 model of a QAT checkpoint (ONNX Q/DQ or TNN), or the float model",
     export_main},
    {"inspect", "print the prepared QAT graph, and the quantizers of a QAT checkpoint",
     inspect_main},
    {"run", "run a model (float, fake-quant or int8) on the tensor \"input\" of a file", run_main},
    {"sensitivity", "rank the quantized nodes by accuracy cost and suggest a black_list",
     sensitivity_main},
    {"summary", "print the module tree with parameter counts and output shapes", summary_main},
    {"train", "train a config: float, calibration, QAT, export and the accuracy table; resumable",
     train_main},
    {"verify", "run exported ONNX (in ONNX Runtime) / TNN files against the in-process model",
     verify_main},
};

std::string command_names() {
  std::string names;
  for (const Command& command : kCommands)
    names += (names.empty() ? "" : ", ") + std::string(command.name);
  return names;
}

void print_help() {
  std::printf(
      "usage: qat <command> [flags]\n\n"
      "Quantization-aware training for the torchvision zoo models. A JSON config file\n"
      "(zoo/configs/*.json) names the model, its data and how to quantize it.\n\ncommands:\n");
  for (const Command& command : kCommands)
    std::printf("  %-12s %s\n", command.name, command.summary);
  std::printf("\n'qat <command> --help' lists the flags of a command.\n");
}

int qat_main(int argc, const char* const* argv) {
  enter_invocation_directory();
  if (argc < 2) throw UsageError("no command given (commands: " + command_names() + ")");
  const std::string name = argv[1];
  if (name == "--help" || name == "-h") {
    print_help();
    return 0;
  }
  for (const Command& command : kCommands) {
    if (name == command.name) return command.main(argc - 1, argv + 1);
  }
  throw UsageError("unknown command '" + name + "' (commands: " + command_names() +
                   "; see 'qat --help')");
}

}  // namespace
}  // namespace qat::zoo::cli

int main(int argc, char** argv) {
  try {
    return qat::zoo::cli::qat_main(argc, argv);
  } catch (const qat::zoo::cli::UsageError& e) {
    std::fprintf(stderr, "qat: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qat: error: %s\n", e.what());
    return 1;
  }
}
