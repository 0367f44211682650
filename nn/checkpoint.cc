#include "nn/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <utility>

#include <zlib.h>

#include "core/serialize.h"

namespace qat::nn {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "qat-checkpoint-1";
constexpr const char* kFormatKey = "qat.format";
constexpr const char* kCrcKey = "qat.crc32";
constexpr const char* kMetricKey = "qat.metric";
constexpr const char* kUserPrefix = "meta.";
constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".safetensors";

// CRC32 (zlib) over the metadata entries but the checksum itself, then each tensor's name,
// dtype, shape and data, in file order: what load_safetensors returns for our files.
uint32_t checksum(const NamedTensors& tensors, const SafetensorsMetadata& metadata) {
  uLong crc = crc32(0L, Z_NULL, 0);
  auto feed = [&crc](const void* data, size_t n) {
    const Bytef* p = static_cast<const Bytef*>(data);
    while (n > 0) {
      const uInt chunk = static_cast<uInt>(std::min<size_t>(n, size_t{1} << 30));
      crc = crc32(crc, p, chunk);
      p += chunk;
      n -= chunk;
    }
  };
  auto feed_string = [&feed](const std::string& s) { feed(s.c_str(), s.size() + 1); };
  for (const auto& [key, value] : metadata) {
    if (key == kCrcKey) continue;
    feed_string(key);
    feed_string(value);
  }
  for (const auto& [name, t] : tensors) {
    feed_string(name);
    feed_string(dtype_name(t.dtype()));
    const int64_t dims = t.dim();
    feed(&dims, sizeof dims);
    feed(t.shape().data(), t.shape().size() * sizeof(int64_t));
    if (t.nbytes() > 0) feed(t.raw_data(), t.nbytes());
  }
  return static_cast<uint32_t>(crc);
}

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "%08" PRIx32, value);
  return text;
}

int64_t parse_int(const SafetensorsMetadata& metadata, const std::string& key,
                  const std::string& path) {
  auto it = metadata.find(key);
  QAT_CHECK(it != metadata.end(), "checkpoint '", path, "': missing '", key, "' in its metadata");
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  QAT_CHECK(used > 0 && used == it->second.size(), "checkpoint '", path, "': '", key,
            "' is not an integer: '", it->second, "'");
  return value;
}

void write_checkpoint(const std::string& path, const TrainingState& state,
                      std::optional<double> metric) {
  NamedTensors tensors;
  auto add = [&tensors](const std::string& prefix, const NamedTensors& entries) {
    for (const auto& [name, t] : entries) {
      QAT_CHECK(t.defined(), "save_checkpoint: ", prefix, name, " is an undefined tensor");
      tensors.emplace_back(prefix + name, t);
    }
  };
  add("model.", state.model);
  add("optimizer.", state.optimizer);
  add("scheduler.", state.scheduler);
  add("rng.", NamedTensors(state.rng.begin(), state.rng.end()));

  SafetensorsMetadata metadata;
  for (const auto& [key, value] : state.metadata) metadata[kUserPrefix + key] = value;
  metadata[kFormatKey] = kFormat;
  metadata["qat.epoch"] = std::to_string(state.epoch);
  metadata["qat.step"] = std::to_string(state.step);
  metadata["qat.step_in_epoch"] = std::to_string(state.step_in_epoch);
  if (metric) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", *metric);
    metadata[kMetricKey] = text;
  }
  metadata[kCrcKey] = hex32(checksum(tensors, metadata));
  save_safetensors(path, tensors, metadata);
}

// The step of "ckpt-<digits>.safetensors", or -1 for any other name.
int64_t checkpoint_step(const std::string& name) {
  const size_t prefix = std::char_traits<char>::length(kPrefix);
  const size_t suffix = std::char_traits<char>::length(kSuffix);
  if (name.size() <= prefix + suffix || name.compare(0, prefix, kPrefix) != 0 ||
      name.compare(name.size() - suffix, suffix, kSuffix) != 0) {
    return -1;
  }
  const std::string digits = name.substr(prefix, name.size() - prefix - suffix);
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

std::optional<double> read_metric(const std::string& path) {
  try {
    const SafetensorsMetadata metadata = load_safetensors_metadata(path);
    auto it = metadata.find(kMetricKey);
    if (it == metadata.end()) return std::nullopt;
    return std::stod(it->second);
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: load_latest reports it
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const TrainingState& state) {
  write_checkpoint(path, state, std::nullopt);
}

TrainingState load_checkpoint(const std::string& path) {
  SafetensorsMetadata metadata;
  NamedTensors tensors;
  try {
    tensors = load_safetensors(path, &metadata);
  } catch (const Error& e) {
    QAT_CHECK(false, "checkpoint '", path, "' is unreadable (truncated or damaged?): ", e.what());
  }
  auto format = metadata.find(kFormatKey);
  QAT_CHECK(format != metadata.end() && format->second == kFormat, "checkpoint '", path,
            "': not a qat training checkpoint (metadata '", kFormatKey, "' is not '", kFormat,
            "')");
  auto stored = metadata.find(kCrcKey);
  QAT_CHECK(stored != metadata.end(), "checkpoint '", path, "': no '", kCrcKey,
            "' in its metadata");
  const std::string computed = hex32(checksum(tensors, metadata));
  QAT_CHECK(stored->second == computed, "checkpoint '", path, "' is corrupted: CRC32 mismatch (",
            kCrcKey, " says ", stored->second, ", the contents give ", computed, ")");

  TrainingState state;
  state.epoch = parse_int(metadata, "qat.epoch", path);
  state.step = parse_int(metadata, "qat.step", path);
  state.step_in_epoch = parse_int(metadata, "qat.step_in_epoch", path);
  for (const auto& [key, value] : metadata) {
    if (key.compare(0, 5, kUserPrefix) == 0) state.metadata[key.substr(5)] = value;
  }
  for (auto& [name, t] : tensors) {
    const size_t dot = name.find('.');
    const std::string group = dot == std::string::npos ? name : name.substr(0, dot);
    const std::string rest = dot == std::string::npos ? "" : name.substr(dot + 1);
    if (group == "model") {
      state.model.emplace_back(rest, std::move(t));
    } else if (group == "optimizer") {
      state.optimizer.emplace_back(rest, std::move(t));
    } else if (group == "scheduler") {
      state.scheduler.emplace_back(rest, std::move(t));
    } else if (group == "rng") {
      state.rng[rest] = std::move(t);
    } else {
      QAT_CHECK(false, "checkpoint '", path, "': unexpected tensor '", name,
                "' (expected model., optimizer., scheduler. or rng.)");
    }
  }
  return state;
}

CheckpointDir::CheckpointDir(std::string dir, CheckpointDirOptions options)
    : dir_(std::move(dir)), options_(options) {
  QAT_CHECK(options_.keep_last() >= 1, "CheckpointDir: keep_last must be >= 1, got ",
            options_.keep_last());
  std::error_code error;
  fs::create_directories(dir_, error);
  QAT_CHECK(!error && fs::is_directory(dir_), "CheckpointDir: cannot create directory '", dir_,
            "': ", error.message());
}

std::string CheckpointDir::save(const TrainingState& state, std::optional<double> metric) {
  QAT_CHECK(state.step >= 0, "CheckpointDir::save: step must be >= 0, got ", state.step);
  char name[64];
  std::snprintf(name, sizeof name, "%s%08" PRId64 "%s", kPrefix, state.step, kSuffix);
  const std::string path = (fs::path(dir_) / name).string();
  write_checkpoint(path, state, metric);
  prune(path);
  return path;
}

std::vector<std::string> CheckpointDir::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code error;
  fs::directory_iterator it(dir_, error);
  QAT_CHECK(!error, "CheckpointDir: cannot list '", dir_, "': ", error.message());
  for (; it != fs::directory_iterator(); it.increment(error)) {
    const int64_t step = checkpoint_step(it->path().filename().string());
    std::error_code gone;  // removed since it was listed: not a checkpoint any more
    if (step >= 0 && it->is_regular_file(gone)) found.emplace_back(step, it->path().string());
  }
  QAT_CHECK(!error, "CheckpointDir: cannot list '", dir_, "': ", error.message());
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

std::optional<std::string> CheckpointDir::best() const {
  std::optional<std::string> best;
  std::optional<double> best_metric;
  for (const std::string& path : list()) {  // oldest first: ties go to the newest
    const std::optional<double> metric = read_metric(path);
    if (!metric) continue;
    if (!best_metric ||
        (options_.higher_is_better() ? *metric >= *best_metric : *metric <= *best_metric)) {
      best = path;
      best_metric = metric;
    }
  }
  return best;
}

void CheckpointDir::prune(const std::string& newest) const {
  std::error_code ignored;  // a file we cannot remove costs disk space, not correctness
  std::vector<std::string> paths = list();
  // Steps past the one just saved belong to a timeline this run abandoned (it resumed from an
  // older checkpoint, the newer ones being damaged): they must not shadow it in load_latest.
  while (!paths.empty() && paths.back() != newest) {
    QAT_CHECK(fs::remove(paths.back(), ignored) || !fs::exists(paths.back()),
              "CheckpointDir: cannot remove '", paths.back(), "', newer than the checkpoint '",
              newest, "' just written: ", ignored.message());
    paths.pop_back();
  }
  const size_t keep = static_cast<size_t>(options_.keep_last());
  const std::optional<std::string> keep_best =
      options_.keep_best() ? best() : std::optional<std::string>();
  for (size_t i = 0; i + keep < paths.size(); ++i) {
    if (keep_best && paths[i] == *keep_best) continue;
    fs::remove(paths[i], ignored);
  }
  // "<checkpoint>.tmp.<pid>" of a writer that was killed before its rename.
  const std::string own_suffix = ".tmp." + std::to_string(::getpid());
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, ignored)) {
    const std::string name = entry.path().filename().string();
    const size_t tmp = name.find(std::string(kSuffix) + ".tmp.");
    if (tmp == std::string::npos || name.compare(0, 5, kPrefix) != 0) continue;
    if (name.size() >= own_suffix.size() &&
        name.compare(name.size() - own_suffix.size(), own_suffix.size(), own_suffix) == 0) {
      continue;
    }
    fs::remove(entry.path(), ignored);
  }
}

std::optional<TrainingState> CheckpointDir::load_latest(std::vector<std::string>* warnings) const {
  const std::vector<std::string> paths = list();
  if (paths.empty()) return std::nullopt;
  std::string reasons;
  for (auto it = paths.rbegin(); it != paths.rend(); ++it) {
    try {
      return load_checkpoint(*it);
    } catch (const Error& e) {
      const bool older = std::next(it) != paths.rend();
      // e.what() names the file.
      const std::string warning = std::string("warning: ") + e.what() +
                                  (older ? "; falling back to '" + *std::next(it) + "'" : "");
      std::cerr << warning << "\n";
      if (warnings) warnings->push_back(warning);
      reasons += "\n  " + std::string(e.what());
    }
  }
  QAT_CHECK(false, "CheckpointDir: none of the ", paths.size(), " checkpoints in '", dir_,
            "' is usable:", reasons,
            "\nHINT: move them away to start afresh, or restore a copy of the directory");
  return std::nullopt;  // unreachable
}

}  // namespace qat::nn
