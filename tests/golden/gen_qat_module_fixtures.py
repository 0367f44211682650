#!/usr/bin/python3
"""Golden fixtures for qat's fused QAT modules: PyTorch 1.13 ConvBn2d / ConvBnReLU2d.

Regenerate (only when a case changes; review the diff and commit the files):

    cd /work/main && /usr/bin/python3 tests/golden/gen_qat_module_fixtures.py

Use /usr/bin/python3 (Debian's python3-torch 1.13). Neither Bazel nor CI runs this script:
tests/golden_qat_modules_test.cc only reads the committed tests/data/qat_*.safetensors.
Output is deterministic (fixed seeds, one thread, fixed insertion order).

One file per PyTorch backend qconfig, `get_default_qat_qconfig(backend, version=0)` (plain
FakeQuantize modules, the version qat's presets reproduce):
    tests/data/qat_conv_bn_fbgemm.safetensors, tests/data/qat_conv_bn_qnnpack.safetensors

Each file holds the cases in CASES: torch.nn.intrinsic.qat.ConvBn2d / ConvBnReLU2d built with
from_float(), followed by the output FakeQuantize (qconfig.activation()) that eager prepare_qat
attaches as `activation_post_process`. Every case runs the same schedule (SCHEDULE):
  train  - training mode: BN uses batch statistics and updates its running stats, observers on;
  frozen - after freeze_bn_stats(): BN normalizes with the running stats, observers on;
  eval   - after eval() (observers still on: PyTorch observes in eval mode too);
  eval_no_observer - after apply(disable_observer): fixed scales, forward only.
Names are "<case>.<step>.<tensor>":
  inputs of step k: x, dy (train/frozen steps), and the float parameters the step starts from:
    weight, bias (if the conv has one), bn_weight, bn_bias (set by plain SGD between steps,
    lr = LR, so that the observers see changing weights; the C++ test copies them in rather
    than re-deriving them, so each step is checked on PyTorch's exact inputs)
  outputs of step k: y; for train/frozen steps the gradients of sum(y * dy): dx, dweight,
    dbias, dbn_weight, dbn_bias
  state after step k: running_mean, running_var, weight_scale, weight_zero_point,
    weight_min_val, weight_max_val (the weight observer), act_scale, act_zero_point,
    act_min_val, act_max_val (the output observer)
  "<case>.init.running_mean" / "running_var": BN running stats before step 0;
  "<case>.config": [in_channels, out_channels, kernel, stride, padding, bias, relu].
Zero points are stored as int64. All values are PyTorch's own float32 results: fake quantization
has no float64 twin, so the C++ test budgets accumulation-order differences, including rare
one-step rounding flips (see golden_qat_modules_test.cc).
"""

import collections
import os
import sys
import warnings

import torch
import torch.nn.intrinsic as nni
import torch.nn.intrinsic.qat as nniqat
import torch.nn as nn
from torch.ao.quantization import disable_observer, get_default_qat_qconfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from safetensors_io import write_safetensors  # noqa: E402  (tools/safetensors_io.py)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")

BACKENDS = ["fbgemm", "qnnpack"]

# name, (N, C, H, W), out_channels, kernel, stride, padding, conv bias, relu
CASES = [
    ("conv_bn", (2, 3, 5, 5), 4, 3, 1, 1, False, False),
    ("conv_bn_relu", (2, 3, 6, 6), 4, 3, 2, 1, True, True),
]

SCHEDULE = ["train", "train", "train", "frozen", "frozen", "eval", "eval_no_observer"]

LR = 0.05


def randn(*shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape) * scale + shift).to(torch.float32)


def make_module(qconfig, c, oc, k, stride, padding, bias, relu):
    """The QAT module exactly as eager prepare_qat builds it from a fused float module."""
    conv = nn.Conv2d(c, oc, k, stride=stride, padding=padding, bias=bias)
    bn = nn.BatchNorm2d(oc)
    with torch.no_grad():
        # Non-default running stats, so that the first step's weight scaling is not ~identity.
        bn.running_mean.copy_(randn(oc, scale=0.2))
        bn.running_var.copy_(torch.rand(oc) + 0.5)
    fused = nni.ConvBnReLU2d(conv, bn, nn.ReLU()) if relu else nni.ConvBn2d(conv, bn)
    fused.qconfig = qconfig
    qat_cls = nniqat.ConvBnReLU2d if relu else nniqat.ConvBn2d
    return qat_cls.from_float(fused), qconfig.activation()


def put_state(out, prefix, module, act_fq):
    wfq = module.weight_fake_quant
    values = [
        ("running_mean", module.bn.running_mean), ("running_var", module.bn.running_var),
        ("weight_scale", wfq.scale), ("weight_zero_point", wfq.zero_point),
        ("weight_min_val", wfq.activation_post_process.min_val),
        ("weight_max_val", wfq.activation_post_process.max_val),
        ("act_scale", act_fq.scale), ("act_zero_point", act_fq.zero_point),
        ("act_min_val", act_fq.activation_post_process.min_val),
        ("act_max_val", act_fq.activation_post_process.max_val),
    ]
    for name, t in values:
        t = t.detach().clone()
        out[f"{prefix}.{name}"] = t.to(torch.int64) if name.endswith("zero_point") else t


def gen_case(out, qconfig, case):
    name, (n, c, h, w), oc, k, stride, padding, bias, relu = case
    module, act_fq = make_module(qconfig, c, oc, k, stride, padding, bias, relu)
    params = [("weight", module.weight), ("bn_weight", module.bn.weight),
              ("bn_bias", module.bn.bias)]
    if bias:
        params.insert(1, ("bias", module.bias))
    with torch.no_grad():
        module.bn.weight.copy_(randn(oc, scale=0.3, shift=1.0))
        module.bn.bias.copy_(randn(oc, scale=0.3))
    out[f"{name}.config"] = torch.tensor([c, oc, k, stride, padding, int(bias), int(relu)])
    out[f"{name}.init.running_mean"] = module.bn.running_mean.detach().clone()
    out[f"{name}.init.running_var"] = module.bn.running_var.detach().clone()

    for step, phase in enumerate(SCHEDULE):
        if phase == "frozen" and not module.freeze_bn:
            module.freeze_bn_stats()
        elif phase == "eval":
            module.eval()
            act_fq.eval()
        elif phase == "eval_no_observer":
            module.apply(disable_observer)
            act_fq.apply(disable_observer)
        prefix = f"{name}.{step}"
        for pname, p in params:
            out[f"{prefix}.{pname}"] = p.detach().clone()
        x = randn(n, c, h, w, scale=1.5).requires_grad_(phase in ("train", "frozen"))
        out[f"{prefix}.x"] = x.detach().clone()
        y = act_fq(module(x))
        out[f"{prefix}.y"] = y.detach().clone()
        if x.requires_grad:
            dy = randn(*y.shape)
            out[f"{prefix}.dy"] = dy
            for _, p in params:
                p.grad = None
            y.backward(dy)
            out[f"{prefix}.dx"] = x.grad.clone()
            for pname, p in params:
                out[f"{prefix}.d{pname}"] = p.grad.clone()
            with torch.no_grad():
                for _, p in params:
                    p.add_(p.grad, alpha=-LR)
        put_state(out, prefix, module, act_fq)


def main():
    assert torch.__version__.startswith("1.13"), f"expected torch 1.13, got {torch.__version__}"
    torch.set_num_threads(1)
    # The fbgemm qconfig passes reduce_range; PyTorch 1.13 warns that it is deprecated.
    warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")
    os.makedirs(OUT_DIR, exist_ok=True)
    for seed, backend in enumerate(BACKENDS):
        torch.manual_seed(100 + seed)
        qconfig = get_default_qat_qconfig(backend, version=0)
        out = collections.OrderedDict()
        for case in CASES:
            gen_case(out, qconfig, case)
        path = os.path.join(OUT_DIR, f"qat_conv_bn_{backend}.safetensors")
        write_safetensors(path, out)
        print(f"{os.path.relpath(path)}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
