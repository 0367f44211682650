#!/usr/bin/python3
"""Converts a torchvision checkpoint to safetensors for qat (a one-off step, not a build step).

qat reads checkpoints as safetensors holding exactly the torchvision state_dict keys, in
state_dict order: num_batches_tracked as I64, everything else as F32. This script writes such a
file from one of:

  --input FILE.pth      a file written by torch.save: a state_dict (the usual case), a full
                        pickled nn.Module, or a training checkpoint dict holding one of those
                        under "state_dict", "model_state_dict" or "model"
  --arch NAME           a freshly built, untrained torchvision.models.NAME
                        (torch.manual_seed(--seed) first, so the weights are reproducible)

Run it with Debian's Python, which has torch 1.13 and torchvision 0.14 (the python3 first on
PATH may lack them):

    /usr/bin/python3 tools/torchvision_to_safetensors.py --input resnet18.pth \
        -o resnet18.safetensors
    /usr/bin/python3 tools/torchvision_to_safetensors.py --input ckpt.pth --arch resnet18 \\
        --num-classes 10 -o resnet18.safetensors        # also checks keys and shapes
    /usr/bin/python3 tools/torchvision_to_safetensors.py --arch shufflenet_v2_x0_5 \\
        --num-classes 10 --seed 0 -o shufflenet.safetensors
    /usr/bin/python3 tools/torchvision_to_safetensors.py --arch mobilenet_v2 \\
        --kwargs '{"width_mult": 0.5}' -o mobilenet_v2_w0_5.safetensors

With --arch and --input together, the checkpoint must match that architecture exactly (same
keys, same shapes); the output then follows the architecture's state_dict order. Keys of a
model saved from nn.DataParallel start with "module."; drop it with --strip-prefix module.
Floating tensors of another precision (F16, BF16, F64) are converted to F32 and listed.

torch.load unpickles the file, which can run arbitrary code: convert only files you trust.

In C++ (see core/serialize.h and nn/module.h):

    auto model = qat::zoo::resnet18(qat::zoo::ResNetOptions().num_classes(10));
    model->load_state_dict(qat::load_safetensors("resnet18.safetensors"));  // strict

Exit status: 0 on success, 1 with an "error: ..." line on any problem.
"""

import argparse
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

# Keys a training checkpoint commonly nests its state_dict under.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


class ConversionError(Exception):
    """A problem with the input, reported as one "error: ..." line."""


def build_arch(arch, num_classes=None, seed=0, kwargs=None):
    """torchvision.models.<arch>(num_classes=..., **kwargs), untrained, after
    torch.manual_seed(seed)."""
    import torchvision.models as tv_models

    known = sorted(tv_models.list_models(module=tv_models))  # classification builders
    if arch not in known:
        raise ConversionError(f"unknown torchvision architecture '{arch}' (torchvision "
                              f"{_torchvision_version()} classification models: "
                              f"{', '.join(known)})")
    builder = tv_models.get_model_builder(arch)
    kwargs = dict(kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if arch.startswith("googlenet") or arch.startswith("inception"):
        kwargs.setdefault("init_weights", True)  # avoids torchvision's FutureWarning
    torch.manual_seed(seed)
    try:
        model = builder(weights=None, **kwargs)
    except TypeError as e:
        raise ConversionError(f"torchvision.models.{arch}({_format_kwargs(kwargs)}): {e}")
    return model


def load_checkpoint(path):
    """The state_dict held by a torch.save file (see the module docstring for what it may be)."""
    if not os.path.isfile(path):
        raise ConversionError(f"cannot open '{path}': no such file")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # unpickling errors come in many types
        raise ConversionError(
            f"torch.load('{path}') failed: {type(e).__name__}: {e}\nHINT: a full pickled model "
            f"needs its class importable here; save model.state_dict() instead")
    return _extract_state_dict(obj, f"'{path}'")


def _extract_state_dict(obj, what):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            return collections.OrderedDict(obj)
        for key in _WRAPPER_KEYS:
            if key in obj and (isinstance(obj[key], torch.nn.Module) or
                               (isinstance(obj[key], dict) and obj[key] and
                                all(torch.is_tensor(v) for v in obj[key].values()))):
                print(f"note: using {what}['{key}']", file=sys.stderr)
                return _extract_state_dict(obj[key], f"{what}['{key}']")
        non_tensor = [k for k, v in obj.items() if not torch.is_tensor(v)]
        raise ConversionError(
            f"{what} holds a dict that is not a state_dict: {len(obj)} entries, non-tensor "
            f"values under {_preview(non_tensor)}; expected a state_dict, an nn.Module, or a "
            f"dict holding one under {' / '.join(repr(k) for k in _WRAPPER_KEYS)}")
    raise ConversionError(f"{what} holds a {type(obj).__module__}.{type(obj).__name__}; "
                          f"expected a state_dict (dict of tensors) or an nn.Module")


def strip_prefix(state_dict, prefix):
    missing = [k for k in state_dict if not k.startswith(prefix)]
    if missing:
        raise ConversionError(f"--strip-prefix '{prefix}': {len(missing)} key(s) do not start "
                              f"with it: {_preview(missing)}")
    return collections.OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())


def match_architecture(state_dict, reference, arch):
    """Checks that state_dict has exactly the keys and shapes of `reference` (a torchvision
    model's state_dict) and returns it in the reference order."""
    missing = [k for k in reference if k not in state_dict]
    unexpected = [k for k in state_dict if k not in reference]
    shapes = [f"{k}: checkpoint {list(state_dict[k].shape)} vs {arch} {list(t.shape)}"
              for k, t in reference.items() if k in state_dict and state_dict[k].shape != t.shape]
    if missing or unexpected or shapes:
        lines = [f"the checkpoint does not match torchvision's {arch}:"]
        if missing:
            lines.append(f"  {len(missing)} missing key(s): {_preview(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s): {_preview(unexpected)}")
        if shapes:
            lines.append(f"  {len(shapes)} shape mismatch(es): {_preview(shapes)}")
        if unexpected and all(k.startswith("module.") for k in state_dict):
            lines.append("HINT: the keys start with 'module.' (nn.DataParallel); add "
                         "--strip-prefix module.")
        elif shapes and all(k.split(".")[0] in ("fc", "classifier") for k in
                            (s.split(":")[0] for s in shapes)):
            lines.append("HINT: only the classifier differs; pass the checkpoint's "
                         "--num-classes")
        raise ConversionError("\n".join(lines))
    return collections.OrderedDict((k, state_dict[k]) for k in reference)


def to_qat_dtypes(state_dict):
    """num_batches_tracked -> int64, floating -> float32; anything else is an error. Returns the
    converted dict and the keys whose precision changed."""
    out = collections.OrderedDict()
    converted = []
    for key, t in state_dict.items():
        if not torch.is_tensor(t):
            raise ConversionError(f"entry '{key}' is a {type(t).__name__}, not a tensor")
        if t.is_quantized or t.is_sparse or t.is_complex():
            raise ConversionError(f"entry '{key}' is a {t.dtype} tensor "
                                  f"({'quantized' if t.is_quantized else t.layout}); qat "
                                  f"checkpoints hold float32 weights. HINT: convert the float "
                                  f"model before torch.ao.quantization.convert")
        if key == "num_batches_tracked" or key.endswith(".num_batches_tracked"):
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.numel() != 1:
                raise ConversionError(f"entry '{key}' should be an integer scalar, got "
                                      f"{t.dtype} of shape {list(t.shape)}")
            out[key] = t.detach().to(torch.int64).reshape(t.shape).clone()
        elif t.dtype.is_floating_point:
            if t.dtype != torch.float32:
                converted.append(f"{key} ({t.dtype})")
            out[key] = t.detach().to(torch.float32).contiguous()
        else:
            raise ConversionError(f"entry '{key}' has dtype {t.dtype}; only floating tensors and "
                                  f"BatchNorm's num_batches_tracked (int64) are expected in a "
                                  f"torchvision state_dict")
    if not out:
        raise ConversionError("the state_dict is empty")
    return out, converted


def save(state_dict, path, metadata):
    """Writes atomically (temporary file, then rename) and verifies by reading back."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConversionError(f"cannot write '{path}': directory '{directory}' does not exist")
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write_safetensors(tmp, state_dict, metadata)
        back, _ = read_safetensors(tmp)
        assert list(back) == list(state_dict), "read-back key order differs"
        for key, t in state_dict.items():
            assert back[key].dtype == t.dtype and torch.equal(back[key], t), key
        os.replace(tmp, path)
    except OSError as e:
        raise ConversionError(f"cannot write '{path}': {e}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert(output, input_path=None, arch=None, num_classes=None, seed=0, kwargs=None,
            prefix=None):
    """The command line's work, callable from Python. Returns the state_dict written."""
    if input_path is None and arch is None:
        raise ConversionError("give --input FILE, --arch NAME, or both")
    reference = build_arch(arch, num_classes, seed, kwargs).state_dict() if arch else None
    if input_path is not None:
        state_dict = load_checkpoint(input_path)
        source = os.path.basename(input_path)
    else:
        state_dict = reference
        built_with = dict(kwargs or {})
        if num_classes is not None:
            built_with["num_classes"] = num_classes
        source = f"torchvision.models.{arch}({_format_kwargs(built_with)}), seed {seed}"
    if prefix:
        state_dict = strip_prefix(state_dict, prefix)
    if reference is not None and input_path is not None:
        state_dict = match_architecture(state_dict, reference, arch)
    state_dict, converted = to_qat_dtypes(state_dict)
    if converted:
        print(f"note: converted to float32: {_preview(converted)}", file=sys.stderr)
    metadata = {
        "format": "pt",
        "source": source,
        "converter": "tools/torchvision_to_safetensors.py",
        "torch": torch.__version__,
        "torchvision": _torchvision_version(),
    }
    if arch:
        metadata["arch"] = arch
    save(state_dict, output, metadata)
    n_buffers = sum(1 for k in state_dict if k.rsplit(".", 1)[-1] in
                    ("running_mean", "running_var", "num_batches_tracked"))
    print(f"wrote {output}: {len(state_dict)} tensors ({len(state_dict) - n_buffers} "
          f"parameters, {n_buffers} BatchNorm buffers), {os.path.getsize(output)} bytes")
    return state_dict


def _torchvision_version():
    try:
        import torchvision
        return torchvision.__version__
    except ImportError:
        return "unavailable"


def _format_kwargs(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _preview(items, limit=8):
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a torchvision state_dict / checkpoint / architecture to "
                    "safetensors with the torchvision keys (see the module docstring).")
    parser.add_argument("--input", "-i", help="a torch.save file (.pth / .pt)")
    parser.add_argument("--arch", help="a torchvision.models builder name, e.g. resnet18: "
                                       "build it untrained, or check --input against it")
    parser.add_argument("--num-classes", type=int, help="num_classes for --arch")
    parser.add_argument("--seed", type=int, default=0,
                        help="torch.manual_seed before building --arch (default 0)")
    parser.add_argument("--kwargs", default="{}",
                        help="more builder arguments for --arch as JSON, e.g. "
                             "'{\"width_mult\": 0.5}' or '{\"aux_logits\": false}'")
    parser.add_argument("--strip-prefix", help="remove this prefix from every key "
                                               "(e.g. 'module.' from nn.DataParallel)")
    parser.add_argument("--output", "-o", required=True, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    try:
        try:
            kwargs = json.loads(args.kwargs)
        except json.JSONDecodeError as e:
            raise ConversionError(f"--kwargs is not valid JSON: {e}")
        if not isinstance(kwargs, dict):
            raise ConversionError("--kwargs must be a JSON object")
        if args.arch is None and (args.num_classes is not None or kwargs):
            raise ConversionError("--num-classes and --kwargs need --arch")
        convert(args.output, args.input, args.arch, args.num_classes, args.seed, kwargs,
                args.strip_prefix)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
