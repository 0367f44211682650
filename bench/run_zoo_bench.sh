#!/usr/bin/env bash
# Float train-step benchmark of every zoo model, qat beside PyTorch 1.13, at 1 and 2 threads:
#   (a) 3x224x224, batch 16, 1000 classes (torchvision default stems)
#   (b) 1x32x32, batch 64, 10 classes, small-input stems
# Writes one line per run to bench/results/zoo_float_t<threads>.txt and prints a markdown table
# of the ratios (qat images/s / PyTorch images/s). Run on an otherwise idle machine: with any
# other load on the 2 cores, 2-thread OpenMP runs (ours and PyTorch's) slow down erratically.
#   bash bench/run_zoo_bench.sh [models...]
#   THREADS=2 bash bench/run_zoo_bench.sh      # re-measure one thread count
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/install_deps.sh --torch
bazel build --color=no --curses=no //bench:train_step_bench
BIN=bazel-bin/bench/train_step_bench

MODELS=("$@")
if ((${#MODELS[@]} == 0)); then
  MODELS=(small_cnn resnet18 resnet34 resnet50 mobilenet_v2 shufflenet_v2_x0_5 shufflenet_v2_x1_0
          shufflenet_v2_x1_5 shufflenet_v2_x2_0 googlenet)
fi
THREADS=(${THREADS:-1 2})
mkdir -p bench/results
for threads in "${THREADS[@]}"; do : > "bench/results/zoo_float_t${threads}.txt"; done
run_pair() {  # model shape small batch classes threads steps
  local args=(--model "$1" --shape "$2" --small-input "$3" --batch "$4" --classes "$5"
              --threads "$6" --steps "$7" --warmup 2)
  local out="bench/results/zoo_float_t$6.txt"
  "$BIN" "${args[@]}" | tee -a "$out"
  /usr/bin/python3 bench/pytorch_train_step.py "${args[@]}" | tee -a "$out"
}
for model in "${MODELS[@]}"; do
  for threads in "${THREADS[@]}"; do
    if [[ "$model" == small_cnn ]]; then
      run_pair small_cnn 1,28,28 0 64 10 "$threads" 30
      continue
    fi
    run_pair "$model" 3,224,224 0 16 1000 "$threads" 4
    run_pair "$model" 1,32,32 1 64 10 "$threads" 4
  done
done

# Table: model | input | threads | qat img/s | PyTorch img/s | ratio | qat RSS | PyTorch RSS
echo
echo "| model | input, batch | threads | qat img/s | PyTorch img/s | qat / PyTorch | qat peak RSS MB | PyTorch peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
cat bench/results/zoo_float_t*.txt | paste -d' ' - - | awk '{
  # Fields are key=value after "<side> <model>"; the PyTorch line starts at the second "pytorch".
  split("", q); split("", p); side = "";
  for (i = 1; i <= NF; ++i) {
    if ($i == "qat" || $i == "pytorch") { side = $i; continue; }
    n = index($i, "="); if (!n) continue;
    if (side == "qat") q[substr($i, 1, n - 1)] = substr($i, n + 1);
    else p[substr($i, 1, n - 1)] = substr($i, n + 1);
  }
  printf "| %s | %s, %s | %s | %.1f | %.1f | %.2f | %s | %s |\n", $2, q["shape"], q["batch"], q["threads"],
         q["images/s"], p["images/s"], q["images/s"] / p["images/s"], q["peak_rss_mb"], p["peak_rss_mb"]
}'
