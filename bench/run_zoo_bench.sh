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
  split($3, t, "="); split($4, b, "="); split($5, s, "=");
  split($6, q, "="); split($7, qr, "="); split($13, p, "="); split($14, pr, "=");
  printf "| %s | %s, %s | %s | %.1f | %.1f | %.2f | %s | %s |\n", $2, s[2], b[2], t[2], q[2], p[2], q[2] / p[2], qr[2], pr[2]
}'
