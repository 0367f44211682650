// Train-step throughput and peak memory of zoo::SmallCnn: forward, cross-entropy, backward and
// an SGD step on a fixed random batch, timed after warm-up. The PyTorch twin is
// bench/pytorch_train_step.py (same network, batch, shapes, optimizer and timing).
//   bazel run //bench:train_step_bench -- --threads 2 --batch 64 --steps 50
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/ops/loss.h"
#include "core/random.h"
#include "core/threads.h"
#include "nn/optim.h"
#include "zoo/flags.h"
#include "zoo/small_cnn.h"

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

int run(int argc, char** argv) {
  zoo::Flags flags({{"threads", {"2", "threads"}},
                    {"batch", {"64", "batch size"}},
                    {"steps", {"50", "timed steps"}},
                    {"warmup", {"5", "untimed warm-up steps"}}},
                   argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.usage("train_step_bench").c_str());
    return 0;
  }
  set_num_threads(static_cast<int>(flags.get_int("threads")));
  const int64_t batch = flags.get_int("batch"), steps = flags.get_int("steps");
  QAT_CHECK(batch >= 1 && steps >= 1, "--batch and --steps must be positive");
  manual_seed(0);
  zoo::SmallCnn model;
  nn::SGD optimizer(model.parameters(),
                    nn::SGDOptions(0.01).momentum(0.9).nesterov(true).weight_decay(5e-4));
  Tensor x = Tensor::empty({batch, 1, 28, 28});
  normal_(x, 0, 1);
  Tensor y = Tensor::empty({batch}, DType::kInt64);
  for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = i % 10;

  auto step = [&] {
    Tensor loss = ops::cross_entropy(model.forward(x), y);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  };
  for (int64_t i = 0; i < flags.get_int("warmup"); ++i) step();
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("qat small_cnn threads=%d batch=%lld images/s=%.1f peak_rss_mb=%.0f\n",
              get_num_threads(), static_cast<long long>(batch),
              static_cast<double>(batch * steps) / elapsed, peak_rss_mb());
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
