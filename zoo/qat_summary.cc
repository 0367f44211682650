// `qat summary`: the module tree of a configured model with parameter counts and the output
// shape of every module call.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "zoo/config.h"
#include "zoo/qat_commands.h"
#include "zoo/registry.h"

namespace qat::zoo::cli {
namespace {

CommandSpec summary_spec() {
  return {
      "summary",
      "Prints the module tree of the config's model: qualified names, types, parameter counts\n"
      "(each module's own and its descendants') and the output shape of every call of each\n"
      "module in one forward pass on zeros in eval mode (\"-\": not called, as GoogLeNet's aux\n"
      "heads in eval).",
      {
          {"config", "C.json", "config file; its \"model\" section picks the model", std::nullopt},
          {"input-shape", "N,C,H,W", "input of the forward pass; default: model.input_shape", ""},
      },
  };
}

// "1,3,224,224" -> {1, 3, 224, 224}.
Shape parse_input_shape(const std::string& text) {
  Shape shape;
  bool valid = true;
  std::istringstream parts(text);
  for (std::string part; valid && std::getline(parts, part, ',');) {
    char* end = nullptr;
    const long long size = std::strtoll(part.c_str(), &end, 10);
    valid = !part.empty() && *end == '\0' && size >= 1;
    shape.push_back(size);
  }
  if (!valid || shape.size() != 4) {
    throw UsageError("--input-shape expects N,C,H,W (4 positive integers), got '" + text + "'");
  }
  return shape;
}

// Records the output shape of every module call.
class OutputShapes : public nn::ForwardHook {
 public:
  void after_forward(nn::Module& module, const Tensor&, const Tensor& output) override {
    calls_[&module].push_back(output.shape());
  }
  // "[1, 64, 8, 8]"; calls separated by "; "; "-" for a module that was not called.
  std::string of(const nn::Module& module) const {
    const auto it = calls_.find(&module);
    if (it == calls_.end()) return "-";
    std::string text;
    for (const Shape& shape : it->second) text += (text.empty() ? "" : "; ") + shape_str(shape);
    return text;
  }

 private:
  std::map<const nn::Module*, std::vector<Shape>> calls_;
};

// 11689512 -> "11,689,512".
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

int64_t parameter_count(const nn::Module& module) {
  int64_t count = 0;
  for (const Tensor& p : module.parameters()) count += p.numel();
  return count;
}

struct Row {
  std::string module, type, params, output;
};

// Columns padded to their widest cell; params right-aligned.
void print_rows(const std::vector<Row>& rows) {
  size_t module_width = 0, type_width = 0, params_width = 0;
  for (const Row& row : rows) {
    module_width = std::max(module_width, row.module.size());
    type_width = std::max(type_width, row.type.size());
    params_width = std::max(params_width, row.params.size());
  }
  for (const Row& row : rows) {
    std::printf("%-*s  %-*s  %*s  %s\n", static_cast<int>(module_width), row.module.c_str(),
                static_cast<int>(type_width), row.type.c_str(), static_cast<int>(params_width),
                row.params.c_str(), row.output.c_str());
  }
}

void print_summary(const std::string& model_name, nn::Module& model, const Shape& input_shape) {
  OutputShapes shapes;
  model.eval();
  {
    NoGradGuard no_grad;
    nn::ForwardHookGuard guard(shapes);
    model.forward(Tensor::zeros(input_shape));
  }
  std::printf("%s (%s), input %s, eval mode\n\n", model_name.c_str(), model.type_name().c_str(),
              shape_str(input_shape).c_str());
  std::vector<Row> rows = {{"module", "type", "params", "output"}};
  for (const auto& [name, module] : model.named_modules()) {
    const size_t depth = name.empty() ? 0 : 1 + std::count(name.begin(), name.end(), '.');
    rows.push_back({std::string(2 * depth, ' ') + (name.empty() ? "(root)" : name),
                    module->type_name(), with_commas(parameter_count(*module)),
                    shapes.of(*module)});
  }
  print_rows(rows);
  std::printf("\ntotal: %s parameters\n", with_commas(parameter_count(model)).c_str());
}

}  // namespace

int summary_main(int argc, const char* const* argv) {
  const CommandSpec spec = summary_spec();
  const std::optional<Flags> flags = parse_command_line(spec, argc, argv);
  if (!flags) return 0;
  const std::string shape_flag = flags->get_string("input-shape");
  const Shape flag_shape = shape_flag.empty() ? Shape() : parse_input_shape(shape_flag);
  const std::string config_path = flags->get_string("config");
  const Config config = load_config(config_path);
  const Shape input_shape = flag_shape.empty() ? config.model.input_shape : flag_shape;
  if (input_shape.empty()) {
    throw Error("no input shape: set model.input_shape in " + config_path +
                " or pass --input-shape N,C,H,W");
  }
  const std::shared_ptr<nn::Module> model = create_model(config.model);
  print_summary(config.model.name, *model, input_shape);
  return 0;
}

}  // namespace qat::zoo::cli
