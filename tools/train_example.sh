#!/usr/bin/env bash
# The main job: a Fashion-MNIST recipe end to end (Debian's dataset-fashion-mnist). For MODEL
# (default small_cnn) it trains zoo/configs/MODEL_fashion_mnist.json (float epochs, then QAT for
# that config's target, export) and then QAT for the other target from the same float weights
# (zoo/configs/MODEL_fashion_mnist_<target>.json), and prints both accuracy tables. Installs
# missing Debian packages first. A killed run continues where it stopped when started again.
#   bash tools/train_example.sh                 # small_cnn, about 10 minutes on 2 cores
#   bash tools/train_example.sh mobilenet_v2    # the other recipes: resnet18, shufflenet_v2_x1_0,
#                                               # googlenet (see README, "Results")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-small_cnn}"
first="zoo/configs/${model}_fashion_mnist.json"
[[ -f "$first" ]] || { echo "train_example: no recipe $first" >&2; exit 2; }
bash tools/install_deps.sh
# ONNX Runtime (npm) for the exported-model row of the tensorrt table; optional.
export QAT_ORT_DIR="${QAT_ORT_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/qat-onnxruntime}"
if [[ ! -f "$QAT_ORT_DIR/node_modules/onnxruntime-node/package.json" ]] && command -v npm >/dev/null; then
  mkdir -p "$QAT_ORT_DIR" &&
    (cd "$QAT_ORT_DIR" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
      onnxruntime-node --onnxruntime-node-install=skip >/dev/null) ||
    echo "train_example: ONNX Runtime not installed; the ONNX row will say so" >&2
fi
bazel build --color=no --curses=no //zoo:qat
qat=bazel-bin/zoo/qat
second=$(ls zoo/configs/"${model}"_fashion_mnist_*.json)
start=$(date +%s)
for config in "$first" $second; do
  echo "== $qat train --config $config"
  "$qat" train --config "$config" --resume true
done
echo "== accuracy (Fashion-MNIST test split, 10,000 images), $(( ($(date +%s) - start) / 60 )) min"
for config in "$first" $second; do
  out_dir=$(sed -n 's/.*"out_dir": "\([^"]*\)".*/\1/p' "$config")
  cat "$out_dir/accuracy.txt"
done
