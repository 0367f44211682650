// `qat export`: a QAT checkpoint -> graph::convert() -> the int8 model of the config's target
// (tensorrt: ONNX Q/DQ; tnn: TNN .tnnproto / .tnnmodel); with --float, a float checkpoint -> the
// float model as ONNX and / or TNN.
#include <onnx/onnx_pb.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exporters/onnx.h"
#include "exporters/tnn_export.h"
#include "exporters/tnn_net.h"
#include "exporters/tnn_reader.h"
#include "graph/convert.h"
#include "graph/int_model.h"
#include "graph/trace.h"
#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"

namespace qat::zoo::cli {
namespace {

CommandSpec export_spec() {
  return {
      "export",
      "Writes the deployable model of a checkpoint. By default the checkpoint is a QAT checkpoint\n"
      "('qat calibrate' or training): the model is prepared as the config's \"qat\" section\n"
      "says, converted to the integer model of qat.target and written as\n"
      "  tensorrt:  ONNX (opset 13) with QuantizeLinear / DequantizeLinear pairs (--onnx);\n"
      "  fbgemm, qnnpack, qnnpack_perchannel: ONNX Q/DQ as torch.onnx writes them (--onnx);\n"
      "  tnn:       TNN int8 <prefix>.tnnproto and <prefix>.tnnmodel (--tnn).\n"
      "With --float true the checkpoint is a float one, and the float model (eval mode, BN on\n"
      "its running statistics) is written as ONNX and / or TNN float. Without --onnx, --tnn and\n"
      "--float the config's \"export\" section ({\"onnx\": ..., \"tnn\": ..., \"float\": ...})\n"
      "says what to write. Files are written atomically; missing directories are created.\n"
      "'qat verify' checks the files against the in-process model.",
      {
          {"config", "C.json", "config file with \"model\" (and model.input_shape) and \"qat\"",
           std::nullopt},
          {"checkpoint", "W.safetensors", "QAT checkpoint (float checkpoint with --float true)",
           std::nullopt},
          {"onnx", "OUT.onnx", "the ONNX file to write; default: export.onnx", ""},
          {"tnn", "OUT/PREFIX", "the TNN files to write; default: export.tnn", ""},
          {"float", "BOOL", "export the float model; default: export.float, else false", ""},
      },
  };
}

// Creates the directory `path` is written into, if it is missing.
void make_parent_directory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code error;
  std::filesystem::create_directories(parent, error);
  if (error) throw Error("cannot create the directory " + parent.string() + ": " + error.message());
}

std::string bytes_text(const std::string& path) {
  return std::to_string(std::filesystem::file_size(path)) + " bytes";
}

// "wrote m.onnx (87 nodes: 24 QuantizeLinear, 45 DequantizeLinear, 18 other; 10234 bytes)".
void print_onnx(const std::string& path, std::FILE* report) {
  onnx::ModelProto proto;
  if (!proto.ParseFromString(exporters::read_file_bytes(path)))
    throw Error(path + ": the file just written is no ONNX model");
  std::map<std::string, int> counts;
  for (const onnx::NodeProto& node : proto.graph().node()) ++counts[node.op_type()];
  const int nodes = proto.graph().node_size();
  const int q = counts["QuantizeLinear"], dq = counts["DequantizeLinear"];
  std::fprintf(report,
               "wrote %s (%d nodes: %d QuantizeLinear, %d DequantizeLinear, %d other; %s)\n",
               path.c_str(), nodes, q, dq, nodes - q - dq, bytes_text(path).c_str());
}

// "wrote p.tnnproto (31 layers, 25 int8; ... bytes) and p.tnnmodel (52 resources; ... bytes)",
// read back with the TNN reader.
void print_tnn(const std::string& prefix, std::FILE* report) {
  const exporters::TnnNet net = exporters::read_tnn(prefix);
  int int8 = 0;
  for (const exporters::TnnLayer& layer : net.layers)
    int8 += layer.type.rfind("Quantized", 0) == 0 ? 1 : 0;
  std::fprintf(report,
               "wrote %s.tnnproto (%zu layers, %d int8; %s) and %s.tnnmodel (%zu resources; %s)\n",
               prefix.c_str(), net.layers.size(), int8, bytes_text(prefix + ".tnnproto").c_str(),
               prefix.c_str(), net.resources.size(), bytes_text(prefix + ".tnnmodel").c_str());
}

void export_int8(const Config& config, const std::string& config_path,
                 const std::string& checkpoint, const ExportFiles& files) {
  check_int8_targets(files, config, config_path);
  const std::shared_ptr<graph::QuantizableModel> qm =
      load_qat_model(config, config_path, checkpoint);
  const graph::IntModel int_model = graph::convert(*qm);
  int layers = 0, quantizers = 0;
  for (const graph::IntNode& node : int_model.nodes) {
    layers += node.layer ? 1 : 0;
    quantizers += node.op == "quantize" ? 1 : 0;
  }
  std::printf("exporting %s for %s: int8 model of %s (%d conv / linear layers, %d quantizers)\n",
              config.model.name.c_str(), quant::target_name(int_model.target), checkpoint.c_str(),
              layers, quantizers);
  write_int8_files(int_model, files, stdout);
}

void export_float(const Config& config, const std::string& config_path,
                  const std::string& checkpoint, const ExportFiles& files) {
  check_float_checkpoint(checkpoint);
  if (config.model.input_shape.empty()) {
    throw Error(config_path +
                ": model.input_shape is needed to trace the model for export, e.g. "
                "[1, 1, 28, 28]");
  }
  std::vector<std::string> skipped;
  const std::shared_ptr<nn::Module> model = load_float_model(config.model, checkpoint, &skipped);
  if (!skipped.empty()) {
    std::fprintf(stderr, "qat: note: skipped %zu aux-head tensors of %s\n", skipped.size(),
                 checkpoint.c_str());
  }
  std::printf("exporting %s: float model of %s (eval mode), input %s\n", config.model.name.c_str(),
              checkpoint.c_str(), shape_str(config.model.input_shape).c_str());
  if (!files.onnx.empty()) {
    make_parent_directory(files.onnx);
    exporters::export_onnx(*model, config.model.input_shape, files.onnx);
    print_onnx(files.onnx, stdout);
  }
  if (!files.tnn.empty()) {
    make_parent_directory(files.tnn);
    exporters::export_tnn_float(graph::trace(*model, config.model.input_shape), files.tnn);
    print_tnn(files.tnn, stdout);
  }
}

}  // namespace

bool parse_bool(const std::string& flag, const std::string& value) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  throw UsageError("--" + flag + " must be true or false, got '" + value + "'");
}

ExportFlags export_flags(const Flags& flags) {
  ExportFlags out;
  out.onnx = flags.get_string("onnx");
  out.tnn = flags.get_string("tnn");
  const std::string float_flag = flags.get_string("float");
  if (!float_flag.empty()) out.float_model = parse_bool("float", float_flag);
  return out;
}

ExportFiles export_files(const ExportFlags& flags, const Config& config,
                         const std::string& command) {
  const ExportConfig section = config.exports.value_or(ExportConfig());
  ExportFiles files;
  files.onnx = flags.onnx.empty() ? section.onnx : flags.onnx;
  files.tnn = flags.tnn.empty() ? section.tnn : flags.tnn;
  files.float_model = flags.float_model.value_or(section.float_model);
  if (files.onnx.empty() && files.tnn.empty()) {
    throw UsageError(
        "no model file: give --onnx and / or --tnn, or set \"export\": {\"onnx\": ..., \"tnn\": "
        "...} in the config (see 'qat " +
        command + " --help')");
  }
  return files;
}

void check_int8_targets(const ExportFiles& files, const Config& config,
                        const std::string& config_path) {
  if (!config.qat) {
    throw Error(config_path +
                ": no \"qat\" section: the int8 model needs the target and qconfig the checkpoint "
                "was calibrated with (for the float model, pass --float true)");
  }
  const quant::Target target = config.qat->qconfig.target;
  const std::string name = quant::target_name(target);
  if (!files.tnn.empty() && target != quant::Target::kTNN) {
    throw Error("a TNN int8 model (--tnn " + files.tnn + ") needs qat.target \"tnn\"; " +
                config_path + " has \"" + name +
                "\", whose int8 model is the ONNX Q/DQ graph (--onnx); for a float TNN model, "
                "pass --float true");
  }
  if (!files.onnx.empty() && target == quant::Target::kTNN) {
    throw Error("an ONNX Q/DQ model (--onnx " + files.onnx + ") needs qat.target \"tensorrt\" or "
                "a PyTorch preset; " +
                config_path + " has \"" + name +
                "\", whose int8 model is TNN's (--tnn); for a float ONNX model, pass --float true");
  }
}

void write_int8_files(const graph::IntModel& int_model, const ExportFiles& files,
                      std::FILE* report) {
  if (!files.onnx.empty()) {
    make_parent_directory(files.onnx);
    exporters::export_onnx(int_model, files.onnx);
    print_onnx(files.onnx, report);
  }
  if (!files.tnn.empty()) {
    make_parent_directory(files.tnn);
    exporters::export_tnn(int_model, files.tnn);
    print_tnn(files.tnn, report);
  }
}

void check_float_checkpoint(const std::string& checkpoint) {
  if (const std::optional<std::string> target = qat_checkpoint_target(checkpoint)) {
    throw Error(checkpoint + ": a QAT checkpoint (target " + *target +
                "), but --float true takes a float checkpoint (drop --float for the int8 model)");
  }
}

int export_main(int argc, const char* const* argv) {
  const CommandSpec spec = export_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const ExportFlags file_flags = export_flags(*flags);
  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  const ExportFiles files = export_files(file_flags, config, "export");
  const std::string checkpoint = flags->get_string("checkpoint");
  if (files.float_model) {
    export_float(config, config_path, checkpoint, files);
  } else {
    export_int8(config, config_path, checkpoint, files);
  }
  return 0;
}

}  // namespace qat::zoo::cli
