#!/usr/bin/env bash
# The whole test suite: installs missing Debian packages, runs every Bazel test target (and the
# fuzz tests once more under ASan) and ends with one line "N passed, N failed" (N = Bazel test
# runs). Exits non-zero unless all passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! bash tools/install_deps.sh; then
  echo "[test] installing dependencies failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# ONNX Runtime for Node, which //exporters:onnx_ort_test runs the exported models in: installed
# once into a cache directory outside the clone and reused; .bazelrc passes QAT_ORT_DIR to tests.
# Without node/npm (Debian: nodejs, npm) the test fails and says how to install.
export QAT_ORT_DIR="${QAT_ORT_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/qat-onnxruntime}"
if [[ ! -f "$QAT_ORT_DIR/node_modules/onnxruntime-node/package.json" ]] && command -v npm >/dev/null; then
  echo "[test] npm install onnxruntime-node into $QAT_ORT_DIR"
  mkdir -p "$QAT_ORT_DIR" &&
    (cd "$QAT_ORT_DIR" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
      onnxruntime-node --onnxruntime-node-install=skip >/dev/null) ||
    echo "[test] installing onnxruntime-node failed: //exporters:onnx_ort_test will fail"
fi

# Convenience symlinks into a *different* output base make //... descend into them.
find . -maxdepth 1 -type l -name 'bazel-*' -delete

ASAN_TARGETS=(//core:serialize_fuzz_test //nn/data:mnist_fuzz_test)
CACHE_DIR="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/bazel-disk-cache"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

start=$SECONDS
bazel test \
  --color=no --curses=no \
  --keep_going \
  --disk_cache="$CACHE_DIR" \
  --nocache_test_results \
  --test_output=errors \
  --test_summary=short \
  "$@" //... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The hostile-input fuzz tests again under AddressSanitizer (a separate -c dbg configuration):
# "no crash" must also mean no out-of-bounds read that happens not to crash.
bazel test \
  --color=no --curses=no \
  --config=asan \
  --disk_cache="$CACHE_DIR" \
  --nocache_test_results \
  --test_output=errors \
  --test_summary=short \
  "$@" "${ASAN_TARGETS[@]}" 2>&1 | tee -a "$log"
asan_rc=${PIPESTATUS[0]}
if ((rc == 0)); then rc=$asan_rc; fi
# In CI every run is a fresh clone (new output base, new server): stop the server afterwards.
if [[ -n "${CI:-}" ]]; then bazel shutdown >/dev/null 2>&1 || true; fi

re_target='^//[^[:space:]]+[[:space:]]+(\(cached\)[[:space:]]+)?'
passed=$(grep -cE "${re_target}(PASSED|FLAKY)" "$log")
failed=$(grep -cE "${re_target}(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE)" "$log")
# Bazel exit codes: 0 ok, 1 build failed, 3 some tests failed, 4 no tests found.
if ((rc != 0 && failed == 0)); then failed=1; fi
echo "[test] bazel exit code $rc, $((SECONDS - start)) s"
echo "${passed} passed, ${failed} failed"
if ((rc != 0 || failed != 0 || passed == 0)); then exit 1; fi
exit 0
