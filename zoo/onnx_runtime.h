#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

// ONNX Runtime for Node (the npm package onnxruntime-node) as the reference runtime of the ONNX
// exports: `qat verify --onnx` and `qat eval --mode onnx` run the exported file in it.
namespace qat::zoo {

// Installs onnxruntime-node into the current directory; run it in ort_dir().
extern const char kOrtInstallCommand[];

// $QAT_ORT_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/qat-onnxruntime.
std::string ort_dir();

// Empty when `node` runs and onnxruntime-node is installed in ort_dir(); otherwise why not and
// the commands that install it. `user` starts the message ("verify --onnx").
std::string ort_missing(const std::string& user);

// The first output of the ONNX model `model` for each of `batches` (float32, the shape ORT
// gives), computed by one node process with graph optimizations off (Q/DQ nodes execute as
// written, onnx_qdq.md §9) on one thread. `version` (if given) gets onnxruntime-node's version.
// Throws qat::Error with ort_missing(user) when ORT is not installed, or with ORT's message.
std::vector<Tensor> run_onnx_runtime(const std::string& model, const std::vector<Tensor>& batches,
                                     const std::string& user, std::string* version = nullptr);

// A fresh directory under $TMPDIR (default /tmp) named qat-<tag>-XXXXXX, removed with its files
// when this goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace qat::zoo
