#!/usr/bin/python3
"""ONNX Runtime fixtures of core/kernels/mlas_order_ref_test.cc (MLAS float32 summation order).

Regenerate (only when a case changes; paste the printed values into the test and review):

    cd /work/main && QAT_ORT_DIR=/root/.cache/qat-onnxruntime \\
        /usr/bin/python3 tests/golden/gen_mlas_order_fixtures.py [--check]

Needs /usr/bin/python3 (Debian's python3-onnx and numpy), Node 20 and onnxruntime-node 1.31.1
under $QAT_ORT_DIR/node_modules. Neither Bazel nor CI runs this script: the values are embedded
in the test. --check also compares every value (and every case's shape) with the ones in
core/kernels/mlas_order_ref_test.cc and exits 1 on any difference.

For each case the script builds an ONNX model (opset 13, IR 8; one node, plus a Mul for the
reductions), runs it with tests/golden/run_ort_raw.js (CPU provider, graph optimizations
disabled, 1 intra-op thread; the fixtures were taken on x86-64 with AVX512F, and MLAS picks its
kernels by CPU, so another ISA may print other values) and prints ONNX Runtime's output:
  conv_cases():  Conv(x, w, b) with x, w, b graph inputs (as after DequantizeLinear, so ORT does
                 not prepack w) -> FNV-1a 64 of the output's float32 bit patterns (NCHW order),
                 as the test's fnv1a()
  MlasOrderGemm: Gemm(x, w, b, transB = 1), x [N, K], w [M, K], b [M], all graph inputs -> every
                 output as a C++ hex float literal
  MlasOrderReductions: GlobalAveragePool(Mul(x, 1)) and ReduceMean(Mul(x, 1), axes = [2, 3],
                 keepdims = 0) of x [2, 3, 7, 7]; Mul makes x an intermediate tensor, which ORT
                 allocates aligned, as in a real model -> hex float literals
The inputs are the test's x_values / w_values / b_values: ((i * mul) % mod - mod / 2) / denom,
the integer converted to float32 and divided in float32 (sequence() below).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
RUNNER = os.path.join(ROOT, "tests", "golden", "run_ort_raw.js")
TEST_FILE = os.path.join(ROOT, "core", "kernels", "mlas_order_ref_test.cc")
ORT_VERSION = "1.31.1"

# Test name -> Conv2dShape {N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, G}, in the test's order.
CONV_CASES = [
    ("Depthwise", (1, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2)),
    ("Pointwise1x1Spatial", (1, 512, 1, 1, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1)),
    ("SegmentedKBlocks", (1, 16, 12, 12, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1)),
    ("ExpandThenGemm", (1, 64, 4, 4, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1)),
    ("Pointwise", (2, 200, 3, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1)),
    ("FullWidth", (1, 1, 5, 4, 3, 3, 4, 1, 1, 0, 0, 1, 1, 1)),
    ("FullWidthDepthwise", (1, 2, 6, 9, 2, 2, 9, 1, 1, 0, 0, 1, 1, 2)),
    ("FullHeight", (1, 1, 5, 4, 3, 5, 1, 1, 1, 0, 0, 1, 1, 1)),
]

# TEST(MlasOrderGemm, <name>) -> (N, K, M).
GEMM_CASES = [
    ("Batch1EqualsOnnxRuntime", (1, 300, 7)),
    ("KBlocksEqualOnnxRuntime", (3, 2100, 5)),
]

# TEST(MlasOrderReductions, EqualOnnxRuntime): the test's vector name -> ONNX op, on x REDUCE_SHAPE.
REDUCE_SHAPE = (2, 3, 7, 7)
REDUCE_CASES = [("ort_pool", "GlobalAveragePool"), ("ort_mean", "ReduceMean")]


def sequence(n, mul, mod, denom):
    i = np.arange(n, dtype=np.int64)
    return ((i * mul) % mod - mod // 2).astype(np.float32) / np.float32(denom)


def x_values(n):
    return sequence(n, 7919, 2001, 997)


def w_values(n):
    return sequence(n, 104729, 1999, 9973)


def b_values(n):
    return sequence(n, 31, 201, 37)


def fnv1a(y):
    h = 0xCBF29CE484222325
    for bits in np.ascontiguousarray(y, dtype=np.float32).view(np.uint32).ravel().tolist():
        h = ((h ^ bits) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def hex_float(v):
    """A float32 as the shortest C++ hex float literal, e.g. -0x1.274544p+1f."""
    mantissa, exponent = float(np.float32(v)).hex().split("p")
    return mantissa.rstrip("0").rstrip(".") + "p" + exponent + "f"


def save_model(path, nodes, inputs, initializers=()):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
         for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def conv_job(shape):
    N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, G = shape
    inputs = {
        "x": x_values(N * C * H * W).reshape(N, C, H, W),
        "w": w_values(OC * (C // G) * KH * KW).reshape(OC, C // G, KH, KW),
        "b": b_values(OC),
    }
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[KH, KW],
                            strides=[SH, SW], pads=[PH, PW, PH, PW], dilations=[DH, DW], group=G)
    return [node], inputs, ()


def gemm_job(dims):
    N, K, M = dims
    inputs = {
        "x": x_values(N * K).reshape(N, K),
        "w": w_values(M * K).reshape(M, K),
        "b": b_values(M),
    }
    return [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], inputs, ()


def reduce_job(op):
    inputs = {"x": x_values(int(np.prod(REDUCE_SHAPE))).reshape(REDUCE_SHAPE)}
    one = numpy_helper.from_array(np.array(1, np.float32), "one")
    attrs = dict(axes=[2, 3], keepdims=0) if op == "ReduceMean" else {}
    nodes = [helper.make_node("Mul", ["x", "one"], ["t"]),
             helper.make_node(op, ["t"], ["y"], **attrs)]
    return nodes, inputs, [one]


def ort_version():
    ort_dir = os.environ.get("QAT_ORT_DIR")
    if not ort_dir:
        sys.exit("QAT_ORT_DIR is not set (e.g. QAT_ORT_DIR=/root/.cache/qat-onnxruntime)")
    with open(os.path.join(ort_dir, "node_modules", "onnxruntime-node", "package.json")) as f:
        return json.load(f)["version"]


def run_ort(jobs):
    """jobs: {key: (nodes, inputs, initializers)} -> {key: float32 output, flattened}."""
    with tempfile.TemporaryDirectory(prefix="mlas_order_") as tmp:
        spec = []
        for key, (nodes, inputs, initializers) in jobs.items():
            model = os.path.join(tmp, key + ".onnx")
            save_model(model, nodes, inputs, initializers)
            feeds = {}
            for name, value in inputs.items():
                file = os.path.join(tmp, "%s.%s.bin" % (key, name))
                value.astype("<f4").tofile(file)
                feeds[name] = [file, list(value.shape)]
            spec.append(dict(model=model, inputs=feeds, output=os.path.join(tmp, key + ".y")))
        spec_file = os.path.join(tmp, "jobs.json")
        with open(spec_file, "w") as f:
            json.dump(spec, f)
        subprocess.run(["node", RUNNER, spec_file], check=True)
        return {key: np.fromfile(os.path.join(tmp, key + ".y"), "<f4") for key in jobs}


def generate():
    """-> {"conv": {name: hash}, "gemm": {name: [literals]}, "reduce": {vector: [literals]}}."""
    jobs = {}
    for name, shape in CONV_CASES:
        jobs["conv_" + name] = conv_job(shape)
    for name, dims in GEMM_CASES:
        jobs["gemm_" + name] = gemm_job(dims)
    for vector, op in REDUCE_CASES:
        jobs["reduce_" + vector] = reduce_job(op)
    y = run_ort(jobs)
    return {
        "conv": {name: fnv1a(y["conv_" + name]) for name, _ in CONV_CASES},
        "gemm": {name: [hex_float(v) for v in y["gemm_" + name]] for name, _ in GEMM_CASES},
        "reduce": {vector: [hex_float(v) for v in y["reduce_" + vector]]
                   for vector, _ in REDUCE_CASES},
    }


def print_values(values, version):
    print("// ONNX Runtime %s (onnxruntime-node), by tests/golden/gen_mlas_order_fixtures.py"
          % version)
    print("// conv_cases(): name, Conv2dShape, ort_fnv1a")
    for name, shape in CONV_CASES:
        print('{"%s", with_output({%s}), 0x%016xull},' % (
            name, ", ".join(map(str, shape)), values["conv"][name]))
    for name, (N, K, M) in GEMM_CASES:
        print("// TEST(MlasOrderGemm, %s): N = %d, K = %d, M = %d" % (name, N, K, M))
        print("const std::vector<float> ort = {%s};" % ", ".join(values["gemm"][name]))
    print("// TEST(MlasOrderReductions, EqualOnnxRuntime): x %s" % (list(REDUCE_SHAPE),))
    for vector, _ in REDUCE_CASES:
        print("const std::vector<float> %s = {%s};" % (vector, ", ".join(values["reduce"][vector])))


def test_blocks(text):
    """TEST(Suite, Name) -> its body, up to the next TEST."""
    parts = re.split(r"^TEST(?:_P)?\((\w+), (\w+)\)", text, flags=re.M)
    return {(parts[i], parts[i + 1]): parts[i + 2] for i in range(1, len(parts), 3)}


def float_vectors(block):
    return {m.group(1): re.findall(r"-?0x[0-9a-f.]+p[+-]\d+f", m.group(2))
            for m in re.finditer(r"const std::vector<float> (\w+) = \{([^}]*)\};", block)}


def check(values, path):
    """Compares the generated values (and the cases' shapes) with the test's; -> mismatch count."""
    with open(path) as f:
        text = f.read()
    found = []  # (what, expected by the test, generated)
    conv_re = r'\{"(\w+)",\s*with_output\(\{([^}]*)\}\),\s*(0x[0-9a-f]+)ull\}'
    conv = {m.group(1): (tuple(int(d) for d in m.group(2).split(",")), m.group(3))
            for m in re.finditer(conv_re, text)}
    found.append(("conv case names", list(conv), [name for name, _ in CONV_CASES]))
    for name, shape in CONV_CASES:
        test_shape, test_hash = conv.get(name, (None, None))
        found.append(("conv %s shape" % name, test_shape, shape))
        found.append(("conv %s ort_fnv1a" % name, test_hash, "0x%016x" % values["conv"][name]))
    blocks = test_blocks(text)
    for name, dims in GEMM_CASES:
        block = blocks.get(("MlasOrderGemm", name), "")
        m = re.search(r"const int64_t N = (\d+), K = (\d+), M = (\d+);", block)
        found.append(("gemm %s N, K, M" % name, m and tuple(map(int, m.groups())), dims))
        found.append(("gemm %s ort" % name, float_vectors(block).get("ort"), values["gemm"][name]))
    block = blocks.get(("MlasOrderReductions", "EqualOnnxRuntime"), "")
    m = re.search(r"const int64_t rows = (\d+), size = (\d+);", block)
    found.append(("reductions rows, size", m and tuple(map(int, m.groups())),
                  (REDUCE_SHAPE[0] * REDUCE_SHAPE[1], REDUCE_SHAPE[2] * REDUCE_SHAPE[3])))
    for vector, _ in REDUCE_CASES:
        found.append(("reductions %s" % vector, float_vectors(block).get(vector),
                      values["reduce"][vector]))
    mismatches = 0
    for what, expected, generated in found:
        ok = expected == generated
        mismatches += not ok
        if not ok or what.endswith(("ort_fnv1a", "ort", "pool", "mean")):
            verdict = "ok" if ok else "MISMATCH: test %s, generated %s" % (expected, generated)
            print("%-40s %s" % (what, verdict), file=sys.stderr)
    return mismatches


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the values in core/kernels/mlas_order_ref_test.cc")
    args = parser.parse_args()
    version = ort_version()
    if version != ORT_VERSION:
        print("warning: onnxruntime-node %s, the fixtures are from %s" % (version, ORT_VERSION),
              file=sys.stderr)
    values = generate()
    print_values(values, version)
    if args.check:
        mismatches = check(values, TEST_FILE)
        verdict = "every value reproduced" if mismatches == 0 else "%d mismatches" % mismatches
        print("%s: %s" % (os.path.relpath(TEST_FILE, ROOT), verdict), file=sys.stderr)
        sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
