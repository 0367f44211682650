#include "zoo/registry.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/serialize.h"
#include "tests/testing/compare.h"
#include "zoo/config.h"
#include "zoo/config_reader.h"
#include "tests/testing/errors.h"

namespace qat::zoo {
namespace {

using qat::testing::error_of;

Config parse(const std::string& text) {
  return parse_config(nlohmann::json::parse(text), "cfg.json");
}

std::string parse_error(const std::string& text) {
  return error_of([&] { parse(text); });
}

std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = temp_path(name);
  std::ofstream(path) << text;
  return path;
}

TEST(ModelConfig, ParsesEveryKey) {
  const ModelConfig c = parse(R"({"model": {"name": "googlenet", "num_classes": 10,
      "in_channels": 1, "small_input": true, "aux_logits": false, "transform_input": false,
      "dropout": 0.5, "input_shape": [2, 1, 28, 28]}})")
                            .model;
  EXPECT_EQ(c.name, "googlenet");
  EXPECT_EQ(c.num_classes, 10);
  EXPECT_EQ(c.in_channels, 1);
  EXPECT_EQ(c.small_input, true);
  EXPECT_EQ(c.aux_logits, false);
  EXPECT_EQ(c.transform_input, false);
  EXPECT_EQ(c.dropout, 0.5);
  EXPECT_FALSE(c.width_mult.has_value());
  EXPECT_EQ(c.input_shape, (Shape{2, 1, 28, 28}));
  EXPECT_EQ(parse(R"({"model": {"name": "mobilenet_v2", "width_mult": 1}})").model.width_mult, 1.0);
}

TEST(ModelConfig, UnsetOptionsKeepTheModelDefaults) {
  const ModelConfig c = parse(R"({"model": {"name": "shufflenet_v2_x0_5"}})").model;
  EXPECT_FALSE(c.num_classes || c.in_channels || c.small_input || c.dropout);
  EXPECT_TRUE(c.input_shape.empty());
  auto shufflenet = create_model(c);
  EXPECT_EQ(shufflenet->state_dict().back().second.shape(), (Shape{1000}));  // fc.bias
  auto small = create_model(parse(R"({"model": {"name": "small_cnn"}})").model);
  NoGradGuard no_grad;
  small->eval();
  EXPECT_EQ(small->forward(Tensor::zeros({1, 1, 28, 28})).shape(), (Shape{1, 10}));
}

TEST(ModelConfig, UnknownKeysNameTheFileThePathAndTheKnownKeys) {
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "num_clases": 10}})"),
            "cfg.json: model.num_clases: unknown key (known: name, num_classes, in_channels, "
            "input_shape, pretrained, small_input, width_mult, aux_logits, transform_input, "
            "dropout)");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18"}, "trian": {}})"),
            "cfg.json: trian: unknown key (known: model, data, qat, export, train, "
            "checkpoint)");
}

TEST(ModelConfig, WrongTypesNameThePath) {
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "num_classes": "10"}})"),
            "cfg.json: model.num_classes: expected an integer, got string \"10\"");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "num_classes": 10.5}})"),
            "cfg.json: model.num_classes: expected an integer, got number 10.5");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "small_input": 1}})"),
            "cfg.json: model.small_input: expected true or false, got number 1");
  EXPECT_EQ(parse_error(R"({"model": {"name": 18}})"),
            "cfg.json: model.name: expected a string, got number 18");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "input_shape": [1, 3, "32", 32]}})"),
            "cfg.json: model.input_shape[2]: expected an integer, got string \"32\"");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "input_shape": 32}})"),
            "cfg.json: model.input_shape: expected an array of integers, got number 32");
  EXPECT_EQ(parse_error(R"({"model": ["resnet18"]})"),
            "cfg.json: model: expected a JSON object, got array");
  EXPECT_EQ(parse_error(R"([1])"), "cfg.json: expected a JSON object, got array");
}

TEST(ModelConfig, BadValuesNameThePath) {
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "num_classes": 0}})"),
            "cfg.json: model.num_classes: must be at least 1, got 0");
  EXPECT_EQ(parse_error(R"({"model": {"name": "mobilenet_v2", "width_mult": -0.5}})"),
            "cfg.json: model.width_mult: must be > 0, got -0.5");
  EXPECT_EQ(parse_error(R"({"model": {"name": "googlenet", "dropout": 1.5}})"),
            "cfg.json: model.dropout: must be in [0, 1], got 1.5");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "input_shape": [1, 3, 32]}})"),
            "cfg.json: model.input_shape: expected [N, C, H, W] with 4 positive sizes, got "
            "[1, 3, 32]");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "input_shape": [1, 0, 32, 32]}})"),
            "cfg.json: model.input_shape: expected [N, C, H, W] with 4 positive sizes, got "
            "[1, 0, 32, 32]");
  EXPECT_EQ(
      parse_error(
          R"({"model": {"name": "resnet18", "in_channels": 1, "input_shape": [1, 3, 8, 8]}})"),
      "cfg.json: model.input_shape: C = 3 does not match in_channels = 1");
}

TEST(ModelConfig, ModelNamesAndOptionsAreChecked) {
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet19"}})"),
            "cfg.json: model.name: unknown model 'resnet19' (known: resnet18, resnet34, resnet50, "
            "mobilenet_v2, shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5, "
            "shufflenet_v2_x2_0, googlenet, small_cnn)");
  EXPECT_EQ(parse_error(R"({"model": {"num_classes": 10}})")
                .rfind("cfg.json: model.name: missing "
                       "(known models: resnet18, ",
                       0),
            0u);
  EXPECT_EQ(parse_error(R"({})"), "cfg.json: model: missing section (it needs at least \"name\")");
  EXPECT_EQ(parse_error(R"({"model": {"name": "resnet18", "width_mult": 0.5}})"),
            "cfg.json: model.width_mult: not an option of resnet18 (its keys: name, num_classes, "
            "in_channels, input_shape, pretrained, small_input)");
  EXPECT_EQ(parse_error(R"({"model": {"name": "small_cnn", "small_input": true}})"),
            "cfg.json: model.small_input: not an option of small_cnn (its keys: name, "
            "num_classes, in_channels, input_shape, pretrained)");
}

TEST(ConfigFile, ErrorsNameTheFile) {
  const std::string missing = temp_path("missing.json");
  EXPECT_EQ(error_of([&] { load_config(missing); }),
            missing + ": cannot open the config file: No such file or directory");

  const std::string broken = write_file("broken.json", "{\n  \"model\": {\n    name: 1\n");
  const std::string message = error_of([&] { load_config(broken); });
  EXPECT_EQ(message.rfind(broken + ": invalid JSON: parse error at line 3, column 6: ", 0), 0u)
      << message;

  const std::string twice =
      write_file("twice.json", R"({"model": {"name": "resnet18", "name": "resnet50"}})");
  EXPECT_EQ(error_of([&] { load_config(twice); }), twice + ": duplicate key 'name'");

  const std::string typo = write_file("typo.json", R"({"model": {"nmae": "resnet18"}})");
  EXPECT_EQ(error_of([&] { load_config(typo); }).rfind(typo + ": model.nmae: unknown key", 0), 0u);
}

// Every name, with options small enough to build quickly.
TEST(Registry, EveryModelNameConstructs) {
  const std::vector<std::string> names = model_names();
  ASSERT_EQ(names.size(), 10u);
  for (const std::string& name : names) {
    ModelConfig config;
    config.name = name;
    config.num_classes = 10;
    config.in_channels = 1;
    if (name != "small_cnn") config.small_input = true;
    const std::shared_ptr<nn::Module> model = create_model(config);
    const Tensor fc_bias = model->state_dict().back().second;
    EXPECT_EQ(fc_bias.shape(), (Shape{10})) << name;
  }
  EXPECT_EQ(names.front(), "resnet18");
  EXPECT_EQ(names.back(), "small_cnn");
}

TEST(Registry, SmallModelsRunForward) {
  NoGradGuard no_grad;
  for (const char* file : {"small_cnn_fashion_mnist", "resnet18_fashion_mnist"}) {
    const Config config = load_config("zoo/configs/" + std::string(file) + ".json");
    const std::shared_ptr<nn::Module> model = create_model(config.model);
    model->eval();
    EXPECT_EQ(model->forward(Tensor::zeros({2, 1, 28, 28})).shape(), (Shape{2, 10})) << file;
  }
}

// EveryModelNameConstructs builds them (with the same options).
TEST(Registry, ExampleConfigsParse) {
  for (const char* file : {"googlenet_fashion_mnist", "mobilenet_v2_fashion_mnist",
                           "resnet18_fashion_mnist", "resnet18_imagenet", "resnet50_fashion_mnist",
                           "shufflenet_v2_x1_0_fashion_mnist", "small_cnn_fashion_mnist"}) {
    const Config config = load_config("zoo/configs/" + std::string(file) + ".json");
    EXPECT_EQ(config.model.input_shape.size(), 4u) << file;
    EXPECT_EQ(std::string(file).rfind(config.model.name, 0), 0u) << file;
  }
}

TEST(Registry, CreateModelChecksProgrammaticConfigs) {
  ModelConfig unknown;
  unknown.name = "vgg16";
  EXPECT_NE(error_of([&] { create_model(unknown); }).find("create_model: unknown model 'vgg16'"),
            std::string::npos);
  ModelConfig config;
  config.name = "resnet18";
  config.aux_logits = true;
  EXPECT_NE(error_of([&] { create_model(config); }).find("resnet18 has no option aux_logits"),
            std::string::npos);
}

ModelConfig small_googlenet(bool aux_logits) {
  ModelConfig config;
  config.name = "googlenet";
  config.num_classes = 10;
  config.small_input = true;
  config.aux_logits = aux_logits;
  return config;
}

TEST(LoadCheckpoint, LoadsStrictly) {
  ModelConfig config;
  config.name = "small_cnn";
  const auto source = create_model(config), target = create_model(config);
  const std::string path = temp_path("small_cnn.safetensors");
  save_safetensors(path, source->state_dict());
  EXPECT_TRUE(load_checkpoint(*target, path).empty());
  const nn::StateDict expected = source->state_dict(), loaded = target->state_dict();
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_TRUE(testing::all_close(loaded[i].second, expected[i].second, 0, 0)) << loaded[i].first;

  nn::StateDict extra = source->state_dict();
  extra.emplace_back("head.weight", Tensor::zeros({1}));
  const std::string extra_path = temp_path("extra.safetensors");
  save_safetensors(extra_path, extra);
  EXPECT_EQ(error_of([&] { load_checkpoint(*target, extra_path); })
                .rfind(extra_path + ": load_state_dict: error(s) loading the state dict of "
                                    "SmallCnn; unexpected key(s): \"head.weight\"",
                       0),
            0u);
}

TEST(LoadCheckpoint, SkipsGoogLeNetAuxHeadsOnlyWhenTheModelHasNone) {
  const auto with_aux = create_model(small_googlenet(true));
  const std::string path = temp_path("googlenet.safetensors");
  save_safetensors(path, with_aux->state_dict());
  size_t aux_keys = 0;
  for (const auto& entry : with_aux->state_dict())
    aux_keys += entry.first.rfind("aux1.", 0) == 0 || entry.first.rfind("aux2.", 0) == 0;

  const auto without_aux = create_model(small_googlenet(false));
  const std::vector<std::string> skipped = load_checkpoint(*without_aux, path);
  EXPECT_EQ(skipped.size(), aux_keys);
  EXPECT_EQ(skipped.front().rfind("aux1.", 0), 0u);
  EXPECT_TRUE(testing::all_close(without_aux->state_dict().back().second,
                                 with_aux->state_dict().back().second, 0, 0));  // fc.bias

  EXPECT_TRUE(load_checkpoint(*create_model(small_googlenet(true)), path).empty());
  // The other way round the aux heads are missing from the checkpoint: strict fails.
  const std::string no_aux_path = temp_path("googlenet_no_aux.safetensors");
  save_safetensors(no_aux_path, without_aux->state_dict());
  EXPECT_NE(
      error_of([&] { load_checkpoint(*with_aux, no_aux_path); }).find("missing key(s): \"aux1."),
      std::string::npos);
}

}  // namespace
}  // namespace qat::zoo
