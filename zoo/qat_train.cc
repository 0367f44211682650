// `qat train` and the per-model programs (bazel run //zoo:resnet18 -- --config ...): the run a
// config's "train" section describes (zoo/trainer.h).
#include <cstdio>
#include <string>

#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/trainer.h"

namespace qat::zoo::cli {
namespace {

CommandSpec train_spec(const std::string& name) {
  return {
      name,
      "Trains the config's model on its \"data\": float epochs up to qat.start_epoch, then\n"
      "prepare + calibration and QAT epochs with the freeze schedule, evaluating on the test\n"
      "split after every epoch. At the end it writes <train.out_dir>/float.safetensors,\n"
      "qat.safetensors and the int8 export (the \"export\" section, else files in out_dir), and\n"
      "prints the accuracy table: float / fake-quant / int8 simulation / exported (ONNX Runtime\n"
      "or TNN read back). Checkpoints go to checkpoint.dir (default <out_dir>/checkpoints) at\n"
      "every epoch end, every checkpoint.every_steps steps and on Ctrl-C / SIGTERM; --resume\n"
      "continues the run bit for bit. metrics.jsonl in out_dir logs steps and epochs.",
      {
          {"config", "C.json", "config file with \"model\", \"data\" and \"train\" sections",
           std::nullopt},
          {"resume", "BOOL", "continue from the newest usable checkpoint", "false"},
      },
  };
}

int run_training(const std::string& command, const std::string& required_model, int argc,
                 const char* const* argv) {
  const std::optional<Flags> flags = parse_command_line(train_spec(command), argc, argv);
  if (!flags) return 0;
  const bool resume = parse_bool("resume", flags->get_string("resume"));
  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  if (!required_model.empty() && config.model.name != required_model) {
    throw Error(config_path + ": model.name is \"" + config.model.name + "\", but this is the " +
                required_model + " program (use //zoo:" + config.model.name + " or 'qat train')");
  }
  TrainOptions options;
  options.resume = resume;
  const TrainResult result = train(config, config_path, options);
  return result.completed ? 0 : 130;  // interrupted: the shell's code for SIGINT
}

}  // namespace

int train_main(int argc, const char* const* argv) {
  return run_training("train", /*required_model=*/"", argc, argv);
}

int train_model_main(const std::string& model, int argc, const char* const* argv) {
  return run_training(model, model, argc, argv);
}

}  // namespace qat::zoo::cli
