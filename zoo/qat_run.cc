// `qat run`: one forward pass of a configured model on a tensor from a safetensors file.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/serialize.h"
#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/registry.h"

namespace qat::zoo::cli {
namespace {

CommandSpec run_spec() {
  return {
      "run",
      "Builds the model of the config's \"model\" section, loads the checkpoint and runs the\n"
      "tensor \"input\" of the input file through it in eval mode, without autograd. Writes the\n"
      "result as the tensor \"output\" of the output file. The checkpoint must match the model\n"
      "exactly, except that GoogLeNet's aux1.* and aux2.* are skipped (and listed on stderr)\n"
      "when the model is built without aux heads.",
      {
          {"config", "C.json", "config file; its \"model\" section picks the model", std::nullopt},
          {"checkpoint", "W.safetensors", "state_dict with the torchvision keys", std::nullopt},
          {"input", "X.safetensors", "holds the float32 tensor \"input\", [N, C, H, W]",
           std::nullopt},
          {"output", "Y.safetensors", "written atomically, holds the tensor \"output\"",
           std::nullopt},
          {"mode", "float", "float; fakequant and int8 are not yet supported", "float"},
      },
  };
}

void check_mode(const std::string& mode) {
  if (mode == "fakequant" || mode == "int8")
    throw Error("--mode " + mode + " is not yet supported (only float)");
  if (mode != "float")
    throw UsageError("--mode must be float, fakequant or int8, got '" + mode + "'");
}

// The tensor "input" of a safetensors file: float32, [N, C, H, W].
Tensor read_input(const std::string& path) {
  std::string names;
  for (const auto& [name, tensor] : load_safetensors(path)) {
    if (name != "input") {
      names += (names.empty() ? "" : ", ") + name;
      continue;
    }
    QAT_CHECK(tensor.dtype() == DType::kFloat32, path, ": tensor 'input' must be float32, got ",
              dtype_name(tensor.dtype()));
    QAT_CHECK(tensor.dim() == 4, path, ": tensor 'input' must be [N, C, H, W], got ",
              shape_str(tensor.shape()));
    return tensor;
  }
  throw Error(path + ": no tensor named 'input' (it has: " + names + ")");
}

}  // namespace

int run_main(int argc, const char* const* argv) {
  const CommandSpec spec = run_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  check_mode(flags->get_string("mode"));

  const Config config = load_config(flags->get_string("config"));
  const std::shared_ptr<nn::Module> model = create_model(config.model);
  const std::string checkpoint = flags->get_string("checkpoint");
  const std::vector<std::string> skipped = load_checkpoint(*model, checkpoint);
  if (!skipped.empty()) {
    std::string keys;
    for (const std::string& key : skipped) keys += (keys.empty() ? "" : ", ") + key;
    std::fprintf(stderr,
                 "qat: note: skipped %zu tensors of %s for the aux heads the model "
                 "does not have: %s\n",
                 skipped.size(), checkpoint.c_str(), keys.c_str());
  }
  const Tensor input = read_input(flags->get_string("input"));

  model->eval();
  NoGradGuard no_grad;
  const Tensor output = model->forward(input);
  const std::string output_path = flags->get_string("output");
  save_safetensors(output_path, {{"output", output}});
  std::printf("wrote %s (output %s %s)\n", output_path.c_str(), shape_str(output.shape()).c_str(),
              dtype_name(output.dtype()));
  return 0;
}

}  // namespace qat::zoo::cli
