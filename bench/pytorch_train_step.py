#!/usr/bin/python3
"""PyTorch side of bench/train_step_bench: the same network, batch, shapes and optimizer, timed
the same way (warm-up steps, then the mean over timed steps; peak RSS from the kernel).

  /usr/bin/python3 bench/pytorch_train_step.py --model resnet18 --shape 3,224,224 --batch 16
  /usr/bin/python3 bench/pytorch_train_step.py --model resnet18 --shape 1,32,32 --small-input 1
  /usr/bin/python3 bench/pytorch_train_step.py --model resnet18 --shape 3,224,224 --qat fbgemm

--small-input 1 applies the same stem change as qat's small_input option (3x3 stride-1 first conv,
no stem max-pool; see zoo/*.cc). Needs Debian's python3-torch and python3-torchvision
(tools/install_deps.sh --torch).

--qat <backend> times PyTorch 1.13 eager QAT instead, as the PyTorch docs do it: torchvision's
quantizable model (torchvision.models.quantization.<model>(quantize=False)), fuse_model(is_qat=True)
in train mode, qconfig = get_default_qat_qconfig(backend, version=0), prepare_qat. The twin of
train_step_bench --qat (bench/run_qat_bench.sh runs both).

--repeats R times the `--steps` timed steps R times and reports the fastest repeat (the machine is
shared; the fastest repeat is the least disturbed one). Prints one line:
  pytorch resnet18 threads=2 batch=16 shape=3,224,224 images/s=... peak_rss_mb=... cpu_s/step=...
(and target=<backend> with --qat). cpu_s/step is process CPU time per step in the fastest repeat.
"""
import argparse
import resource
import time

import torch
import torch.nn as nn
import torchvision


def small_cnn(num_classes):
    # Same layers as zoo/small_cnn.cc.
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                         nn.Linear(128 * 3 * 3, num_classes))


def conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False)


def build(name, num_classes, in_channels, small_input, qat=False):
    if name == "small_cnn":
        if qat:
            raise SystemExit("pytorch_train_step.py: --qat needs a torchvision quantizable model")
        return small_cnn(num_classes)
    kwargs = {"num_classes": num_classes}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    if qat:
        kwargs.update(quantize=False)
    model = getattr(torchvision.models.quantization if qat else torchvision.models, name)(**kwargs)
    if name.startswith("resnet"):
        model.conv1 = conv3x3(in_channels, 64) if small_input else \
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if small_input:
            model.maxpool = nn.Identity()
    elif name == "mobilenet_v2":
        model.features[0][0] = nn.Conv2d(in_channels, 32, 3, 1 if small_input else 2, 1, bias=False)
    elif name.startswith("shufflenet"):
        out = model.conv1[0].out_channels
        model.conv1[0] = nn.Conv2d(in_channels, out, 3, 1 if small_input else 2, 1, bias=False)
        if small_input:
            model.maxpool = nn.Identity()
    elif name == "googlenet":
        model.conv1.conv = conv3x3(in_channels, 64) if small_input else \
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if small_input:
            model.maxpool1 = nn.Identity()
            model.maxpool2 = nn.Identity()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--shape", default="1,28,28")
    ap.add_argument("--small-input", type=int, default=0)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batches", type=int, default=4,
                    help="distinct random batches, used in turn (step i trains on i %% batches)")
    ap.add_argument("--qat", default="", help="fbgemm, qnnpack, ...: time eager QAT")
    args = ap.parse_args()
    if args.batches < 1:
        ap.error(f"--batches must be positive, got {args.batches}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c, h, w = (int(v) for v in args.shape.split(","))
    model = build(args.model, args.classes, c, bool(args.small_input), bool(args.qat)).train()
    if args.qat:
        # The stem replaced by build() is a plain Conv2d, which fuse_model() fuses like the
        # original one (it fuses by module name).
        model.fuse_model(is_qat=True)
        model.qconfig = torch.ao.quantization.get_default_qat_qconfig(args.qat, version=0)
        torch.ao.quantization.prepare_qat(model, inplace=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    inputs = [torch.randn(args.batch, c, h, w) for _ in range(args.batches)]
    y = torch.arange(args.batch) % args.classes
    step_index = 0

    def step():
        nonlocal step_index
        x = inputs[step_index % len(inputs)]
        step_index += 1
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    best, best_cpu = float("inf"), 0.0
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, best_cpu = elapsed, time.process_time() - start_cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"pytorch {args.model} threads={args.threads} batch={args.batch} shape={args.shape} "
          f"images/s={args.batch * args.steps / best:.2f} peak_rss_mb={peak_mb:.0f} "
          f"cpu_s/step={best_cpu / args.steps:.3f}" + (f" target={args.qat}" if args.qat else ""))


if __name__ == "__main__":
    main()
