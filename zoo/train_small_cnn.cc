// Trains zoo::SmallCnn on Fashion-MNIST (Debian's dataset-fashion-mnist) with SGD + nesterov,
// a linear warm-up then cosine decay per step, and reports test accuracy after every epoch.
//   bazel run //zoo:train_small_cnn -- --epochs 1 --threads 2
#include <chrono>
#include <cstdio>
#include <memory>

#include "core/autograd.h"
#include "core/ops/loss.h"
#include "core/random.h"
#include "core/serialize.h"
#include "core/threads.h"
#include "nn/data/data_loader.h"
#include "nn/data/mnist.h"
#include "nn/data/transforms.h"
#include "nn/lr_scheduler.h"
#include "nn/optim.h"
#include "zoo/flags.h"
#include "zoo/small_cnn.h"

namespace qat::zoo {
namespace {

using Clock = std::chrono::steady_clock;

// Fashion-MNIST training-set pixel mean and standard deviation (of [0, 1] values).
constexpr float kMean = 0.2860f, kStd = 0.3530f;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string format_duration(double seconds) {
  int total = static_cast<int>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof text, "%d:%02d", total / 60, total % 60);
  return text;
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const float* p = logits.data<float>();  // [N, K]
  const int64_t* y = labels.data<int64_t>();
  int64_t n = logits.size(0), k = logits.size(1), correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (p[i * k + j] > p[i * k + best]) best = j;
    correct += best == y[i];
  }
  return correct;
}

double evaluate(SmallCnn& model, nn::data::DataLoader& loader) {
  NoGradGuard no_grad;
  model.eval();
  loader.start_epoch(0);
  int64_t correct = 0, seen = 0;
  while (auto batch = loader.next()) {
    correct += count_correct(model.forward(batch->images), batch->labels);
    seen += batch->labels.numel();
  }
  model.train();
  return 100.0 * static_cast<double>(correct) / static_cast<double>(seen);
}

int run(int argc, char** argv) {
  Flags flags({{"data-dir", {"/usr/share/datasets/fashion-mnist", "IDX .gz folder"}},
               {"epochs", {"1", "training epochs"}},
               {"batch-size", {"64", "training batch size"}},
               {"lr", {"0.1", "peak learning rate (after warm-up)"}},
               {"warmup", {"0.3", "fraction of all steps spent warming up linearly"}},
               {"weight-decay", {"5e-4", "SGD weight decay"}},
               {"threads", {"0", "threads (0 = all cores)"}},
               {"seed", {"0", "seed for initialization and shuffling"}},
               {"log-every", {"100", "steps between progress lines"}},
               {"save", {"", "write the trained state_dict (safetensors) here; empty: don't"}}},
              argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.usage("train_small_cnn").c_str());
    return 0;
  }
  if (flags.get_int("threads") > 0) set_num_threads(static_cast<int>(flags.get_int("threads")));
  const int64_t epochs = flags.get_int("epochs"), batch_size = flags.get_int("batch-size");
  QAT_CHECK(epochs >= 1, "--epochs must be at least 1, got ", epochs);
  QAT_CHECK(batch_size >= 1, "--batch-size must be at least 1, got ", batch_size);
  manual_seed(static_cast<uint64_t>(flags.get_int("seed")));

  const std::string root = flags.get_string("data-dir");
  auto train_set = std::make_shared<nn::data::FashionMnist>(root, /*train=*/true);
  auto test_set = std::make_shared<nn::data::FashionMnist>(root, /*train=*/false);
  std::vector<nn::data::Transform> normalize{nn::data::Normalize({kMean}, {kStd})};
  nn::data::DataLoader train_loader(train_set, nn::data::DataLoaderOptions()
                                                   .batch_size(batch_size)
                                                   .shuffle(true)
                                                   .drop_last(true)
                                                   .seed(flags.get_int("seed"))
                                                   .transforms(normalize));
  nn::data::DataLoader test_loader(
      test_set, nn::data::DataLoaderOptions().batch_size(500).transforms(normalize));

  auto model = std::make_shared<SmallCnn>();
  nn::SGD optimizer(model->parameters(), nn::SGDOptions(flags.get_double("lr"))
                                             .momentum(0.9)
                                             .nesterov(true)
                                             .weight_decay(flags.get_double("weight-decay")));
  const int64_t steps_per_epoch = train_loader.num_batches(), total_steps = epochs * steps_per_epoch;
  const int64_t warmup_steps =
      std::max<int64_t>(1, static_cast<int64_t>(flags.get_double("warmup") * total_steps));
  auto warmup = std::make_shared<nn::LinearLR>(optimizer, 0.04, 1.0, warmup_steps);
  auto cosine = std::make_shared<nn::CosineAnnealingLR>(
      optimizer, std::max<int64_t>(1, total_steps - warmup_steps));
  nn::SequentialLR schedule(optimizer, {warmup, cosine}, {warmup_steps});

  std::printf("train_small_cnn: %zu train / %zu test images, %lld epochs x %lld steps, batch %lld, "
              "%d threads\n",
              train_set->size(), test_set->size(), static_cast<long long>(epochs),
              static_cast<long long>(steps_per_epoch), static_cast<long long>(batch_size),
              get_num_threads());
  const int64_t log_every = std::max<int64_t>(1, flags.get_int("log-every"));
  const Clock::time_point run_start = Clock::now();
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    train_loader.start_epoch(epoch);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, window_images = 0;
    Clock::time_point window_start = Clock::now();
    while (auto batch = train_loader.next()) {
      Tensor logits = model->forward(batch->images);
      Tensor loss = ops::cross_entropy(logits, batch->labels);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      schedule.step();
      ++step;
      loss_sum += loss.item() * static_cast<double>(batch->labels.numel());
      correct += count_correct(logits, batch->labels);
      seen += batch->labels.numel();
      window_images += batch->labels.numel();
      if (step % log_every == 0 || step == total_steps) {
        double images_per_s = static_cast<double>(window_images) / seconds_since(window_start);
        double eta = static_cast<double>(total_steps - step) * static_cast<double>(batch_size) /
                     images_per_s;
        std::printf("epoch %lld/%lld step %lld/%lld loss %.4f acc %.2f%% lr %.4f %.0f img/s "
                    "ETA %s\n",
                    static_cast<long long>(epoch + 1), static_cast<long long>(epochs),
                    static_cast<long long>(step), static_cast<long long>(total_steps),
                    loss_sum / static_cast<double>(seen),
                    100.0 * static_cast<double>(correct) / static_cast<double>(seen),
                    schedule.get_last_lr()[0], images_per_s, format_duration(eta).c_str());
        std::fflush(stdout);
        window_images = 0;
        window_start = Clock::now();
      }
    }
    std::printf("epoch %lld/%lld done: train loss %.4f, train acc %.2f%%, test acc %.2f%%, "
                "elapsed %s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(epochs),
                loss_sum / static_cast<double>(seen),
                100.0 * static_cast<double>(correct) / static_cast<double>(seen),
                evaluate(*model, test_loader), format_duration(seconds_since(run_start)).c_str());
    std::fflush(stdout);
  }
  if (const std::string path = flags.get_string("save"); !path.empty()) {
    save_safetensors(path, model->state_dict());
    std::printf("saved %s\n", path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace qat::zoo

int main(int argc, char** argv) {
  try {
    return qat::zoo::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_small_cnn: error: %s\n", e.what());
    return 1;
  }
}
