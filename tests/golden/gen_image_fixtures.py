#!/usr/bin/python3
"""Image fixtures for nn/data/image_folder_test.cc and nn/data/transforms_test.cc: small image
files written by PIL 9.4 (libpng / libjpeg encoders, not stb's) and what torchvision 0.14's
ImageFolder loader and tensor transforms make of them.

Regenerate (only when a fixture is added or changed; review the diff and commit the files):

    cd /work/main && /usr/bin/python3 tests/golden/gen_image_fixtures.py

Use /usr/bin/python3 (Debian's python3-torch 1.13, python3-torchvision 0.14, python3-pil): the
python3 first on PATH may lack them. Bazel and CI only read the committed files in
nn/data/testdata/. Output is deterministic.

Written to nn/data/testdata/:
  rgb.png         6x4 RGB            gray.png  5x3 8-bit grayscale (mode L)
  rgba.png        3x2 RGBA           palette.png  4x4 palette (mode P)
  photo.jpg       16x12 RGB, quality 90, default 4:2:0 chroma subsampling
  image_fixtures.safetensors, per image file <f> (dots in names become '_'):
    <f>.rgb   = ToTensor()(pil_loader(f))                 [3, H, W] float32
    <f>.l     = ToTensor()(pil_loader(f).convert("L"))    [1, H, W] float32
  and the transforms on x = ((i * 37) % 101) / 101 viewed as [3, 7, 10] (float32):
    resize.short4 = F.resize(x, 4)          resize.short9 = F.resize(x, 9)
    resize.hw5x3  = F.resize(x, [5, 3])     (all antialias=False, bilinear)
    center_crop.4x5 = F.center_crop(x, [4, 5])    center_crop.9x4 = F.center_crop(x, [9, 4])
    resized_crop.y   = F.resized_crop(x, 1, 2, 5, 7, [6, 6]); resized_crop.box = [1, 2, 5, 7]
    rrc_fallback.<H>x<W> = RandomResizedCrop.get_params(zeros(1, H, W), (2, 3), (3/4, 4/3))
                      as [top, left, height, width] (scale > 1: every try fails -> fallback)
"""

import collections
import os
import sys

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.datasets.folder import pil_loader
from torchvision.transforms import RandomResizedCrop

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from safetensors_io import write_safetensors  # noqa: E402  (tools/safetensors_io.py)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "nn", "data",
                       "testdata")


def pattern(n, mul, mod=256):
    """Deterministic bytes: (i * mul) % mod."""
    return np.array([(i * mul) % mod for i in range(n)], dtype=np.uint8)


def write_images():
    """Writes the image files; returns their names."""
    Image.fromarray(pattern(4 * 6 * 3, 37).reshape(4, 6, 3), "RGB").save(
        os.path.join(OUT_DIR, "rgb.png"))
    Image.fromarray(pattern(3 * 5, 53).reshape(3, 5), "L").save(os.path.join(OUT_DIR, "gray.png"))
    Image.fromarray(pattern(2 * 3 * 4, 71).reshape(2, 3, 4), "RGBA").save(
        os.path.join(OUT_DIR, "rgba.png"))
    palette = Image.fromarray(pattern(16, 3, 4).reshape(4, 4), "L").convert("P")
    palette.putpalette([255, 0, 0, 0, 128, 255, 10, 200, 30, 90, 90, 90] + [0] * (3 * 252))
    palette.save(os.path.join(OUT_DIR, "palette.png"))
    # A smooth gradient with some texture: JPEG artefacts stay small, so decoders agree closely.
    h, w = 12, 16
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    photo = np.stack([xx * 15, yy * 20, (xx * yy * 3) % 200 + 20], axis=-1).astype(np.uint8)
    Image.fromarray(photo, "RGB").save(os.path.join(OUT_DIR, "photo.jpg"), quality=90)
    return ["rgb.png", "gray.png", "rgba.png", "palette.png", "photo.jpg"]


def main():
    assert torch.__version__.startswith("1.13"), f"expected torch 1.13, got {torch.__version__}"
    assert torchvision.__version__.startswith("0.14"), torchvision.__version__
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    tensors = collections.OrderedDict()
    for name in write_images():
        img = pil_loader(os.path.join(OUT_DIR, name))  # convert("RGB"), as ImageFolder
        key = name.replace(".", "_")
        tensors[f"{key}.rgb"] = F.to_tensor(img)
        tensors[f"{key}.l"] = F.to_tensor(img.convert("L"))

    x = torch.tensor([((i * 37) % 101) / 101.0 for i in range(3 * 7 * 10)],
                     dtype=torch.float32).view(3, 7, 10)
    tensors["resize.short4"] = F.resize(x, 4, antialias=False)
    tensors["resize.short9"] = F.resize(x, 9, antialias=False)
    tensors["resize.hw5x3"] = F.resize(x, [5, 3], antialias=False)
    tensors["center_crop.4x5"] = F.center_crop(x, [4, 5])
    tensors["center_crop.9x4"] = F.center_crop(x, [9, 4])
    tensors["resized_crop.y"] = F.resized_crop(x, 1, 2, 5, 7, [6, 6], antialias=False)
    tensors["resized_crop.box"] = torch.tensor([1, 2, 5, 7], dtype=torch.int64)
    for h, w in [(10, 40), (40, 10), (30, 32), (7, 3)]:
        box = RandomResizedCrop.get_params(torch.zeros(1, h, w), [2.0, 3.0], [3 / 4, 4 / 3])
        tensors[f"rrc_fallback.{h}x{w}"] = torch.tensor(box, dtype=torch.int64)

    path = os.path.join(OUT_DIR, "image_fixtures.safetensors")
    write_safetensors(path, tensors)
    print(f"{os.path.relpath(path)}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
