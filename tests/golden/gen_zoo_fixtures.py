#!/usr/bin/python3
"""Zoo fixtures: torchvision 0.14 references for qat's model zoo (zoo/*.h).

Regenerate (only when a fixture is added or changed; review the diff and commit the files):

    cd /work/main && /usr/bin/python3 tests/golden/gen_zoo_fixtures.py \
        [--only keys|parity|checkpoint]

Use /usr/bin/python3 (Debian's python3-torch 1.13 / python3-torchvision 0.14). Neither Bazel nor
CI runs this script; the C++ tests only read the committed files in tests/data/. Output is
deterministic: rerunning it with the same torch version rewrites identical bytes.

It writes three kinds of files:

1. Key lists, tests/data/<variant>_keys.txt: one line per torchvision state_dict entry, in
   state_dict order, "<key> <dtype> <shape>", where dtype is the safetensors name (F32 or I64)
   and shape is the comma-separated dims, or "-" for a 0-d tensor:
       conv1.weight F32 64,3,7,7
       bn1.num_batches_tracked I64 -
   Variants (torchvision defaults, 1000 classes): see KEY_VARIANTS. The zoo tests
   (zoo/zoo_test_util.h) compare their models' state_dicts with these lines.

2. Parity fixtures, tests/data/<model>_parity.safetensors, for resnet18, resnet50, mobilenet_v2,
   shufflenet_v2_x1_0 and googlenet (PARITY_CASES: 10 classes, dropout 0 so that a
   training-mode forward is deterministic; googlenet with its aux heads). The weights are not
   stored: both sides fill the model with DETERMINISTIC WEIGHTS (below; C++:
   tests/testing/deterministic_weights.h), and the fixture holds what torchvision computes with
   them on a deterministic input (not stored either):
       input_shape [4] I64                         [2, 3, S, S]; S = 64 (googlenet 112)
       input_checksum [2] F64                      (sum x, sum |x|) of deterministic_input()
       labels [2] I64
       state_checksums [K, 2] F64                  per state_dict entry k: (sum v, sum |v|) of
                                                   the filled values, so that a mismatch in the
                                                   formula is reported by key before any logits
       eval.logits [2, 10]                         model.eval(); model(input)
       train.logits [2, 10], train.loss (0-d)      model.train(); model(input); cross entropy
                                                   (googlenet: + 0.3 * (CE(aux1) + CE(aux2)),
                                                   torchvision's recipe; also train.aux1/aux2)
       train.grad.<param>                          after loss.backward(), for ParityCase.grads
       train.coarse_grad.<param>                   the same, checked coarsely (see COARSE)
       train.<bn>.{running_mean, running_var,      one BN's buffers after that training-mode
                   num_batches_tracked}            forward (momentum 0.1)
   The references are computed by torchvision in float64 from the float32 weights and input and
   rounded to float32; check_conditioning() makes sure they are meaningful at float32.

3. A converted checkpoint, tests/data/shufflenet_v2_x0_5_torchvision.safetensors: a
   torchvision shufflenet_v2_x0_5(num_classes=10) with torchvision's own random init
   (torch.manual_seed(CHECKPOINT_SEED)) and BN running statistics from three training-mode
   forwards on random batches, saved with torch.save(state_dict) and converted by
   tools/torchvision_to_safetensors.py -- the documented user path. Its eval-mode output on a
   fixed random input is in tests/data/shufflenet_v2_x0_5_torchvision_io.safetensors (input
   [2, 3, 64, 64], logits [2, 10]; computed in float64 and rounded to float32).

DETERMINISTIC WEIGHTS (keep in sync with tests/testing/deterministic_weights.h)

  u(stream, i), for stream and element index i (both < 2^32): the splitmix64 finalizer of the
  uint64 z = (stream << 32) | i, mapped to (-1, 1):
      z += 0x9E3779B97F4A7C15
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9      (mod 2^64)
      z = (z ^ (z >> 27)) * 0x94D049BB133111EB      (mod 2^64)
      z ^= z >> 31
      u = ((z >> 40) + 0.5) / 2^24 * 2 - 1          exact in float64
  Entry k of the state_dict (0-based, torchvision order), element i (row-major), is computed in
  float64 from u = u(k, i) and rounded to float32 (int64 for num_batches_tracked):
      num_batches_tracked                              0
      running_mean                                     0.1 u
      running_var                                      1 + 0.5 |u|
      weight with >= 2 dims (conv, linear)             sqrt(3 / fan_in) u,  fan_in = numel / dim0
      weight with 1 dim, of a BatchNorm                1 + 0.1 u
      bias of a BatchNorm                              2 + 0.1 u      (BN_BIAS = 2)
      any other bias (conv, linear)                    0.1 u
  "Of a BatchNorm" means that the state_dict also holds "<same prefix>running_mean". Any other
  entry is an error. The input is deterministic_input(): element i of the [2, 3, S, S] input
  is u(INPUT_STREAM = 1000000, i); the labels are [3, 7].

  Why these numbers. Integer hashing, not a sinusoid like sin(a i + b k): a sinusoid in i makes
  all output channels of a conv combinations of the same two filters. The conv/linear scale
  (variance 1 / fan_in) keeps activations O(1) in eval mode too. The BN bias of 2 matters most.
  A training-mode forward of these deep BN + ReLU nets at a random init is chaotic when half of
  the ReLUs sit at their kink (BN bias 0): perturbing every conv output by 1e-7 of its max moves
  resnet50's logits by ~1e-4 and its gradients by ~3e-2 of their max, so no float32
  implementation (torch's own included) could meet 1e-4 / 1e-3 against a float64 reference.
  With the bias at 2, ~98% of the ReLUs after a BN are open, and the same perturbation moves the
  stored tensors by ~1e-5 of their max or less. Max-pool argmax near-ties remain: they only
  matter for googlenet's early layers (see COARSE).
  check_conditioning() verifies all this for every stored tensor and fails the script
  otherwise: torch's own float32 result and PERTURBATION_TRIALS float64 runs perturbed that way
  must stay within MARGIN of the C++ tolerances (TOLERANCES, mirrored in
  tests/zoo_parity_test.cc).
"""

import argparse
import collections
import copy
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision import models

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

OUT_DIR = os.path.join(ROOT, "tests", "data")

# ----------------------------------------------------------------------- deterministic weights

INPUT_STREAM = 1000000
INPUT_SHAPE = (2, 3, 64, 64)  # googlenet: 112 x 112, see PARITY_CASES
LABELS = [3, 7]

BN_BIAS = 2.0  # center of the BatchNorm biases; see "Conditioning"

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def det_uniform(stream, n):
    """u(stream, i) for i = 0..n-1 (float64 numpy array, values in (-1, 1)); see the header."""
    assert 0 <= stream < 2**32 and n <= 2**32
    z = (np.uint64(stream) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) + 0.5) / 16777216.0 * 2.0 - 1.0


def deterministic_values(key, shape, k, state_keys):
    """The float64 values of state_dict entry k (named `key`, of `shape`), flat."""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    u = det_uniform(k, n)
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[:len(key) - len(leaf)]
    is_bn = prefix + "running_mean" in state_keys
    if leaf == "num_batches_tracked":
        return np.zeros(n)
    if leaf == "running_mean":
        return 0.1 * u
    if leaf == "running_var":
        return 1.0 + 0.5 * np.abs(u)
    if leaf == "weight" and len(shape) >= 2:
        fan_in = n // shape[0]
        return math.sqrt(3.0 / fan_in) * u
    if leaf == "weight" and len(shape) == 1 and is_bn:
        return 1.0 + 0.1 * u
    if leaf == "bias" and is_bn:
        return BN_BIAS + 0.1 * u
    if leaf == "bias":
        return 0.1 * u
    raise ValueError(f"deterministic weights: no rule for state_dict entry '{key}' "
                     f"of shape {list(shape)}")


def fill_deterministic(model):
    """Overwrites every state_dict entry of `model` in place; returns the [K, 2] float64
    checksums (sum v, sum |v|) of the values written."""
    sd = model.state_dict()
    keys = set(sd)
    sums = []
    with torch.no_grad():
        for k, (key, t) in enumerate(sd.items()):
            v = deterministic_values(key, tuple(t.shape), k, keys)
            if t.dtype == torch.int64:
                stored = torch.from_numpy(v.astype(np.int64))
            else:
                assert t.dtype == torch.float32, (key, t.dtype)
                stored = torch.from_numpy(v.astype(np.float32))
            t.copy_(stored.reshape(t.shape))
            as64 = stored.double()
            sums.append([as64.sum().item(), as64.abs().sum().item()])
    return torch.tensor(sums, dtype=torch.float64)


def deterministic_input(shape):
    n = int(np.prod(shape))
    return torch.from_numpy(det_uniform(INPUT_STREAM, n).astype(np.float32)).reshape(shape)


# ---------------------------------------------------------------------------------- key lists

KEY_VARIANTS = [
    ("resnet18", lambda: models.resnet18()),
    ("resnet34", lambda: models.resnet34()),
    ("resnet50", lambda: models.resnet50()),
    ("mobilenet_v2", lambda: models.mobilenet_v2()),
    ("mobilenet_v2_w0_5", lambda: models.mobilenet_v2(width_mult=0.5)),
    ("shufflenet_v2_x0_5", lambda: models.shufflenet_v2_x0_5()),
    ("shufflenet_v2_x1_0", lambda: models.shufflenet_v2_x1_0()),
    ("shufflenet_v2_x1_5", lambda: models.shufflenet_v2_x1_5()),
    ("shufflenet_v2_x2_0", lambda: models.shufflenet_v2_x2_0()),
    ("googlenet", lambda: models.googlenet(aux_logits=True, init_weights=True)),
    ("googlenet_no_aux", lambda: models.googlenet(aux_logits=False, init_weights=True)),
]

_DTYPE_NAMES = {torch.float32: "F32", torch.int64: "I64"}


def key_line(key, t):
    shape = ",".join(str(d) for d in t.shape) if t.dim() else "-"
    return f"{key} {_DTYPE_NAMES[t.dtype]} {shape}"


def gen_keys():
    for name, make in KEY_VARIANTS:
        sd = make().state_dict()
        path = os.path.join(OUT_DIR, name + "_keys.txt")
        with open(path, "w") as f:
            f.write("".join(key_line(k, t) + "\n" for k, t in sd.items()))
        print(f"{os.path.relpath(path, ROOT)}: {len(sd)} entries")


# ---------------------------------------------------------------------------------- parity

NUM_CLASSES = 10

ParityCase = collections.namedtuple("ParityCase", "make input_size grads coarse_grads bn")

# Per model: the constructor (10 classes, dropout 0 so that a training-mode forward is
# deterministic), the input's H = W, the parameters whose gradients are stored (the first conv,
# a BN in the middle, a depthwise or middle conv, the classifier), gradients stored for a
# coarse check only (see COARSE below), and the BN whose buffers are stored after the
# training-mode forward. googlenet runs at 112x112: at 64x64 its inception5 blocks see 2x2
# maps, where the 3x3 branch-4 max-pools and the BN statistics degenerate.
PARITY_CASES = collections.OrderedDict([
    ("resnet18", ParityCase(
        lambda: models.resnet18(num_classes=NUM_CLASSES), 64,
        ["conv1.weight", "layer2.1.bn1.weight", "layer2.1.bn1.bias",
         "layer3.0.downsample.0.weight", "fc.weight", "fc.bias"], [],
        "layer3.0.bn2")),
    ("resnet50", ParityCase(
        lambda: models.resnet50(num_classes=NUM_CLASSES), 64,
        ["conv1.weight", "layer3.2.bn2.weight", "layer3.2.bn2.bias", "layer1.1.conv1.weight",
         "fc.weight", "fc.bias"], [],
        "layer3.2.bn2")),
    ("mobilenet_v2", ParityCase(
        lambda: models.mobilenet_v2(num_classes=NUM_CLASSES, dropout=0.0), 64,
        ["features.0.0.weight", "features.9.conv.1.1.weight", "features.9.conv.1.1.bias",
         "features.9.conv.1.0.weight", "classifier.1.weight", "classifier.1.bias"], [],
        "features.9.conv.1.1")),
    ("shufflenet_v2_x1_0", ParityCase(
        lambda: models.shufflenet_v2_x1_0(num_classes=NUM_CLASSES), 64,
        ["conv1.0.weight", "stage3.3.branch2.1.weight", "stage3.3.branch2.1.bias",
         "stage3.0.branch1.0.weight", "stage3.3.branch2.3.weight", "fc.weight", "fc.bias"], [],
        "stage3.3.branch2.1")),
    ("googlenet", ParityCase(
        lambda: models.googlenet(num_classes=NUM_CLASSES, aux_logits=True, init_weights=False,
                                 dropout=0.0, dropout_aux=0.0), 112,
        ["inception4c.branch2.1.bn.weight", "inception4c.branch2.1.bn.bias",
         "inception5b.branch3.1.conv.weight", "aux1.conv.bn.weight", "aux2.fc2.weight",
         "fc.weight", "fc.bias"],
        ["conv1.conv.weight"],
        "inception4c.branch2.1.bn")),
])

# C++ tolerances (tests/zoo_parity_test.cc): |qat - ref| <= rtol |ref| + floor * max|ref|, with
# the floor relative to the tensor's largest element (elements that cancel to ~0 are compared
# on the tensor's scale).
#
# COARSE: googlenet's first-conv gradient. Its 13 max-pools hold near-ties (at 112x112 one
# window of inception4b's branch-4 pool has its top two values 6e-7 apart, 1e-7 of the
# tensor's max), which any float32 rounding may flip; the flipped argmax sends one gradient
# element elsewhere, and every gradient upstream of that pool moves by ~3e-3 of its max (torch's
# own float32 does this). The stored gradients above are all downstream of such pools or
# insensitive to them (checked below); the first conv is kept with a floor of 3e-2 of the
# tensor's max, which still catches any structural error (those are O(1)).
TOLERANCES = {"logits": (1e-4, 1e-5), "grad": (1e-3, 1e-4), "buffer": (1e-4, 1e-5),
              "coarse_grad": (1e-3, 3e-2)}
# The fixtures must be well conditioned: perturbing float64 runs by PERTURBATION (relative to
# each conv/linear output's largest element, uniformly at random, at every such output) and
# torch's own float32 run must stay within MARGIN of those tolerances.
PERTURBATION = 1e-7
PERTURBATION_TRIALS = 4
MARGIN = 0.25


def input_shape(name):
    size = PARITY_CASES[name].input_size
    return (INPUT_SHAPE[0], INPUT_SHAPE[1], size, size)


def run_model(name, dtype, perturb_seed=None):
    """Builds case `name` in `dtype` with deterministic weights and returns an ordered dict of
    every tensor the fixture stores (reference values in `dtype`), plus the checksums."""
    case = PARITY_CASES[name]
    model = case.make()
    sums = fill_deterministic(model)
    model = model.to(dtype)
    if perturb_seed is not None:
        gen = torch.Generator().manual_seed(perturb_seed)

        def perturb(module, inputs, out):
            noise = 2 * torch.rand(out.shape, generator=gen, dtype=out.dtype) - 1
            return out + PERTURBATION * out.detach().abs().max() * noise

        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.register_forward_hook(perturb)
    x = deterministic_input(input_shape(name)).to(dtype)
    labels = torch.tensor(LABELS, dtype=torch.int64)
    out = collections.OrderedDict()
    model.eval()
    with torch.no_grad():
        out["eval.logits"] = model(x)
    model.train()
    heads = {}
    if name == "googlenet":
        for head in ("aux1", "aux2"):
            getattr(model, head).register_forward_hook(
                lambda module, inputs, output, head=head: heads.__setitem__(head, output))
    y = model(x)
    if name == "googlenet":
        # torchvision 0.14 returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1), but its
        # forward() swaps the names once more: field 1 holds the aux1 head's output, field 2
        # aux2's (checked against the heads' own outputs).
        y, aux1, aux2 = y
        assert aux1 is heads["aux1"] and aux2 is heads["aux2"]
        loss = F.cross_entropy(y, labels) + 0.3 * (F.cross_entropy(aux1, labels) +
                                                   F.cross_entropy(aux2, labels))
        out["train.aux1"] = aux1.detach()
        out["train.aux2"] = aux2.detach()
    else:
        loss = F.cross_entropy(y, labels)
    out["train.logits"] = y.detach()
    out["train.loss"] = loss.detach()
    loss.backward()
    params = dict(model.named_parameters())
    for key in case.grads:
        out[f"train.grad.{key}"] = params[key].grad.detach()
    for key in case.coarse_grads:
        out[f"train.coarse_grad.{key}"] = params[key].grad.detach()
    buffers = dict(model.named_buffers())
    for leaf in ("running_mean", "running_var", "num_batches_tracked"):
        out[f"train.{case.bn}.{leaf}"] = buffers[f"{case.bn}.{leaf}"].detach()
    return out, sums


def tolerance_of(name):
    if name.startswith("train.coarse_grad."):
        return TOLERANCES["coarse_grad"]
    if name.startswith("train.grad."):
        return TOLERANCES["grad"]
    if name.endswith(("running_mean", "running_var")):
        return TOLERANCES["buffer"]
    return TOLERANCES["logits"]


def worst_ratio(got, ref):
    """Largest |got - ref| / (rtol |ref| + floor max|ref|) over the fixture's float tensors,
    and its name."""
    worst = (0.0, "")
    for name, r in ref.items():
        if not r.is_floating_point():
            assert torch.equal(got[name], r), name
            continue
        rtol, floor = tolerance_of(name)
        r = r.double()
        bound = rtol * r.abs() + floor * r.abs().max()
        ratio = ((got[name].double() - r).abs() / bound).max().item()
        worst = max(worst, (ratio, name))
    return worst


def check_conditioning(name, ref, trials):
    got32, _ = run_model(name, torch.float32)
    ratios = [("torch float32", worst_ratio(got32, ref))]
    for seed in range(trials):
        got, _ = run_model(name, torch.float64, perturb_seed=seed)
        ratios.append((f"perturbed #{seed}", worst_ratio(got, ref)))
    text = ", ".join(f"{what} {r:.3f} ({where})" for what, (r, where) in ratios)
    print(f"  {name}: fraction of the tolerance used: {text}")
    bad = [(what, r) for what, r in ratios if r[0] > MARGIN]
    if bad:
        sys.exit(f"{name}: the fixture is ill-conditioned ({bad}); the C++ tolerances would "
                 f"not be met by a correct float32 implementation")


def gen_parity(trials):
    for name in PARITY_CASES:
        ref, sums = run_model(name, torch.float64)
        tensors = collections.OrderedDict()
        x = deterministic_input(input_shape(name)).double()
        tensors["input_shape"] = torch.tensor(input_shape(name), dtype=torch.int64)
        tensors["input_checksum"] = torch.tensor([x.sum().item(), x.abs().sum().item()],
                                                 dtype=torch.float64)
        tensors["labels"] = torch.tensor(LABELS, dtype=torch.int64)
        tensors["state_checksums"] = sums
        for key, t in ref.items():
            tensors[key] = t.to(torch.float32) if t.is_floating_point() else t
        check_conditioning(name, ref, trials)
        path = os.path.join(OUT_DIR, f"{name}_parity.safetensors")
        write_safetensors(path, tensors)
        print(f"{os.path.relpath(path, ROOT)}: {len(tensors)} tensors, "
              f"{os.path.getsize(path)} bytes")


# ---------------------------------------------------------------------- converted checkpoint

CHECKPOINT_ARCH = "shufflenet_v2_x0_5"
CHECKPOINT_SEED = 2024


def gen_checkpoint():
    torch.manual_seed(CHECKPOINT_SEED)
    model = models.shufflenet_v2_x0_5(num_classes=NUM_CLASSES)
    # Non-trivial BN running statistics (and num_batches_tracked = 3).
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    model.eval()
    x = torch.randn(*INPUT_SHAPE)
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(x.double()).float()
    out = os.path.join(OUT_DIR, f"{CHECKPOINT_ARCH}_torchvision.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, f"{CHECKPOINT_ARCH}.pth")
        torch.save(model.state_dict(), pth)
        converter = os.path.join(ROOT, "tools", "torchvision_to_safetensors.py")
        subprocess.run([sys.executable, converter, "--input", pth, "--arch", CHECKPOINT_ARCH,
                        "--num-classes", str(NUM_CLASSES), "--output", out], check=True)
    # The converted file holds exactly the state_dict.
    converted, _ = read_safetensors(out)
    sd = model.state_dict()
    assert list(converted) == list(sd), "converted keys differ from the state_dict"
    for key, t in sd.items():
        assert converted[key].dtype == t.dtype and torch.equal(converted[key], t), key
    io_path = os.path.join(OUT_DIR, f"{CHECKPOINT_ARCH}_torchvision_io.safetensors")
    write_safetensors(io_path, collections.OrderedDict([("input", x), ("logits", logits)]))
    for p in (out, io_path):
        print(f"{os.path.relpath(p, ROOT)}: {os.path.getsize(p)} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["keys", "parity", "checkpoint"],
                        help="write only one kind of fixture")
    parser.add_argument("--parity-models", nargs="+", choices=list(PARITY_CASES),
                        help="with --only parity: these models only")
    parser.add_argument("--trials", type=int, default=PERTURBATION_TRIALS,
                        help="perturbed float64 runs per parity model (conditioning check)")
    args = parser.parse_args()
    assert torch.__version__.startswith("1.13"), f"expected torch 1.13, got {torch.__version__}"
    assert torchvision.__version__.startswith("0.14"), torchvision.__version__
    torch.set_num_threads(1)  # fixed reduction order for the float32 check
    os.makedirs(OUT_DIR, exist_ok=True)
    if args.only in (None, "keys"):
        gen_keys()
    if args.only in (None, "parity"):
        if args.parity_models:
            for name in list(PARITY_CASES):
                if name not in args.parity_models:
                    del PARITY_CASES[name]
        gen_parity(args.trials)
    if args.only in (None, "checkpoint"):
        gen_checkpoint()


if __name__ == "__main__":
    main()
