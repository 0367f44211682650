#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace qat::zoo {

// Reads a JSON config file. Unreadable files, invalid JSON (with line and column) and duplicate
// keys throw qat::Error naming the file.
nlohmann::json load_config_file(const std::string& path);

// One JSON object of a config file, read strictly: a key outside `known` is an error, and every
// error is a qat::Error naming the file and the JSON path, e.g.
//   "cfg.json: model.num_clases: unknown key (known: name, num_classes, ...)".
// Holds a reference to the JSON, which must outlive the reader. A config file parser reads the
// top level with path "" and descends with section().
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::string file, std::string path,
               std::vector<std::string> known);

  // Typed reads of an optional key: std::nullopt when it is absent, an error when its value
  // has another type. Integers must be written as integers; doubles accept any number.
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_double(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<std::vector<int64_t>> get_int_list(const std::string& key) const;
  // The object under `key`, read with its own known keys; std::nullopt when absent.
  std::optional<ConfigReader> section(const std::string& key, std::vector<std::string> known) const;

  // Throws "<file>: <JSON path of key>: <message>", e.g. "cfg.json: model.dropout: ...".
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  // "model.num_classes" for the key "num_classes" of the section "model".
  std::string path_of(const std::string& key) const;
  // The value of a declared key, or nullptr when absent.
  const nlohmann::json* find(const std::string& key) const;

  const nlohmann::json* json_;
  std::string file_;
  std::string path_;
  std::vector<std::string> known_;
};

}  // namespace qat::zoo
