#!/usr/bin/python3
"""Golden fixtures for qat's fake quantization and observers: PyTorch 1.13 reference values.

Regenerate (only when a case changes; review the diff and commit the files):

    cd /work/main && /usr/bin/python3 tests/golden/gen_quant_fixtures.py

Use /usr/bin/python3 (Debian's python3-torch 1.13). Neither Bazel nor CI runs this script:
tests/golden_quant_test.cc only reads the committed tests/data/quant_*.safetensors. Output is
deterministic (fixed seeds, one thread, fixed insertion order).

All values are PyTorch's own float32 results: fake quantization is PyTorch's arithmetic
(x * (1/s), round half to even), which qat's RoundingMode::kHalfEvenMul reproduces bit for bit.

tests/data/quant_fake_quant.safetensors, names "<case>.<tensor>":
  per_tensor_<i>:  x, dy, scale [1], zero_point [1] (int32), config = [quant_min, quant_max]
                   -> y = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ...),
                      dx = d(sum(y * dy))/dx
  per_channel_<i>: x, dy, scale [C], zero_point [C], config = [quant_min, quant_max, axis]
                   -> y, dx (torch.fake_quantize_per_channel_affine)
  lsq_tensor_<i>, lsq_channel_<i>: as above plus grad_factor [1] (float32)
                   -> y, dx, dscale (torch._fake_quantize_learnable_per_{tensor,channel}_affine)
  x holds random values, values at the rounding ties and clip bounds of its grid, and values
  where x * (1/s) and x / s round differently (disagreeing_ties).

tests/data/quant_observers.safetensors, names "<case>.<tensor>.<k>" for batches k = 0..4:
  x.<k> (the batch), then the observer state after observing it: min_val.<k>, max_val.<k>,
  scale.<k>, zero_point.<k> (int32) from calculate_qparams(). The observer of each case is in
  OBSERVERS (mirrored in the C++ test).
  fq_<name>.*: torch.ao.quantization.FakeQuantize (version-0 qconfig modules) over the same
  kind of batches: x.<k>, dy.<k> -> y.<k>, dx.<k>, scale.<k>, zero_point.<k>; observer disabled
  from batch 3 on, fake quant disabled at batch 4 (FAKE_QUANTIZE_SCHEDULE).
  __metadata__ "fq_<name>.state_dict_keys": the module's state_dict keys, comma-separated.
"""

import collections
import os
import sys

import numpy as np
import torch
from torch.ao import quantization as tq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from safetensors_io import write_safetensors  # noqa: E402  (tools/safetensors_io.py)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")

# (scale, zero_point, quant_min, quant_max) of the per-tensor fake-quant cases.
PER_TENSOR = [
    (0.1, 0, -128, 127),
    (0.0123, 0, -127, 127),       # TensorRT-style narrow weights
    (0.05, 37, 0, 255),           # quint8 affine
    (0.3, 5, 0, 127),             # fbgemm reduce_range activations
    (2.0 ** -5, -3, -128, 127),   # power-of-two scale: exact ties
]

# (shape, axis, quant_min, quant_max) of the per-channel cases; scales and zero points random.
PER_CHANNEL = [
    ((4, 3, 2, 2), 0, -128, 127),
    ((2, 5, 3), 1, 0, 255),
    ((3, 2, 6), 2, -127, 127),
    ((5, 4), -1, -128, 127),  # torch wants axis >= 0: called with axis % ndim, stored as -1
]

# name -> (observer class, kwargs, batch shape, relu'd batches). Keep in sync with
# tests/golden_quant_test.cc.
OBSERVERS = collections.OrderedDict([
    # fbgemm QAT activations: quint8 [0, 255] with reduce_range -> [0, 127], affine
    ("fbgemm_act", (tq.MovingAverageMinMaxObserver,
                    dict(quant_min=0, quant_max=255, reduce_range=True), (4, 3, 5, 5), False)),
    ("fbgemm_act_relu", (tq.MovingAverageMinMaxObserver,
                         dict(quant_min=0, quant_max=255, reduce_range=True), (4, 3, 5, 5), True)),
    # fbgemm QAT weights: qint8 per-channel symmetric along dim 0
    ("fbgemm_weight", (tq.MovingAveragePerChannelMinMaxObserver,
                       dict(quant_min=-128, quant_max=127, dtype=torch.qint8,
                            qscheme=torch.per_channel_symmetric, reduce_range=False, ch_axis=0),
                       (6, 3, 3, 3), False)),
    # qnnpack QAT activations: quint8 [0, 255] affine
    ("qnnpack_act", (tq.MovingAverageMinMaxObserver,
                     dict(quant_min=0, quant_max=255, reduce_range=False), (4, 3, 5, 5), False)),
    # qnnpack QAT weights: qint8 per-tensor symmetric
    ("qnnpack_weight", (tq.MovingAverageMinMaxObserver,
                        dict(quant_min=-128, quant_max=127, dtype=torch.qint8,
                             qscheme=torch.per_tensor_symmetric, reduce_range=False),
                        (6, 3, 3, 3), False)),
    # the plain min/max observers with the same settings
    ("minmax_fbgemm_act", (tq.MinMaxObserver,
                           dict(quant_min=0, quant_max=255, reduce_range=True), (4, 3, 5, 5),
                           False)),
    ("minmax_qnnpack_weight", (tq.MinMaxObserver,
                               dict(quant_min=-128, quant_max=127, dtype=torch.qint8,
                                    qscheme=torch.per_tensor_symmetric), (6, 3, 3, 3), False)),
    ("perchannel_fbgemm_weight", (tq.PerChannelMinMaxObserver,
                                  dict(quant_min=-128, quant_max=127, dtype=torch.qint8,
                                       qscheme=torch.per_channel_symmetric, ch_axis=0),
                                  (6, 3, 3, 3), False)),
    # defaults and the less common branches
    ("minmax_default", (tq.MinMaxObserver, dict(), (4, 3, 5, 5), False)),
    ("symmetric_quint8", (tq.MovingAverageMinMaxObserver,
                          dict(qscheme=torch.per_tensor_symmetric), (4, 3, 5, 5), True)),
    ("symmetric_quint8_custom", (tq.MinMaxObserver,
                                 dict(qscheme=torch.per_tensor_symmetric, quant_min=0,
                                      quant_max=127), (4, 3, 5, 5), False)),
    ("perchannel_affine_axis1", (tq.MovingAveragePerChannelMinMaxObserver,
                                 dict(ch_axis=1, averaging_constant=0.25), (2, 4, 3, 3), False)),
    ("qint8_reduce_range", (tq.MinMaxObserver,
                            dict(dtype=torch.qint8, reduce_range=True), (4, 3, 5, 5), False)),
])

NUM_BATCHES = 5

# FakeQuantize cases: name -> (version-0 qconfig backend, "activation" | "weight", batch shape).
FAKE_QUANTIZE = collections.OrderedDict([
    ("fq_fbgemm_act", ("fbgemm", "activation", (4, 3, 5, 5))),
    ("fq_fbgemm_weight", ("fbgemm", "weight", (6, 3, 3, 3))),
    ("fq_qnnpack_act", ("qnnpack", "activation", (4, 3, 5, 5))),
    ("fq_qnnpack_weight", ("qnnpack", "weight", (6, 3, 3, 3))),
])
# batch k -> (observer enabled, fake quant enabled)
FAKE_QUANTIZE_SCHEDULE = [(True, True), (True, True), (True, True), (False, True), (False, False)]


def batch(shape, k, gen, relu):
    """Batch k: the distribution drifts with k so the moving averages move, and the magnitude
    grows along dim 0 so that per-channel (weight) ranges differ."""
    x = torch.randn(shape, generator=gen) * (1.0 + 0.4 * k) + 0.15 * k
    x = x * torch.linspace(0.2, 1.5, shape[0]).view(-1, *([1] * (len(shape) - 1)))
    return x.clamp(min=0) if relu else x


def disagreeing_ties(scale, ks, max_ulps=8):
    """float32 values near the ties (k + 0.5) * scale where PyTorch's rint(x * (1/s)) and
    ONNX's rint(x / s) give different integers: the values that tell the rounding modes apart."""
    s = np.float32(scale)
    inv = np.float32(1) / s
    found = []
    for k in ks:
        x = np.float32((k + 0.5) * scale)
        for _ in range(max_ulps):
            x = np.nextafter(x, np.float32(np.inf), dtype=np.float32)
            for v in (x, -x):
                if np.rint(v * inv) != np.rint(v / s):
                    found.append(float(v))
    return found


def grid_values(scale, zero_point, quant_min, quant_max, gen, n_random=40):
    """Random values over (and past) the grid plus values at its ties and clip bounds."""
    lo = (quant_min - zero_point) * scale
    hi = (quant_max - zero_point) * scale
    random = torch.rand(n_random, generator=gen) * (hi - lo) * 1.2 + lo - 0.1 * (hi - lo)
    ks = torch.arange(-3, 4, dtype=torch.float64)
    ties = (ks + 0.5) * scale
    bounds = torch.tensor([lo, hi, lo - 0.5 * scale, hi + 0.5 * scale, lo - 0.51 * scale,
                           hi + 0.51 * scale, lo - 0.49 * scale, hi + 0.49 * scale],
                          dtype=torch.float64)
    disagreeing = torch.tensor(disagreeing_ties(scale, range(0, 40)), dtype=torch.float64)
    return torch.cat([random.double(), ties, bounds, disagreeing]).float()


def put_forward_backward(out, case, fn, x, dy, scale_leaf=None):
    """Stores y = fn(x[, scale_leaf]) and the gradients of sum(y * dy)."""
    x = x.clone().requires_grad_()
    y = fn(x) if scale_leaf is None else fn(x, scale_leaf)
    (y * dy).sum().backward()
    out[f"{case}.y"] = y.detach()
    out[f"{case}.dx"] = x.grad.detach()
    if scale_leaf is not None:
        out[f"{case}.dscale"] = scale_leaf.grad.detach()


def gen_fake_quant():
    out = collections.OrderedDict()
    gen = torch.Generator().manual_seed(0)
    for i, (scale, zp, qmin, qmax) in enumerate(PER_TENSOR):
        case = f"per_tensor_{i}"
        x = grid_values(scale, zp, qmin, qmax, gen)
        dy = torch.randn(x.shape, generator=gen)
        s = torch.tensor([scale], dtype=torch.float32)
        z = torch.tensor([zp], dtype=torch.int32)
        out.update({f"{case}.x": x, f"{case}.dy": dy, f"{case}.scale": s,
                    f"{case}.zero_point": z, f"{case}.config": torch.tensor([qmin, qmax])})
        put_forward_backward(
            out, case, lambda t: torch.fake_quantize_per_tensor_affine(t, s, z, qmin, qmax), x, dy)

    for i, (shape, axis, qmin, qmax) in enumerate(PER_CHANNEL):
        case = f"per_channel_{i}"
        channels = shape[axis]
        s = (torch.rand(channels, generator=gen) * 0.05 + 0.01).float()
        z = (torch.randint(100, 156, (channels,), generator=gen) if qmin == 0
             else torch.zeros(channels)).int()
        x = torch.randn(shape, generator=gen) * 2.0
        dy = torch.randn(shape, generator=gen)
        out.update({f"{case}.x": x, f"{case}.dy": dy, f"{case}.scale": s,
                    f"{case}.zero_point": z, f"{case}.config": torch.tensor([qmin, qmax, axis])})
        put_forward_backward(
            out, case,
            lambda t: torch.fake_quantize_per_channel_affine(t, s, z, axis % len(shape), qmin,
                                                             qmax), x, dy)

    # LSQ. Zero points stay 0 where PyTorch's backward (nearbyint(zp + x / s)) and its forward
    # (zp + nearbyint(x / s)) could round a tie differently; x is random, so no exact ties.
    for i, (scale, zp, qmin, qmax) in enumerate([(0.02, 0, -128, 127), (0.01, 3, 0, 255),
                                                  (0.015, 0, -8, 7)]):
        case = f"lsq_tensor_{i}"
        x = torch.randn(64, generator=gen)
        dy = torch.randn(64, generator=gen)
        grad_factor = 1.0 / (x.numel() * qmax) ** 0.5
        s = torch.tensor([scale], dtype=torch.float32, requires_grad=True)
        z = torch.tensor([float(zp)])
        out.update({f"{case}.x": x, f"{case}.dy": dy, f"{case}.scale": s.detach().clone(),
                    f"{case}.zero_point": z.int(), f"{case}.config": torch.tensor([qmin, qmax]),
                    f"{case}.grad_factor": torch.tensor([grad_factor])})
        put_forward_backward(
            out, case,
            lambda t, sc: torch._fake_quantize_learnable_per_tensor_affine(
                t, sc, z, qmin, qmax, grad_factor), x, dy, s)

    for i, (shape, axis, qmin, qmax) in enumerate([((4, 3, 3, 3), 0, -128, 127),
                                                    ((2, 5, 4), 1, -8, 7)]):
        case = f"lsq_channel_{i}"
        channels = shape[axis]
        x = torch.randn(shape, generator=gen)
        dy = torch.randn(shape, generator=gen)
        grad_factor = 1.0 / (x.numel() * qmax) ** 0.5
        s = (torch.rand(channels, generator=gen) * 0.02 + 0.01).requires_grad_()
        z = torch.zeros(channels)
        out.update({f"{case}.x": x, f"{case}.dy": dy, f"{case}.scale": s.detach().clone(),
                    f"{case}.zero_point": z.int(),
                    f"{case}.config": torch.tensor([qmin, qmax, axis]),
                    f"{case}.grad_factor": torch.tensor([grad_factor])})
        put_forward_backward(
            out, case,
            lambda t, sc: torch._fake_quantize_learnable_per_channel_affine(
                t, sc, z, axis, qmin, qmax, grad_factor), x, dy, s)
    save("quant_fake_quant", out)


def gen_observers():
    out = collections.OrderedDict()
    metadata = collections.OrderedDict()
    gen = torch.Generator().manual_seed(1)
    for name, (cls, kwargs, shape, relu) in OBSERVERS.items():
        obs = cls(**kwargs)
        for k in range(NUM_BATCHES):
            x = batch(shape, k, gen, relu)
            obs(x)
            scale, zero_point = obs.calculate_qparams()
            out[f"{name}.x.{k}"] = x
            out[f"{name}.min_val.{k}"] = obs.min_val.clone()
            out[f"{name}.max_val.{k}"] = obs.max_val.clone()
            out[f"{name}.scale.{k}"] = scale.float()
            out[f"{name}.zero_point.{k}"] = zero_point.int()

    for name, (backend, which, shape) in FAKE_QUANTIZE.items():
        qconfig = tq.get_default_qat_qconfig(backend, version=0)
        fq = getattr(qconfig, which)()
        metadata[f"{name}.state_dict_keys"] = ",".join(fq.state_dict().keys())
        for k, (observe, fake_quant) in enumerate(FAKE_QUANTIZE_SCHEDULE):
            fq.enable_observer(observe)
            fq.enable_fake_quant(fake_quant)
            x = batch(shape, k, gen, relu=False).requires_grad_()
            dy = torch.randn(shape, generator=gen)
            y = fq(x)
            (y * dy).sum().backward()
            out[f"{name}.x.{k}"] = x.detach()
            out[f"{name}.dy.{k}"] = dy
            out[f"{name}.y.{k}"] = y.detach()
            out[f"{name}.dx.{k}"] = x.grad.detach()
            out[f"{name}.scale.{k}"] = fq.scale.clone()
            out[f"{name}.zero_point.{k}"] = fq.zero_point.clone().int()
    save("quant_observers", out, metadata)


def save(family, tensors, metadata=None):
    path = os.path.join(OUT_DIR, family + ".safetensors")
    tensors = collections.OrderedDict(
        (k, v.detach().to(torch.float32) if v.is_floating_point() else v.detach())
        for k, v in tensors.items())
    write_safetensors(path, tensors, metadata)
    print(f"{os.path.relpath(path)}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def main():
    assert torch.__version__.startswith("1.13"), f"expected torch 1.13, got {torch.__version__}"
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    gen_fake_quant()
    gen_observers()


if __name__ == "__main__":
    main()
