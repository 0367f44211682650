// Train-step throughput and peak memory of a zoo model: forward, cross-entropy, backward and an
// SGD step (momentum, nesterov, weight decay) on random batches (step i trains on batch
// i % --batches: fresh data each step, as in training, so observer ranges and fake-quant masks
// vary as they do there), timed after warm-up.
// The PyTorch twin is bench/pytorch_train_step.py (same network, batch, shapes, optimizer and
// timing); bench/run_zoo_bench.sh runs both over the model matrix. --qat <target> times the same
// step on graph::QuantizableModel(model, {N, C, H, W}, QConfig::preset(target)) (fused, fake
// quant on); its PyTorch twin is bench/pytorch_train_step.py --qat, the matrix
// bench/run_qat_bench.sh.
//   bazel run //bench:train_step_bench -- --model resnet18 --shape 3,224,224 --batch 16
//   bazel run //bench:train_step_bench -- --model resnet18 --shape 3,224,224 --qat tensorrt
//   bazel run //bench:train_step_bench -- --model resnet18 --shape 1,32,32 --small-input 1
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops/loss.h"
#include "core/random.h"
#include "core/threads.h"
#include "graph/quantizable_model.h"
#include "nn/optim.h"
#include "quant/qconfig.h"
#include "zoo/flags.h"
#include "zoo/registry.h"

namespace qat::bench {
namespace {

// Peak resident set size (VmHWM) in MiB, from /proc/self/status.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// "3,224,224" -> {3, 224, 224}
Shape parse_chw(const std::string& text) {
  Shape shape;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) shape.push_back(std::stoll(part));
  QAT_CHECK(shape.size() == 3, "--shape expects C,H,W, got '", text, "'");
  return shape;
}

int run(int argc, char** argv) {
  zoo::Flags flags({{"model", {"small_cnn", "zoo model name"}},
                    {"shape", {"1,28,28", "input C,H,W"}},
                    {"small-input", {"0", "1: the models' 28x28/32x32 stem"}},
                    {"classes", {"10", "number of classes"}},
                    {"threads", {"2", "threads"}},
                    {"batch", {"64", "batch size"}},
                    {"steps", {"20", "timed steps"}},
                    {"warmup", {"3", "untimed warm-up steps"}},
                    {"repeats", {"1", "time --steps steps this often; report the fastest"}},
                    {"batches", {"4", "distinct random batches, used in turn"}},
                    {"qat",
                     {"",
                      "target (tensorrt, tnn, fbgemm, qnnpack, ...): time QAT; "
                      "empty: the float model"}}},
                   argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.usage("train_step_bench").c_str());
    return 0;
  }
  set_num_threads(static_cast<int>(flags.get_int("threads")));
  const int64_t batch = flags.get_int("batch"), steps = flags.get_int("steps");
  const int64_t repeats = flags.get_int("repeats");
  QAT_CHECK(batch >= 1 && steps >= 1 && repeats >= 1,
            "--batch, --steps and --repeats must be positive");
  const Shape chw = parse_chw(flags.get_string("shape"));

  zoo::ModelConfig config;
  config.name = flags.get_string("model");
  config.num_classes = flags.get_int("classes");
  if (config.name != "small_cnn") {
    config.in_channels = chw[0];
    config.small_input = flags.get_int("small-input") != 0;
  }
  // GoogLeNet without aux heads on both sides: its aux losses would make the comparison
  // depend on how each side weights them.
  if (config.name == "googlenet") config.aux_logits = false;
  manual_seed(0);
  std::shared_ptr<nn::Module> model = zoo::create_model(config);
  const std::string target = flags.get_string("qat");
  if (!target.empty()) {
    // The QAT modules hold the float modules, so the float parameters are the ones to train
    // (the presets have no learnable scales).
    model = std::make_shared<graph::QuantizableModel>(model, Shape{batch, chw[0], chw[1], chw[2]},
                                                      quant::QConfig::preset(target));
  }
  model->train();
  nn::SGD optimizer(model->parameters(),
                    nn::SGDOptions(0.01).momentum(0.9).nesterov(true).weight_decay(5e-4));
  const int64_t num_batches = flags.get_int("batches");
  QAT_CHECK(num_batches >= 1, "--batches must be positive");
  std::vector<Tensor> inputs;
  for (int64_t b = 0; b < num_batches; ++b) {
    inputs.push_back(Tensor::empty({batch, chw[0], chw[1], chw[2]}));
    normal_(inputs.back(), 0, 1);
  }
  Tensor y = Tensor::empty({batch}, DType::kInt64);
  for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = i % flags.get_int("classes");

  int64_t step_index = 0;
  auto step = [&] {
    const Tensor& x = inputs[step_index++ % num_batches];
    Tensor loss = ops::cross_entropy(model->forward(x), y);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  };
  for (int64_t i = 0; i < flags.get_int("warmup"); ++i) step();
  // The fastest repeat is the one the other processes on a shared machine disturbed least;
  // process CPU time (all threads) says how much of the wall time was ours.
  double elapsed = 1e300, cpu = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t start_cpu = std::clock();
    for (int64_t i = 0; i < steps; ++i) step();
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (wall < elapsed) {
      elapsed = wall;
      cpu = static_cast<double>(std::clock() - start_cpu) / CLOCKS_PER_SEC;
    }
  }
  std::printf(
      "qat %s threads=%d batch=%lld shape=%s images/s=%.2f peak_rss_mb=%.0f cpu_s/step=%.3f%s%s\n",
      config.name.c_str(), get_num_threads(), static_cast<long long>(batch),
      flags.get_string("shape").c_str(), static_cast<double>(batch * steps) / elapsed,
      peak_rss_mb(), cpu / static_cast<double>(steps),
      target.empty() ? "" : " target=", target.c_str());
  return 0;
}

}  // namespace
}  // namespace qat::bench

int main(int argc, char** argv) {
  try {
    return qat::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_step_bench: error: %s\n", e.what());
    return 1;
  }
}
