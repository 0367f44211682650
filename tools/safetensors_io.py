"""A small, dependency-free safetensors reader/writer for PyTorch tensors.

Shared by tools/torchvision_to_safetensors.py and the fixture generators in tests/golden/
(which import it with tools/ on sys.path). It exists so that neither needs the `safetensors`
pip package, which Debian does not ship.

Format (https://github.com/huggingface/safetensors): 8-byte little-endian u64 header length N,
then N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
"__metadata__": {str: str}}, then the raw little-endian data. write_safetensors pads the
header with spaces to a multiple of 8 and stores the tensors back to back in the given order,
so the same inputs always give the same bytes. core/serialize.{h,cc} is the C++ side.
"""

import collections
import json
import struct

import numpy as np
import torch

# torch dtype -> (safetensors dtype, numpy little-endian dtype). The qat DTypes.
DTYPES = collections.OrderedDict([
    (torch.float32, ("F32", "<f4")),
    (torch.float64, ("F64", "<f8")),
    (torch.int64, ("I64", "<i8")),
    (torch.int32, ("I32", "<i4")),
    (torch.int8, ("I8", "<i1")),
    (torch.uint8, ("U8", "<u1")),
])
_BY_NAME = {name: (torch_dtype, np_dtype) for torch_dtype, (name, np_dtype) in DTYPES.items()}


def dtype_name(dtype):
    """The safetensors name of a torch dtype ("F32", "I64", ...); ValueError if unsupported."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype} is not supported (supported: "
                         f"{', '.join(str(d) for d in DTYPES)})")
    return DTYPES[dtype][0]


def write_safetensors(path, tensors, metadata=None):
    """Writes an ordered {name: tensor} dict in the safetensors format: 8-byte little-endian
    header length, JSON header {name: {dtype, shape, data_offsets}} (plus "__metadata__" when
    `metadata`, a {str: str} dict, is given) padded with spaces to a multiple of 8, then the raw
    little-endian data in header order."""
    header = collections.OrderedDict()
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors __metadata__ must map str to str")
        header["__metadata__"] = collections.OrderedDict(metadata)
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        dtype = dtype_name(t.dtype)
        np_dtype = DTYPES[t.dtype][1]
        data = t.detach().contiguous().numpy().astype(np_dtype).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Reads a file written in the safetensors format (dtypes in DTYPES only). Returns
    (tensors, metadata): an OrderedDict {name: tensor} in data-offset order (the order
    write_safetensors stored them in) and the "__metadata__" dict ({} when absent)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} exceeds the file size {len(raw)}")
    header = json.loads(raw[8:8 + n].decode("utf-8"),
                        object_pairs_hook=collections.OrderedDict)
    metadata = dict(header.pop("__metadata__", {}))
    data = raw[8 + n:]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    tensors = collections.OrderedDict()
    for name, info in entries:
        if info["dtype"] not in _BY_NAME:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        torch_dtype, np_dtype = _BY_NAME[info["dtype"]]
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: tensor '{name}' data_offsets {begin, end} are outside "
                             f"the {len(data)}-byte data buffer")
        array = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy()).to(torch_dtype)
    return tensors, metadata
