// Importing a torchvision checkpoint: the user path of DESIGN.md ("torchvision weights saved as
// safetensors"). tests/data/shufflenet_v2_x0_5_torchvision.safetensors is a torchvision
// shufflenet_v2_x0_5(num_classes=10) -- torchvision's own random init plus BN statistics from
// three training-mode batches -- saved with torch.save and converted by
// tools/torchvision_to_safetensors.py; ..._io.safetensors holds torchvision's eval-mode output
// on a fixed input. Both come from tests/golden/gen_zoo_fixtures.py.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/serialize.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "tests/testing/golden.h"
#include "zoo/shufflenet_v2.h"

namespace qat {
namespace {

constexpr char kCheckpoint[] = "shufflenet_v2_x0_5_torchvision.safetensors";
constexpr char kIo[] = "shufflenet_v2_x0_5_torchvision_io.safetensors";

std::shared_ptr<zoo::ShuffleNetV2> make_model() {
  return zoo::shufflenet_v2_x0_5(zoo::ShuffleNetV2Options().num_classes(10));
}

TEST(CheckpointImport, HoldsExactlyTheTorchvisionKeysInOrder) {
  const NamedTensors sd = testing::load_fixture(kCheckpoint);
  // tests/data/shufflenet_v2_x0_5_keys.txt: "<key> <dtype> <shape>" for the 1000-class model;
  // the keys, their order and dtypes are the same with 10 classes.
  const std::string keys_path = std::string(testing::kGoldenDir) + "shufflenet_v2_x0_5_keys.txt";
  std::ifstream keys(keys_path);
  ASSERT_TRUE(keys) << "cannot open " << keys_path;
  size_t i = 0;
  for (std::string key, dtype, shape; keys >> key >> dtype >> shape; ++i) {
    ASSERT_LT(i, sd.size()) << "the checkpoint lacks '" << key << "' and what follows";
    EXPECT_EQ(sd[i].first, key) << "entry " << i;
    EXPECT_EQ(std::string(sd[i].second.dtype() == DType::kInt64 ? "I64" : "F32"), dtype)
        << sd[i].first << " is " << dtype_name(sd[i].second.dtype());
  }
  EXPECT_EQ(i, sd.size());

  const SafetensorsMetadata meta =
      load_safetensors_metadata(std::string(testing::kGoldenDir) + kCheckpoint);
  EXPECT_EQ(meta.at("converter"), "tools/torchvision_to_safetensors.py");
}

TEST(CheckpointImport, LoadsStrictlyInPlace) {
  const NamedTensors sd = testing::load_fixture(kCheckpoint);
  auto model = make_model();
  const nn::StateDict before = model->state_dict();
  const nn::LoadResult result = model->load_state_dict(sd);  // strict
  EXPECT_TRUE(result.missing_keys.empty());
  EXPECT_TRUE(result.unexpected_keys.empty());
  const nn::StateDict after = model->state_dict();
  ASSERT_EQ(after.size(), sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_TRUE(after[i].second.shares_storage(before[i].second))
        << after[i].first << " was rebound instead of written in place";
    EXPECT_EQ(after[i].second.to_vector<double>(), sd[i].second.to_vector<double>())
        << after[i].first;
  }
  // BN statistics came from three training batches in torchvision.
  EXPECT_EQ(testing::fixture(sd, "conv1.1.num_batches_tracked").item(), 3.0);
}

TEST(CheckpointImport, ReproducesTorchvisionEvalOutput) {
  auto model = make_model();
  model->load_state_dict(testing::load_fixture(kCheckpoint));
  model->eval();
  const NamedTensors io = testing::load_fixture(kIo);
  NoGradGuard no_grad;
  const Tensor logits = model->forward(testing::fixture(io, "input"));
  // Same budget as the zoo parity test: 1e-4 relative, with a floor of 1e-5 of the largest
  // logit for logits near zero.
  double max_abs = 0;
  for (double v : testing::fixture(io, "logits").to_vector<double>()) {
    max_abs = std::max(max_abs, std::fabs(v));
  }
  EXPECT_TRUE(testing::matches_fixture(logits, io, "logits", 1e-4, 1e-5 * max_abs));
}

TEST(CheckpointImport, WrongArchitectureFailsWithoutWriting) {
  // shufflenet_v2_x1_0 has the same keys but wider layers: every check must fire before
  // anything is written.
  auto model = zoo::shufflenet_v2_x1_0(zoo::ShuffleNetV2Options().num_classes(10));
  const nn::StateDict before = model->state_dict();
  const std::vector<double> conv1_before = before[0].second.to_vector<double>();
  EXPECT_THROW(model->load_state_dict(testing::load_fixture(kCheckpoint)), Error);
  EXPECT_EQ(model->state_dict()[0].second.to_vector<double>(), conv1_before);
}

}  // namespace
}  // namespace qat
