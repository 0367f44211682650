// `qat inspect`: the prepared QAT graph of a config, and the quantizers of a QAT checkpoint.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/qat_pipeline.h"
#include "zoo/registry.h"

namespace qat::zoo::cli {
namespace {

CommandSpec inspect_spec() {
  return {
      "inspect",
      "Prepares the config's model for QAT as its \"qat\" section says (target, qconfig,\n"
      "black_list) and prints the graph, one node per line with its quantizers' schemes. With\n"
      "--checkpoint it loads that QAT checkpoint (from 'qat calibrate' or training) and lists\n"
      "every quantizer: its state_dict name, the node whose value it quantizes, its role\n"
      "(weight or output of a QAT layer, or activation: a quantizer node), scheme and scale\n"
      "(per channel: min / max / count, or every scale with --all-scales true).",
      {
          {"config", "C.json", "config file with \"model\" (and model.input_shape) and \"qat\"",
           std::nullopt},
          {"checkpoint", "Q.safetensors", "QAT checkpoint whose quantizers to list", ""},
          {"all-scales", "BOOL", "print every per-channel scale", "false"},
      },
  };
}

// "%.6g" of one float.
std::string number(float value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.6g", static_cast<double>(value));
  return text;
}

// "0.0123" per tensor; "min 0.001 max 0.02 (64 channels)" or every value per channel; "-" when
// the quantizer never observed data.
std::string describe_scale(const quant::FakeQuantize& fq, bool all) {
  const auto& observer = *fq.activation_post_process();
  if (observer.min_val().numel() == 0) return "- (never observed)";
  if (observer.min_val().numel() == 1 &&
      !(observer.min_val().data<float>()[0] <= observer.max_val().data<float>()[0]))
    return "- (never observed)";
  const Tensor& scale = fq.scale();
  const float* s = scale.data<float>();
  const int64_t n = scale.numel();
  if (n == 1) return number(s[0]);
  if (all) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += (i == 0 ? "" : " ") + number(s[i]);
    return out;
  }
  const auto [lo, hi] = std::minmax_element(s, s + n);
  return "min " + number(*lo) + " max " + number(*hi) + " (" + std::to_string(n) + " channels)";
}

void print_quantizers(const graph::QuantizableModel& qm, bool all_scales) {
  const std::vector<Quantizer> all = quantizers(qm);
  std::vector<std::vector<std::string>> rows = {{"quantizer", "node", "role", "scheme", "scale"}};
  for (const Quantizer& q : all) {
    rows.push_back({q.name, q.node, q.role, q.fake_quant->scheme(),
                    describe_scale(*q.fake_quant, all_scales)});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
  std::printf("\n%zu quantizers\n", all.size());
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

int inspect_main(int argc, const char* const* argv) {
  const CommandSpec spec = inspect_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const bool all_scales = parse_bool("all-scales", flags->get_string("all-scales"));
  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  const std::shared_ptr<graph::QuantizableModel> qm =
      prepare_model(create_model(config.model), config, config_path);
  const std::string checkpoint = flags->get_string("checkpoint");
  if (!checkpoint.empty()) load_qat_checkpoint(*qm, checkpoint);

  std::printf("%s prepared for %s, input %s, black_list [%s]\n\n", config.model.name.c_str(),
              quant::target_name(config.qat->qconfig.target),
              shape_str(config.model.input_shape).c_str(), join(config.qat->black_list).c_str());
  std::fputs(qm->graph().to_string().c_str(), stdout);
  if (!checkpoint.empty()) {
    std::printf("\nquantizers of %s:\n\n", checkpoint.c_str());
    print_quantizers(*qm, all_scales);
  }
  return 0;
}

}  // namespace qat::zoo::cli
