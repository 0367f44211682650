#include "zoo/config.h"

#include <nlohmann/json.hpp>

#include "zoo/config_reader.h"

namespace qat::zoo {

Config parse_config(const nlohmann::json& json, const std::string& file) {
  const ConfigReader root(json, file, /*path=*/"", {"model"});
  Config config;
  config.model = parse_model_config(root);
  return config;
}

Config load_config(const std::string& path) { return parse_config(load_config_file(path), path); }

}  // namespace qat::zoo
