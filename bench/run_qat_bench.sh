#!/usr/bin/env bash
# QAT train-step benchmark: qat's float step and its QAT step for each target beside PyTorch 1.13's
# float step and eager QAT step (torchvision quantizable model, fuse_model(is_qat=True), fbgemm
# version-0 qconfig), same threads, batch and shapes, at 1 and 2 threads:
#   (a) 3x224x224, batch $BATCH_224 (16), 1000 classes (torchvision stems)
#   (b) 1x32x32, batch $BATCH_32 (32), 10 classes, small-input stems
# The five (six) runs of one row go back to back, so load from other processes hits them alike;
# each run reports the fastest of $REPEATS repeats of $STEPS timed steps, after $WARMUP.
# Writes one line per run to bench/results/zoo_qat_t<threads>.txt and prints the tables; with
# APPEND=1 the lines are added to the files, and the tables keep the fastest run of each cell
# (a second pass of the matrix is a third and fourth repeat).
#   bash bench/run_qat_bench.sh [models...]
#   THREADS=2 APPEND=1 bash bench/run_qat_bench.sh      # repeat the 2-thread rows
#   THREADS=1 QAT_TARGETS="tensorrt" bash bench/run_qat_bench.sh resnet18
#   bash bench/run_qat_bench.sh --table      # only print the tables of the existing results
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS=(${THREADS:-1 2})
QAT_TARGETS=(${QAT_TARGETS:-tensorrt tnn fbgemm})
BATCH_224=${BATCH_224:-16}
BATCH_32=${BATCH_32:-32}
STEPS=${STEPS:-1}
REPEATS=${REPEATS:-2}
WARMUP=${WARMUP:-1}

if [[ "${1:-}" != --table ]]; then
  bash tools/install_deps.sh --torch
  bazel build --color=no --curses=no //bench:train_step_bench
  # A private copy: the output tree is shared with other builds while the matrix runs.
  BIN=$(mktemp -d)/train_step_bench
  cp bazel-bin/bench/train_step_bench "$BIN"
  MODELS=("$@")
  if ((${#MODELS[@]} == 0)); then
    # Not resnet34: torchvision 0.14 has no quantizable resnet34 for the PyTorch side.
    MODELS=(resnet18 resnet50 mobilenet_v2 shufflenet_v2_x1_0 googlenet
            shufflenet_v2_x0_5 shufflenet_v2_x1_5 shufflenet_v2_x2_0)
  fi
  mkdir -p bench/results
  if [[ "${APPEND:-0}" != 1 ]]; then
    for threads in "${THREADS[@]}"; do : > "bench/results/zoo_qat_t${threads}.txt"; done
  fi
  run_row() {  # model shape small batch classes threads
    local args=(--model "$1" --shape "$2" --small-input "$3" --batch "$4" --classes "$5"
                --threads "$6" --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP")
    local out="bench/results/zoo_qat_t$6.txt"
    "$BIN" "${args[@]}" | tee -a "$out"
    for target in "${QAT_TARGETS[@]}"; do "$BIN" "${args[@]}" --qat "$target" | tee -a "$out"; done
    /usr/bin/python3 bench/pytorch_train_step.py "${args[@]}" | tee -a "$out"
    /usr/bin/python3 -W ignore bench/pytorch_train_step.py "${args[@]}" --qat fbgemm | tee -a "$out"
  }
  for model in "${MODELS[@]}"; do
    for threads in "${THREADS[@]}"; do
      run_row "$model" 3,224,224 0 "$BATCH_224" 1000 "$threads"
      run_row "$model" 1,32,32 1 "$BATCH_32" 10 "$threads"
    done
  done
  echo
fi

# Tables from the result lines: "<side> <model> key=value ... [target=<t>]".
python3 - bench/results/zoo_qat_t*.txt <<'PY'
import collections, sys
rows = collections.OrderedDict()
for path in sys.argv[1:]:
    for line in open(path):
        f = line.split()
        if len(f) < 3 or f[0] not in ("qat", "pytorch"):
            continue
        kv = dict(x.split("=", 1) for x in f[2:])
        key = (f[1], kv["shape"], kv["batch"], kv["threads"])
        cell = (f[0], kv.get("target", "float"))
        row = rows.setdefault(key, {})
        cpu_min = min(float(kv["cpu_s/step"]), float(row[cell]["cpu_s/step"])) if cell in row \
            else float(kv["cpu_s/step"])
        if cell not in row or float(kv["images/s"]) > float(row[cell]["images/s"]):
            row[cell] = kv
        row[cell]["cpu_min"] = cpu_min
targets = [t for t in ("tensorrt", "tnn", "fbgemm")
           if any(("qat", t) in r for r in rows.values())]
def ips(r, k):
    return float(r[k]["images/s"]) if k in r else float("nan")
def cpu(r, k):  # the least CPU time of all runs of the cell
    return r[k]["cpu_min"] if k in r else float("nan")
print("| model | input, batch | threads | qat float | " +
      " | ".join(f"qat {t}" for t in targets) + " | PyTorch float | PyTorch fbgemm QAT | " +
      " | ".join(f"qat {t} / PyTorch QAT" for t in targets) + " | " +
      " | ".join(f"qat {t} QAT/float cost" for t in targets) + " | PyTorch QAT/float cost |")
print("|---" * (6 + 3 * len(targets)) + "|")
for (model, shape, batch, threads), r in rows.items():
    qf, pf, pq = ips(r, ("qat", "float")), ips(r, ("pytorch", "float")), ips(r, ("pytorch", "fbgemm"))
    q = [ips(r, ("qat", t)) for t in targets]
    print(f"| {model} | {shape}, {batch} | {threads} | {qf:.1f} | " +
          " | ".join(f"{v:.1f}" for v in q) + f" | {pf:.1f} | {pq:.1f} | " +
          " | ".join(f"{v / pq:.2f}" for v in q) + " | " +
          " | ".join(f"{qf / v:.2f}" for v in q) + f" | {pf / pq:.2f} |")
print()
print("CPU seconds per step, 1-thread rows (process CPU time, the least of all runs; other load "
      "changes it far less than the wall time):")
print()
print("| model | input, batch | threads | qat float | " +
      " | ".join(f"qat {t}" for t in targets) + " | PyTorch float | PyTorch fbgemm QAT | " +
      " | ".join(f"qat {t} / PyTorch QAT, by CPU" for t in targets) + " | " +
      " | ".join(f"qat {t} QAT/float CPU" for t in targets) + " | PyTorch QAT/float CPU |")
print("|---" * (6 + 3 * len(targets)) + "|")
for (model, shape, batch, threads), r in rows.items():
    if threads != "1":
        continue
    qf, pf, pq = cpu(r, ("qat", "float")), cpu(r, ("pytorch", "float")), cpu(r, ("pytorch", "fbgemm"))
    q = [cpu(r, ("qat", t)) for t in targets]
    print(f"| {model} | {shape}, {batch} | {threads} | {qf:.3f} | " +
          " | ".join(f"{v:.3f}" for v in q) + f" | {pf:.3f} | {pq:.3f} | " +
          " | ".join(f"{pq / v:.2f}" for v in q) + " | " +
          " | ".join(f"{v / qf:.2f}" for v in q) + f" | {pq / pf:.2f} |")
PY
