// nn state_dicts through safetensors files: the checkpoint path every later layer relies on.
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "core/random.h"
#include "core/serialize.h"
#include "nn/optim.h"
#include "tests/testing/compare.h"
#include "zoo/small_cnn.h"

namespace qat {
namespace {

std::string temp_path(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST(StateDictIo, RoundTripRestoresEveryTensorInPlace) {
  manual_seed(1);
  zoo::SmallCnn trained;
  // Make the BN buffers non-default so the round trip covers them too.
  trained.forward(Tensor::ones({4, 1, 28, 28}));
  std::string path = temp_path("small_cnn.safetensors");
  save_safetensors(path, trained.state_dict());

  manual_seed(2);
  zoo::SmallCnn fresh;
  Tensor conv_weight_handle = fresh.state_dict().front().second;
  fresh.load_state_dict(load_safetensors(path));
  nn::StateDict expected = trained.state_dict(), actual = fresh.state_dict();
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(expected[i].first, actual[i].first);
    EXPECT_EQ(expected[i].second.dtype(), actual[i].second.dtype()) << expected[i].first;
    EXPECT_TRUE(testing::all_close(actual[i].second, expected[i].second, 0, 0)) << expected[i].first;
  }
  // Loaded in place: a handle taken before the load sees the new values.
  EXPECT_TRUE(conv_weight_handle.shares_storage(fresh.state_dict().front().second));
  EXPECT_TRUE(testing::all_close(conv_weight_handle, expected.front().second, 0, 0));
  EXPECT_EQ(fresh.state_dict()[5].first, "features.1.num_batches_tracked");
  EXPECT_EQ(fresh.state_dict()[5].second.item(), 1.0);
}

TEST(StateDictIo, StrictLoadNamesTheOffendingKey) {
  zoo::SmallCnn model;
  nn::StateDict sd = model.state_dict();
  std::string path = temp_path("bad.safetensors");

  nn::StateDict missing(sd.begin() + 1, sd.end());
  save_safetensors(path, missing);
  try {
    model.load_state_dict(load_safetensors(path));
    FAIL() << "expected a missing-key error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("features.0.weight"), std::string::npos) << e.what();
  }

  nn::StateDict wrong_shape = sd;
  wrong_shape.back().second = Tensor::zeros({11});
  save_safetensors(path, wrong_shape);
  try {
    model.load_state_dict(load_safetensors(path));
    FAIL() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc.bias"), std::string::npos) << e.what();
  }

  nn::StateDict extra = sd;
  extra.emplace_back("aux.weight", Tensor::zeros({1}));
  save_safetensors(path, extra);
  EXPECT_THROW(model.load_state_dict(load_safetensors(path)), Error);
  nn::LoadResult result = model.load_state_dict(load_safetensors(path), /*strict=*/false);
  EXPECT_EQ(result.unexpected_keys, std::vector<std::string>{"aux.weight"});
  EXPECT_TRUE(result.missing_keys.empty());
}

TEST(StateDictIo, OptimizerStateRoundTrips) {
  zoo::SmallCnn model;
  nn::SGD optimizer(model.parameters(), nn::SGDOptions(0.1).momentum(0.9));
  for (Tensor& p : model.parameters()) p.set_grad(Tensor::ones(p.shape()));
  optimizer.step();
  std::string path = temp_path("optim.safetensors");
  save_safetensors(path, optimizer.state_dict());

  nn::SGD restored(model.parameters(), nn::SGDOptions(0.5).momentum(0.9));
  restored.load_state_dict(load_safetensors(path));
  nn::NamedTensors a = optimizer.state_dict(), b = restored.state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(testing::all_close(b[i].second, a[i].second, 0, 0)) << a[i].first;
  }
}

}  // namespace
}  // namespace qat
