#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "zoo/registry.h"

namespace qat::zoo {

// A qat config file (zoo/configs/*.json), one member per top-level section. Only "model" so
// far; "train", "quant", "data" and "export" follow, each parsed by its own function with a
// ConfigReader, as parse_model_config.
struct Config {
  ModelConfig model;
};

// Parses a config strictly: an unknown section or key is an error naming `file` and the JSON
// path.
Config parse_config(const nlohmann::json& json, const std::string& file);

// load_config_file + parse_config.
Config load_config(const std::string& path);

}  // namespace qat::zoo
