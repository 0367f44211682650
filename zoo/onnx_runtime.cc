#include "zoo/onnx_runtime.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "core/shape.h"

extern char** environ;

namespace qat::zoo {
namespace {

// Runs an ONNX model on raw float32 batches and prints onnxruntime-node's version:
//   node <script> <ort_dir> <model.onnx> <inputs.bin> <input_dims.txt> <outputs.bin>
//        <output_dims.txt>
// inputs.bin holds the batches back to back, input_dims.txt one "d0,d1,..." line per batch;
// the model's first output of each batch is appended to outputs.bin and its dims to
// output_dims.txt. One batch is in memory at a time, however many there are.
const char kOrtScript[] = R"js('use strict';
const fs = require('fs');
const path = require('path');

function readFully(fd, bytes) {
  for (let done = 0; done < bytes.length;) {
    const n = fs.readSync(fd, bytes, done, bytes.length - done, null);
    if (n === 0) throw new Error('inputs end before the last batch');
    done += n;
  }
}

function writeFully(fd, bytes) {
  for (let done = 0; done < bytes.length;) done += fs.writeSync(fd, bytes, done);
}

async function main([ortDir, model, inputs, inputDims, outputs, outputDims]) {
  const packageDir = path.join(ortDir, 'node_modules', 'onnxruntime-node');
  const ort = require(packageDir);
  console.log(require(path.join(packageDir, 'package.json')).version);
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: 'disabled',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const input = fs.openSync(inputs, 'r');
  const output = fs.openSync(outputs, 'w');
  const shapes = [];
  for (const line of fs.readFileSync(inputDims, 'utf8').split('\n')) {
    if (line === '') continue;
    const dims = line.split(',').map(Number);
    const x = new Float32Array(dims.reduce((a, b) => a * b, 1));
    readFully(input, new Uint8Array(x.buffer));
    const results = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', x, dims)});
    const y = results[session.outputNames[0]];
    if (y.type !== 'float32') throw new Error('output ' + session.outputNames[0] + ' is ' + y.type);
    writeFully(output, new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    shapes.push(y.dims.join(',') + '\n');
  }
  fs.closeSync(output);
  fs.writeFileSync(outputDims, shapes.join(''));
}

main(process.argv.slice(2)).catch((e) => {
  console.error(String(e && e.message ? e.message : e).split('\n')[0]);
  process.exit(1);
});
)js";

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string read_text(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Runs `argv` (found on PATH) with stdout and stderr into `output_file`, whose text (without
// trailing newlines) goes to `output`; returns the exit code, or -1 when it could not be started.
int run_process(const std::vector<std::string>& argv, const std::string& output_file,
                std::string& output) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  output = read_text(output_file);
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ort_missing(const std::string& user, const std::string& dir, const TempDir& temp) {
  const std::string setup = "mkdir -p " + dir + " && cd " + dir + " && " + kOrtInstallCommand;
  std::string output;
  if (run_process({"node", "--version"}, temp.path() + "/node_version.txt", output) != 0) {
    return user + " runs the model in ONNX Runtime for Node, but 'node' does not run (" +
           (output.empty() ? std::string("not on PATH") : output) +
           "); install Node.js (Debian: apt-get install nodejs npm), then: " + setup;
  }
  const std::string package = dir + "/node_modules/onnxruntime-node/package.json";
  if (!std::filesystem::exists(package)) {
    return user + " needs ONNX Runtime for Node, and there is no " + package +
           " ($QAT_ORT_DIR, default ${XDG_CACHE_HOME:-$HOME/.cache}/qat-onnxruntime); install "
           "it once with: " +
           setup;
  }
  return "";
}

// "d0,d1,..." per line -> shapes.
std::vector<Shape> read_dims(const std::string& path) {
  std::vector<Shape> shapes;
  std::istringstream lines(read_text(path));
  for (std::string line; std::getline(lines, line);) {
    Shape shape;
    std::istringstream dims(line);
    for (std::string d; std::getline(dims, d, ',');) shape.push_back(std::stoll(d));
    shapes.push_back(shape);
  }
  return shapes;
}

}  // namespace

const char kOrtInstallCommand[] = "npm install onnxruntime-node --onnxruntime-node-install=skip";

std::string ort_dir() {
  if (!env("QAT_ORT_DIR").empty()) return env("QAT_ORT_DIR");
  const std::string cache =
      !env("XDG_CACHE_HOME").empty() ? env("XDG_CACHE_HOME") : env("HOME") + "/.cache";
  return cache + "/qat-onnxruntime";
}

std::string ort_missing(const std::string& user) {
  const TempDir temp("ort");
  return ort_missing(user, ort_dir(), temp);
}

std::vector<Tensor> run_onnx_runtime(const std::string& model, const std::vector<Tensor>& batches,
                                     const std::string& user, std::string* version) {
  if (!std::filesystem::exists(model)) throw Error(user + ": no ONNX file " + model);
  const TempDir temp("ort");
  const std::string dir = ort_dir();
  const std::string missing = ort_missing(user, dir, temp);
  if (!missing.empty()) throw Error(missing);
  const std::string script = temp.path() + "/run_ort.js";
  std::ofstream(script) << kOrtScript;
  const std::string inputs = temp.path() + "/inputs.bin", input_dims = temp.path() + "/inputs.txt";
  const std::string outputs = temp.path() + "/outputs.bin",
                    output_dims = temp.path() + "/outputs.txt";
  {
    std::ofstream data(inputs, std::ios::binary), dims(input_dims);
    for (const Tensor& batch : batches) {
      const Tensor x = batch.to(DType::kFloat32);
      data.write(static_cast<const char*>(x.raw_data()), static_cast<std::streamsize>(x.nbytes()));
      std::string line;
      for (const int64_t d : x.shape()) line += (line.empty() ? "" : ",") + std::to_string(d);
      dims << line << "\n";
    }
    if (!data || !dims)
      throw Error(user + ": cannot write the ONNX Runtime inputs in " + temp.path());
  }
  std::string output;
  if (run_process({"node", script, dir, model, inputs, input_dims, outputs, output_dims},
                  temp.path() + "/node_output.txt", output) != 0) {
    throw Error(user + ": ONNX Runtime failed on " + model + ": " + output);
  }
  if (version != nullptr) *version = output.substr(0, output.find('\n'));

  const std::vector<Shape> shapes = read_dims(output_dims);
  QAT_CHECK(shapes.size() == batches.size(), user, ": ONNX Runtime gave ", shapes.size(),
            " outputs for ", batches.size(), " batches");
  std::ifstream data(outputs, std::ios::binary);
  std::vector<Tensor> results;
  for (const Shape& shape : shapes) {
    Tensor y = Tensor::empty(shape);
    data.read(static_cast<char*>(y.raw_data()), static_cast<std::streamsize>(y.nbytes()));
    QAT_CHECK(data, user, ": ", outputs, " ends before output ", results.size());
    results.push_back(y);
  }
  return results;
}

TempDir::TempDir(const std::string& tag) {
  const std::string tmp = env("TMPDIR");
  std::string pattern = (tmp.empty() ? std::string("/tmp") : tmp) + "/qat-" + tag + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw Error("cannot create a temporary directory " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace qat::zoo
