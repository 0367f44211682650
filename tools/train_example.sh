#!/usr/bin/env bash
# Main job for now: trains the small example CNN on Fashion-MNIST (Debian's dataset-fashion-mnist)
# and reports test accuracy. Installs missing Debian packages first. Arguments go to the trainer:
#   bash tools/train_example.sh --epochs 1 --threads 2 --batch-size 64
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/install_deps.sh
exec bazel run --color=no --curses=no //zoo:train_small_cnn -- "$@"
