#!/usr/bin/env bash
# Installs the Debian packages qat needs to build, test and run, skipping what is installed.
# Idempotent; needs root (or sudo) only when something is missing.
#   tools/install_deps.sh            build + test + run dependencies
#   tools/install_deps.sh --torch    also PyTorch (only for regenerating golden fixtures and
#                                    for the PyTorch side of bench/; never needed by the build)
set -euo pipefail

PKGS=(
  bazel-bootstrap        # Bazel 4.2.3 (+ default-jdk-headless)
  g++
  libeigen3-dev          # Eigen 3.4
  libdnnl-dev            # oneDNN 2.6.3 (OpenMP runtime)
  nlohmann-json3-dev     # nlohmann/json
  libgtest-dev           # GoogleTest (static libs)
  libprotobuf-dev        # protobuf 3.21 (not pulled in by libonnx-dev)
  libonnx-dev            # ONNX protobuf + checker
  zlib1g-dev             # gzip reading of the IDX files
  libstb-dev             # image decoding (image-folder datasets)
  dataset-fashion-mnist  # /usr/share/datasets/fashion-mnist
)
if [[ "${1:-}" == "--torch" ]]; then
  PKGS+=(python3-torch python3-torchvision python3-onnx)
fi

missing=()
for p in "${PKGS[@]}"; do
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "install_deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "[install_deps] apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
