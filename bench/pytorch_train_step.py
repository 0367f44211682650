#!/usr/bin/python3
"""PyTorch side of bench/train_step_bench: the same small CNN, batch, shapes and optimizer,
timed the same way (warm-up steps, then the mean of timed steps; peak RSS from the kernel).

  /usr/bin/python3 bench/pytorch_train_step.py --threads 2 --batch 64 --steps 50

Needs Debian's python3-torch (tools/install_deps.sh --torch). Prints one line:
  pytorch small_cnn threads=2 batch=64 images/s=... peak_rss_mb=...
"""
import argparse
import resource
import time

import torch
import torch.nn as nn


def small_cnn():
    # Same layers and names as zoo/small_cnn.cc.
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(1, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                         *block(64, 128), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128 * 3 * 3, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = small_cnn().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"pytorch small_cnn threads={args.threads} batch={args.batch} "
          f"images/s={args.batch * args.steps / elapsed:.1f} peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
