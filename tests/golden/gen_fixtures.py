#!/usr/bin/python3
"""Golden fixtures: PyTorch 1.13 reference values for qat's ops and optimizers.

Regenerate (only when a fixture is added or changed; review the diff and commit the files):

    cd /work/main && /usr/bin/python3 tests/golden/gen_fixtures.py

Use /usr/bin/python3 (Debian's python3-torch 1.13): the python3 first on PATH may lack torch.
Neither Bazel nor CI runs this script: tests/golden_ops_test.cc and tests/golden_optim_test.cc
only read the committed tests/data/*.safetensors. Output is deterministic (fixed seeds, fixed
insertion order), so rerunning it on the same torch version rewrites identical bytes.

What is stored, per fixture file (names are "<case>.<tensor>"):
  conv2d.safetensors      x, weight, bias (absent when bias=False), dy -> y, dx, dweight, dbias,
                          config = [SH, SW, PH, PW, DH, DW, groups]
  batch_norm.safetensors  train/train2d: x, weight, bias, dy -> y, dx, dweight, dbias, and the
                          running stats before (.0) and after each of 3 training calls
                          (x, x1, x2; momentum 0.1, eps 1e-5); eval: x, weight, bias, dy and
                          fixed running stats -> y, dx, dweight, dbias
  pool.safetensors        max.*: x, dy -> y, dx, config = [KH, KW, SH, SW, PH, PW, DH, DW, ceil]
                          avg.*: x, dy -> y, dx, config = [KH, KW, SH, SW, PH, PW, ceil, cip]
                          adaptive.*: x, dy -> y, dx, config = [OH, OW]
  linear.safetensors      x, weight, bias (optional), dy -> y, dx, dweight, dbias
  loss.safetensors        cross_entropy.*: logits, targets (int64), config = [label_smoothing * 10]
                          -> loss (0-d), dlogits (upstream gradient 1)
                          log_softmax.*: x, dy, config = [dim] -> y, dx
  optim.safetensors       param.<p> (initial values), grad.<p>.<k> for steps k = 0..4, and
                          <optimizer>.<p>.<k> = the parameter after step k (p.grad = grad.<p>.<k>,
                          then optimizer.step()); hyperparameters are in OPTIMIZERS below.

Precision: inputs are drawn in float32 and stored in float32. The reference outputs are computed
by PyTorch in float64 from those exact float32 values and rounded to float32, so a fixture holds
the correctly rounded answer and a float32 implementation's tolerance budget is its own rounding
only. As a check that the C++ tolerances (TOLERANCES, mirrored in the tests) are realistic, every
fixture is also recomputed by PyTorch in float32 and must pass them; the script fails otherwise.
"""

import collections
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from safetensors_io import write_safetensors  # noqa: E402  (tools/safetensors_io.py)

# (rtol, atol) per family, as used by the C++ tests: |qat - ref| <= atol + rtol * |ref|.
TOLERANCES = {
    "conv2d": (1e-5, 1e-5),
    "batch_norm": (1e-5, 1e-5),
    "pool": (1e-5, 1e-6),
    "linear": (1e-5, 1e-5),
    "loss": (1e-5, 1e-6),
    "optim": (1e-6, 1e-6),
}

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")

class Fixture:
    """Collects one file's tensors and checks PyTorch's float32 results against the reference."""

    def __init__(self, family):
        self.family = family
        self.tensors = collections.OrderedDict()
        self.worst = (0.0, "")  # (largest |diff| / (atol + rtol |ref|), name)

    def put(self, name, t):
        assert name not in self.tensors, name
        if t.is_floating_point():
            t = t.to(torch.float32)
        self.tensors[name] = t.detach().clone()

    def put_checked(self, name, ref64, torch32):
        """Stores the float64 reference rounded to float32, after checking that PyTorch's own
        float32 computation is within the tolerance the C++ test uses."""
        rtol, atol = TOLERANCES[self.family]
        ref = ref64.detach().to(torch.float32)
        ratio = ((torch32.detach().double() - ref.double()).abs() /
                 (atol + rtol * ref.double().abs())).max().item()
        if ratio > self.worst[0]:
            self.worst = (ratio, name)
        if ratio > 1.0:
            sys.exit(f"{self.family}: torch float32 misses the tolerance on {name} "
                     f"(ratio {ratio:.3g}); the C++ tolerance would be unrealistic")
        self.put(name, ref)

    def save(self):
        path = os.path.join(OUT_DIR, self.family + ".safetensors")
        write_safetensors(path, self.tensors)
        print(f"{os.path.relpath(path)}: {len(self.tensors)} tensors, {os.path.getsize(path)} "
              f"bytes; torch float32 uses {self.worst[0]:.2f} of the tolerance "
              f"(worst: {self.worst[1]})")


def run(fn, inputs, dy, dtype):
    """Returns (y, grads) of fn(*inputs) in `dtype`, with grads[i] = d<y, dy>/d inputs[i] for
    each floating input (None for the others)."""
    xs = [t.detach().to(dtype).clone().requires_grad_()
          if t is not None and t.is_floating_point() else t for t in inputs]
    y = fn(*xs)
    diff = [x for x in xs if x is not None and x.requires_grad]
    g = torch.autograd.grad(y, diff, None if dy is None else dy.to(dtype))
    it = iter(g)
    grads = [next(it) if x is not None and x.requires_grad else None for x in xs]
    return y, grads


def forward_backward(fix, case, fn, named_inputs, dy, grad_names, out_name="y"):
    """Stores the inputs, dy and the checked reference of the output and of each gradient.
    named_inputs: [(name, tensor or None)]; grad_names: names of the gradients, in input order
    (None to skip an input)."""
    inputs = [t for _, t in named_inputs]
    for name, t in named_inputs:
        if t is not None:
            fix.put(f"{case}.{name}", t)
    if dy is not None:
        fix.put(f"{case}.dy", dy)
    y64, g64 = run(fn, inputs, dy, torch.float64)
    y32, g32 = run(fn, inputs, dy, torch.float32)
    fix.put_checked(f"{case}.{out_name}", y64, y32)
    for grad_name, a, b in zip(grad_names, g64, g32):
        if grad_name is not None and a is not None:
            fix.put_checked(f"{case}.{grad_name}", a, b)


def randn(*shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale + shift).to(torch.float32)


def config(*values):
    return torch.tensor(values, dtype=torch.int64)


# --------------------------------------------------------------------------- conv2d

# name, N, C, OC, H, W, kernel, stride, padding, dilation, groups, bias
CONV_CASES = [
    ("stride2_pad1", 2, 3, 4, 7, 7, (3, 3), (2, 2), (1, 1), (1, 1), 1, True),
    ("dilation2", 2, 3, 4, 8, 8, (3, 3), (1, 1), (2, 2), (2, 2), 1, True),
    ("groups2", 2, 4, 6, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 2, True),
    ("depthwise", 2, 4, 4, 7, 7, (3, 3), (2, 2), (1, 1), (1, 1), 4, True),
    ("pointwise", 2, 5, 3, 5, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
    ("pointwise_stride2_no_bias", 2, 4, 6, 6, 6, (1, 1), (2, 2), (0, 0), (1, 1), 1, False),
    ("no_bias", 2, 3, 4, 5, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),
    ("asymmetric", 1, 2, 3, 6, 5, (3, 1), (1, 2), (1, 0), (1, 1), 1, True),
    ("stem7x7", 1, 3, 4, 11, 11, (7, 7), (2, 2), (3, 3), (1, 1), 1, True),
]


def gen_conv2d():
    torch.manual_seed(1)
    fix = Fixture("conv2d")
    for name, n, c, oc, h, w, k, s, p, d, g, has_bias in CONV_CASES:
        x = randn(n, c, h, w)
        weight = randn(oc, c // g, *k, scale=0.5)
        bias = randn(oc) if has_bias else None

        def fn(x, weight, bias, s=s, p=p, d=d, g=g):
            return F.conv2d(x, weight, bias, stride=s, padding=p, dilation=d, groups=g)

        with torch.no_grad():
            dy = randn(*fn(x, weight, bias).shape)
        forward_backward(fix, name, fn, [("x", x), ("weight", weight), ("bias", bias)], dy,
                         ["dx", "dweight", "dbias"])
        fix.put(f"{name}.config", config(*s, *p, *d, g))
    fix.save()


# --------------------------------------------------------------------------- batch_norm

def gen_batch_norm():
    torch.manual_seed(2)
    fix = Fixture("batch_norm")
    momentum, eps = 0.1, 1e-5
    # Training: three successive calls on x, x1, x2 update the running stats; y and the
    # gradients come from the first call. Running stats start at nn.BatchNorm2d's defaults.
    for case, shape in [("train", (4, 3, 5, 5)), ("train2d", (8, 5))]:
        c = shape[1]
        xs = [randn(*shape, scale=2.0, shift=0.5) for _ in range(3)]
        weight, bias = randn(c, scale=0.5, shift=1.0), randn(c, scale=0.5)
        dy = randn(*shape)
        for name, t in [("x", xs[0]), ("x1", xs[1]), ("x2", xs[2]), ("weight", weight),
                        ("bias", bias), ("dy", dy)]:
            fix.put(f"{case}.{name}", t)
        stats = {}
        for dtype in (torch.float64, torch.float32):
            rm, rv = torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype)
            if dtype == torch.float64:
                fix.put(f"{case}.running_mean.0", rm)
                fix.put(f"{case}.running_var.0", rv)

            def fn(x, weight, bias, rm=rm, rv=rv):
                return F.batch_norm(x, rm, rv, weight, bias, True, momentum, eps)

            out = run(fn, [xs[0], weight, bias], dy, dtype)
            history = [(rm.clone(), rv.clone())]
            with torch.no_grad():
                for x in xs[1:]:
                    F.batch_norm(x.to(dtype), rm, rv, weight.to(dtype), bias.to(dtype), True,
                                 momentum, eps)
                    history.append((rm.clone(), rv.clone()))
            stats[dtype] = (out, history)
        (y64, g64), h64 = stats[torch.float64]
        (y32, g32), h32 = stats[torch.float32]
        fix.put_checked(f"{case}.y", y64, y32)
        for name, a, b in zip(["dx", "dweight", "dbias"], g64, g32):
            fix.put_checked(f"{case}.{name}", a, b)
        for i in range(3):
            fix.put_checked(f"{case}.running_mean.{i + 1}", h64[i][0], h32[i][0])
            fix.put_checked(f"{case}.running_var.{i + 1}", h64[i][1], h32[i][1])

    # Eval: normalizes with fixed running stats, which stay unchanged.
    shape, c = (2, 3, 4, 4), 3
    x = randn(*shape, scale=2.0, shift=0.5)
    rm, rv = randn(c, scale=0.5), (torch.rand(c) * 2 + 0.5).to(torch.float32)
    weight, bias = randn(c, scale=0.5, shift=1.0), randn(c, scale=0.5)
    dy = randn(*shape)
    fix.put("eval.running_mean", rm)
    fix.put("eval.running_var", rv)

    def fn_eval(x, weight, bias):
        return F.batch_norm(x, rm.to(x.dtype), rv.to(x.dtype), weight, bias, False, momentum, eps)

    forward_backward(fix, "eval", fn_eval, [("x", x), ("weight", weight), ("bias", bias)], dy,
                     ["dx", "dweight", "dbias"])
    fix.save()


# --------------------------------------------------------------------------- pooling

# name, (N, C, H, W), kernel, stride, padding, dilation, ceil_mode
MAX_POOL_CASES = [
    ("k3_s2_p1", (2, 3, 7, 7), (3, 3), (2, 2), (1, 1), (1, 1), False),
    ("k3_s2_ceil", (2, 3, 8, 8), (3, 3), (2, 2), (0, 0), (1, 1), True),  # ceil adds a window
    ("k3_s2_p1_ceil", (2, 3, 8, 8), (3, 3), (2, 2), (1, 1), (1, 1), True),
    # ceil_mode's last window would start in the right padding, so PyTorch drops it.
    ("k2_s3_p1_ceil_drop", (2, 3, 4, 4), (2, 2), (3, 3), (1, 1), (1, 1), True),
    ("k3_s1_p1_d2", (2, 3, 7, 7), (3, 3), (1, 1), (1, 1), (2, 2), False),
    ("k2_default_stride", (2, 3, 6, 6), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ("nonsquare", (1, 2, 7, 6), (3, 2), (2, 1), (1, 0), (1, 1), False),
]

# name, (N, C, H, W), kernel, stride, padding, ceil_mode, count_include_pad
AVG_POOL_CASES = [
    ("k3_s2_p1_cip", (2, 3, 7, 7), (3, 3), (2, 2), (1, 1), False, True),
    ("k3_s2_p1_nocip", (2, 3, 7, 7), (3, 3), (2, 2), (1, 1), False, False),
    ("k3_s2_p1_ceil_cip", (2, 3, 8, 8), (3, 3), (2, 2), (1, 1), True, True),
    ("k3_s2_p1_ceil_nocip", (2, 3, 8, 8), (3, 3), (2, 2), (1, 1), True, False),
    ("k3_s2_ceil_cip", (2, 3, 8, 8), (3, 3), (2, 2), (0, 0), True, True),
    ("k2_s3_p1_ceil_drop_cip", (2, 3, 4, 4), (2, 2), (3, 3), (1, 1), True, True),
    ("k2_default_stride", (2, 3, 6, 6), (2, 2), (2, 2), (0, 0), False, True),
    ("nonsquare_nocip", (1, 2, 7, 6), (3, 2), (2, 1), (1, 1), False, False),
]

# name, (N, C, H, W), output_size
ADAPTIVE_CASES = [
    ("7x5_to_3x2", (2, 3, 7, 5), (3, 2)),
    ("5x7_to_4x3", (2, 3, 5, 7), (4, 3)),
    ("3x3_to_5x5", (1, 2, 3, 3), (5, 5)),  # output larger than input: overlapping bins
    ("global", (2, 3, 6, 6), (1, 1)),
]


def gen_pool():
    torch.manual_seed(3)
    fix = Fixture("pool")
    for name, shape, k, s, p, d, ceil in MAX_POOL_CASES:
        x = randn(*shape)

        def fn(x, k=k, s=s, p=p, d=d, ceil=ceil):
            return F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)

        dy = randn(*fn(x).shape)
        forward_backward(fix, f"max.{name}", fn, [("x", x)], dy, ["dx"])
        fix.put(f"max.{name}.config", config(*k, *s, *p, *d, int(ceil)))
    for name, shape, k, s, p, ceil, cip in AVG_POOL_CASES:
        x = randn(*shape)

        def fn(x, k=k, s=s, p=p, ceil=ceil, cip=cip):
            return F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip)

        dy = randn(*fn(x).shape)
        forward_backward(fix, f"avg.{name}", fn, [("x", x)], dy, ["dx"])
        fix.put(f"avg.{name}.config", config(*k, *s, *p, int(ceil), int(cip)))
    for name, shape, out in ADAPTIVE_CASES:
        x = randn(*shape)

        def fn(x, out=out):
            return F.adaptive_avg_pool2d(x, out)

        dy = randn(*fn(x).shape)
        forward_backward(fix, f"adaptive.{name}", fn, [("x", x)], dy, ["dx"])
        fix.put(f"adaptive.{name}.config", config(*out))
    fix.save()


# --------------------------------------------------------------------------- linear

# name, N, K, M, bias
LINEAR_CASES = [
    ("basic", 4, 6, 5, True),
    ("no_bias", 3, 4, 2, False),
    ("wide", 3, 40, 7, True),
]


def gen_linear():
    torch.manual_seed(4)
    fix = Fixture("linear")
    for name, n, k, m, has_bias in LINEAR_CASES:
        x, weight = randn(n, k), randn(m, k, scale=0.5)
        bias = randn(m) if has_bias else None
        dy = randn(n, m)
        forward_backward(fix, name, F.linear, [("x", x), ("weight", weight), ("bias", bias)], dy,
                         ["dx", "dweight", "dbias"])
    fix.save()


# --------------------------------------------------------------------------- losses

# name, N, C, label_smoothing
CROSS_ENTROPY_CASES = [
    ("plain", 6, 5, 0.0),
    ("smoothing", 6, 5, 0.1),
    ("plain_10class", 4, 10, 0.0),
    ("smoothing_10class", 4, 10, 0.1),
]

# name, shape, dim, scale, shift
LOG_SOFTMAX_CASES = [
    ("dim1", (4, 7), 1, 3.0, 0.0),
    ("dim1_3d", (3, 4, 5), 1, 3.0, 0.0),
    ("dim0", (5, 3), 0, 3.0, 0.0),
    ("large_logits", (4, 7), -1, 10.0, 50.0),  # needs the max subtraction
]


def gen_loss():
    torch.manual_seed(5)
    fix = Fixture("loss")
    for name, n, c, ls in CROSS_ENTROPY_CASES:
        logits = randn(n, c, scale=2.0)
        targets = torch.randint(0, c, (n,), dtype=torch.int64)
        fix.put(f"cross_entropy.{name}.targets", targets)
        fix.put(f"cross_entropy.{name}.config", config(round(ls * 10)))

        def fn(logits, ls=ls, targets=targets):
            return F.cross_entropy(logits, targets, label_smoothing=ls)

        forward_backward(fix, f"cross_entropy.{name}", fn, [("logits", logits)], None,
                         ["dlogits"], out_name="loss")
    for name, shape, dim, scale, shift in LOG_SOFTMAX_CASES:
        x = randn(*shape, scale=scale, shift=shift)
        dy = randn(*shape)

        def fn(x, dim=dim):
            return F.log_softmax(x, dim)

        forward_backward(fix, f"log_softmax.{name}", fn, [("x", x)], dy, ["dx"])
        fix.put(f"log_softmax.{name}.config", config(dim))
    fix.save()


# --------------------------------------------------------------------------- optimizers

# A tiny conv + linear model's parameters.
OPTIM_PARAMS = [
    ("conv.weight", (4, 3, 3, 3)),
    ("conv.bias", (4,)),
    ("fc.weight", (5, 4)),
    ("fc.bias", (5,)),
]
OPTIM_STEPS = 5

OPTIMIZERS = [
    ("sgd_nesterov", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                weight_decay=1e-4)),
    ("sgd_dampening", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1)),
    ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-4)),
    ("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2)),
]


def gen_optim():
    torch.manual_seed(6)
    fix = Fixture("optim")
    init = {name: randn(*shape, scale=0.5) for name, shape in OPTIM_PARAMS}
    grads = {name: [randn(*shape) for _ in range(OPTIM_STEPS)] for name, shape in OPTIM_PARAMS}
    for name, _ in OPTIM_PARAMS:
        fix.put(f"param.{name}", init[name])
    for name, _ in OPTIM_PARAMS:
        for k in range(OPTIM_STEPS):
            fix.put(f"grad.{name}.{k}", grads[name][k])
    for opt_name, make in OPTIMIZERS:
        history = {}
        for dtype in (torch.float64, torch.float32):
            params = [init[name].to(dtype).clone().requires_grad_() for name, _ in OPTIM_PARAMS]
            opt = make(params)
            history[dtype] = []
            for k in range(OPTIM_STEPS):
                for p, (name, _) in zip(params, OPTIM_PARAMS):
                    p.grad = grads[name][k].to(dtype)
                opt.step()
                history[dtype].append([p.detach().clone() for p in params])
        for k in range(OPTIM_STEPS):
            for i, (name, _) in enumerate(OPTIM_PARAMS):
                fix.put_checked(f"{opt_name}.{name}.{k}", history[torch.float64][k][i],
                                history[torch.float32][k][i])
    fix.save()


def main():
    assert torch.__version__.startswith("1.13"), f"expected torch 1.13, got {torch.__version__}"
    torch.set_num_threads(1)  # fixed reduction order for the float32 check
    os.makedirs(OUT_DIR, exist_ok=True)
    gen_conv2d()
    gen_batch_norm()
    gen_pool()
    gen_linear()
    gen_loss()
    gen_optim()


if __name__ == "__main__":
    main()
