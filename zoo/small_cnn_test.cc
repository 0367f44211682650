#include "zoo/small_cnn.h"

#include <gtest/gtest.h>

#include "core/ops/loss.h"
#include "core/random.h"
#include "nn/data/data_loader.h"
#include "nn/data/dataset.h"
#include "nn/optim.h"

namespace qat::zoo {
namespace {

TEST(SmallCnn, StateDictKeysAndShapes) {
  SmallCnn model;
  nn::StateDict sd = model.state_dict();
  std::vector<std::string> keys;
  for (const auto& [name, tensor] : sd) keys.push_back(name);
  std::vector<std::string> expected;
  for (int stage : {0, 4, 8}) {
    std::string conv = "features." + std::to_string(stage), bn = "features." + std::to_string(stage + 1);
    expected.push_back(conv + ".weight");
    for (const char* k : {".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked"})
      expected.push_back(bn + k);
  }
  expected.push_back("fc.weight");
  expected.push_back("fc.bias");
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(sd.front().second.shape(), (Shape{32, 1, 3, 3}));
  EXPECT_EQ(sd[sd.size() - 2].second.shape(), (Shape{10, 1152}));
}

TEST(SmallCnn, ForwardShapeAndInputCheck) {
  SmallCnn model;
  EXPECT_EQ(model.forward(Tensor::zeros({2, 1, 28, 28})).shape(), (Shape{2, 10}));
  EXPECT_THROW(model.forward(Tensor::zeros({2, 1, 32, 32})), Error);
}

TEST(SmallCnn, SgdStepsReduceLossOnAFixedBatch) {
  manual_seed(3);
  SmallCnn model;
  auto data = std::make_shared<nn::data::SyntheticDataset>(64, Shape{1, 28, 28}, 10, 7);
  nn::data::DataLoader loader(data, nn::data::DataLoaderOptions().batch_size(64));
  loader.start_epoch(0);
  nn::data::Batch batch = *loader.next();
  nn::SGD optimizer(model.parameters(), nn::SGDOptions(0.05).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    Tensor loss = ops::cross_entropy(model.forward(batch.images), batch.labels);
    if (step == 0) first = loss.item();
    last = loss.item();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  EXPECT_LT(last, 0.5 * first) << "loss went from " << first << " to " << last;
}

}  // namespace
}  // namespace qat::zoo
