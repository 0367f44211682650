// `qat run`: one forward pass of a configured model on a tensor from a safetensors file: the
// float model, its fake-quant QAT graph, or the integer model convert() makes from it.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/serialize.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "quant/qat_module.h"
#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"

namespace qat::zoo::cli {
namespace {

CommandSpec run_spec() {
  return {
      "run",
      "Builds the model of the config's \"model\" section, loads the checkpoint and runs the\n"
      "tensor \"input\" of the input file through it in eval mode, without autograd. Writes the\n"
      "result as the tensor \"output\" of the output file.\n"
      "  float:     the float model; the checkpoint must match it exactly, except that\n"
      "             GoogLeNet's aux1.* and aux2.* are skipped (and listed on stderr) when the\n"
      "             model is built without aux heads.\n"
      "  fakequant: the model prepared as the config's \"qat\" section says, with a QAT\n"
      "             checkpoint ('qat calibrate' or training); observers frozen.\n"
      "  int8:      that model converted to the integer model of the target (tensorrt and the\n"
      "             PyTorch presets: Q/DQ as\n"
      "             ONNX Runtime computes it; tnn: TNN's int8 kernels), simulated in-process.",
      {
          {"config", "C.json", "config file; its \"model\" section picks the model", std::nullopt},
          {"checkpoint", "W.safetensors",
           "state_dict with the torchvision keys (fakequant, int8: a QAT checkpoint)",
           std::nullopt},
          {"input", "X.safetensors", "holds the float32 tensor \"input\", [N, C, H, W]",
           std::nullopt},
          {"output", "Y.safetensors", "written atomically, holds the tensor \"output\"",
           std::nullopt},
          {"mode", "float", "float, fakequant or int8", "float"},
      },
  };
}

void check_mode(const std::string& mode) {
  if (mode != "float" && mode != "fakequant" && mode != "int8")
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

// The float model with its float checkpoint.
Tensor run_float(const Config& config, const std::string& checkpoint, const Tensor& input) {
  if (const std::optional<std::string> target = qat_checkpoint_target(checkpoint)) {
    throw Error(checkpoint + ": a QAT checkpoint (target " + *target +
                "); run it with --mode fakequant or --mode int8");
  }
  const std::shared_ptr<nn::Module> model = create_model(config.model);
  const std::vector<std::string> skipped = load_checkpoint(*model, checkpoint);
  if (!skipped.empty()) {
    std::string keys;
    for (const std::string& key : skipped) keys += (keys.empty() ? "" : ", ") + key;
    std::fprintf(stderr,
                 "qat: note: skipped %zu tensors of %s for the aux heads the model "
                 "does not have: %s\n",
                 skipped.size(), checkpoint.c_str(), keys.c_str());
  }
  model->eval();
  NoGradGuard no_grad;
  return model->forward(input);
}

// The prepared model with a QAT checkpoint: the fake-quant eval forward, or (int8) the
// simulated integer model. Observers are frozen, so the checkpoint's scales are the ones used.
Tensor run_quantized(const Config& config, const std::string& config_path,
                     const std::string& checkpoint, const std::string& mode, const Tensor& input) {
  if (!config.qat) {
    throw Error("--mode " + mode + " needs a \"qat\" section in " + config_path +
                " (the target and qconfig the checkpoint was calibrated with)");
  }
  const std::shared_ptr<graph::QuantizableModel> qm =
      prepare_model(create_model(config.model), config, config_path);
  load_qat_checkpoint(*qm, checkpoint);
  quant::disable_observer(*qm);
  qm->eval();
  NoGradGuard no_grad;
  if (mode == "fakequant") return qm->forward(input);
  return graph::simulate(graph::convert(*qm), input);
}

}  // namespace

int run_main(int argc, const char* const* argv) {
  const CommandSpec spec = run_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const std::string mode = flags->get_string("mode");
  check_mode(mode);

  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  const std::string checkpoint = flags->get_string("checkpoint");
  const Tensor input = read_input(flags->get_string("input"));
  const Tensor output = mode == "float"
                            ? run_float(config, checkpoint, input)
                            : run_quantized(config, config_path, checkpoint, mode, input);
  const std::string output_path = flags->get_string("output");
  save_safetensors(output_path, {{"output", output}});
  std::printf("wrote %s (output %s %s)\n", output_path.c_str(), shape_str(output.shape()).c_str(),
              dtype_name(output.dtype()));
  return 0;
}

}  // namespace qat::zoo::cli
