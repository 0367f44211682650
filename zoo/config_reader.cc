#include "zoo/config_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/check.h"

namespace qat::zoo {
namespace {

using Json = nlohmann::json;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// "string \"10\"", "array": the type, and the value when it is short.
std::string describe(const Json& value) {
  return value.is_primitive() ? std::string(value.type_name()) + " " + value.dump()
                              : value.type_name();
}

// An integer that fits int64_t (nlohmann stores larger ones as unsigned).
bool is_int64(const Json& value) {
  return value.is_number_integer() &&
         !(value.is_number_unsigned() &&
           value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest reads well alone.
std::string without_exception_id(const std::string& what) {
  const size_t end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

}  // namespace

Json load_config_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error(path + ": cannot open the config file: " + std::strerror(errno));
  // nlohmann keeps the last of two equal keys; a config with both is a mistake, so reject it.
  std::vector<std::set<std::string>> open_objects;  // keys seen so far in each enclosing object
  std::string duplicate;
  const Json::parser_callback_t on_event = [&](int, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == Json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(file, on_event);
  } catch (const Json::exception& e) {
    throw Error(path + ": invalid JSON: " + without_exception_id(e.what()));
  }
  if (!duplicate.empty()) throw Error(path + ": duplicate key '" + duplicate + "'");
  return json;
}

ConfigReader::ConfigReader(const Json& json, std::string file, std::string path,
                           std::vector<std::string> known)
    : json_(&json), file_(std::move(file)), path_(std::move(path)), known_(std::move(known)) {
  if (!json.is_object()) {
    throw Error(file_ + ": " + (path_.empty() ? "" : path_ + ": ") +
                "expected a JSON object, got " + describe(json));
  }
  for (const auto& item : json.items()) {
    if (std::find(known_.begin(), known_.end(), item.key()) == known_.end())
      fail(item.key(), "unknown key (known: " + join(known_) + ")");
  }
}

const Json* ConfigReader::find(const std::string& key) const {
  QAT_CHECK(std::find(known_.begin(), known_.end(), key) != known_.end(), "ConfigReader: '", key,
            "' is not a known key of '", path_, "' (add it to the known keys)");
  const auto it = json_->find(key);
  return it == json_->end() ? nullptr : &*it;
}

std::optional<bool> ConfigReader::get_bool(const std::string& key) const {
  const Json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) fail(key, "expected true or false, got " + describe(*value));
  return value->get<bool>();
}

std::optional<int64_t> ConfigReader::get_int(const std::string& key) const {
  const Json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (!is_int64(*value)) fail(key, "expected an integer, got " + describe(*value));
  return value->get<int64_t>();
}

std::optional<double> ConfigReader::get_double(const std::string& key) const {
  const Json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) fail(key, "expected a number, got " + describe(*value));
  return value->get<double>();
}

std::optional<std::string> ConfigReader::get_string(const std::string& key) const {
  const Json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) fail(key, "expected a string, got " + describe(*value));
  return value->get<std::string>();
}

std::optional<std::vector<int64_t>> ConfigReader::get_int_list(const std::string& key) const {
  const Json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_array()) fail(key, "expected an array of integers, got " + describe(*value));
  std::vector<int64_t> out;
  for (const Json& element : *value) {
    if (!is_int64(element)) {
      fail(key + "[" + std::to_string(out.size()) + "]",
           "expected an integer, got " + describe(element));
    }
    out.push_back(element.get<int64_t>());
  }
  return out;
}

std::optional<ConfigReader> ConfigReader::section(const std::string& key,
                                                  std::vector<std::string> known) const {
  const Json* value = find(key);
  if (value == nullptr) return std::nullopt;
  return ConfigReader(*value, file_, path_of(key), std::move(known));
}

void ConfigReader::fail(const std::string& key, const std::string& message) const {
  throw Error(file_ + ": " + path_of(key) + ": " + message);
}

std::string ConfigReader::path_of(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

}  // namespace qat::zoo
