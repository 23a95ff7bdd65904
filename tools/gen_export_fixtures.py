#!/usr/bin/env python3
"""The sheet's CNNs in PyTorch, the fixtures of nabla's export test, and a
check that PyTorch and ONNX Runtime take what `nabla vision export` writes.

`SheetCnn` below is the reference module of Problem 5's CNNs, (ii) and
(iii), written independently of nabla: four 3x3 same-padded convolutions
(BatchNorm after each in (iii), whose convolutions then have no bias), ReLU,
2x2 max-pooling, a hidden dense layer with ReLU (dropout after it in (iii))
and the output layer. Its parameter names are the ones nabla exports the
CNNs under: `blocks.N.conv`, `blocks.N.norm`, `hidden`, `output`.

Fixtures (crates/vision/tests/fixtures/), written with no argument:

- cnn_parity.json, cnn_bn_parity.json: SheetCnn for 64x64 images and 10
  classes, weights drawn from numpy's generator exactly as
  fixture_weights.parity draws them for resnet34_parity.json and
  efficientnet_lite0_parity.json (which list torchvision's and the
  EfficientNet-Lite0 reference's state-dict keys the same way); the keys,
  the input and the logits in evaluation mode. crates/vision/tests/export.rs
  checks that nabla's safetensors export of each of the four models has
  exactly these keys and shapes, and that its ONNX export, run by tract,
  gives these logits.

Check of real exports (needs onnxruntime for the .onnx file):

    nabla vision export --checkpoint runs/cnn-bn --format safetensors --out /tmp/m.safetensors
    nabla vision export --checkpoint runs/cnn-bn --format onnx --out /tmp/m.onnx
    python tools/gen_export_fixtures.py --check /tmp/m.safetensors /tmp/m.onnx

loads the safetensors file into the PyTorch model its metadata names with
load_state_dict(strict=True), runs it and the ONNX file on the same random
input, and prints the largest logit difference (it fails above 1e-4).

Run (needs torch, torchvision, numpy; onnxruntime for --check):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch torchvision==0.29.2 numpy onnxruntime
    /tmp/fx/bin/python tools/gen_export_fixtures.py
"""

import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_weights import parity as parity_of

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "vision", "tests", "fixtures")


class Block(nn.Module):
    def __init__(self, cin, cout, bn):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)
        self.norm = nn.BatchNorm2d(cout) if bn else None
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.pool(F.relu(x))


class SheetCnn(nn.Module):
    def __init__(self, bn, image_size=128, classes=2, channels=(32, 64, 128, 128), hidden=256, dropout=0.5):
        super().__init__()
        cins = (3,) + tuple(channels[:-1])
        self.blocks = nn.ModuleList(Block(i, o, bn) for i, o in zip(cins, channels))
        side = image_size // 16
        self.hidden = nn.Linear(channels[-1] * side * side, hidden)
        self.dropout = nn.Dropout(dropout) if bn else None
        self.output = nn.Linear(hidden, classes)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        x = F.relu(self.hidden(x.flatten(1)))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.output(x)


def read_safetensors(path):
    """Tensors and metadata of a .safetensors file (f32 only), without the
    safetensors package."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", f"{name}: {t['dtype']}"
        a, b = t["data_offsets"]
        tensors[name] = torch.from_numpy(
            np.frombuffer(data[base + a:base + b], dtype="<f4").reshape(t["shape"]).copy())
    return tensors, meta


def model_for(meta):
    classes = len(json.loads(meta["classes"]))
    size = int(meta["image_size"])
    name = meta["model"]
    if name in ("cnn", "cnn-bn"):
        return SheetCnn(name == "cnn-bn", size, classes)
    if name == "resnet34":
        import torchvision

        return torchvision.models.resnet34(num_classes=classes)
    if name == "efficientnet-lite0":
        from gen_efficientnet_fixtures import Lite0

        return Lite0(classes)
    raise SystemExit(f"unknown model {name!r} in the metadata")


def check(weights, onnx_file=None):
    tensors, meta = read_safetensors(weights)
    model = model_for(meta)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    size = int(meta["image_size"])
    x = np.random.default_rng(0).standard_normal((4, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    print(f"{weights}: {meta['model']}, {len(tensors)} tensors, load_state_dict(strict=True) took it")
    print(f"  PyTorch logits of image 0: {torch_logits[0]}")
    if onnx_file:
        import onnxruntime

        session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
        (ort_logits,) = session.run(["logits"], {"images": x})
        worst = float(np.abs(ort_logits - torch_logits).max())
        print(f"{onnx_file}: ONNX Runtime {onnxruntime.__version__}, largest logit difference from PyTorch {worst:.3g}")
        if worst > 1e-4:
            raise SystemExit("the ONNX file and the safetensors file disagree")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        check(*sys.argv[2:4])
        return
    os.makedirs(OUT, exist_ok=True)
    for bn, name in [(False, "cnn"), (True, "cnn_bn")]:
        fx = parity_of(SheetCnn(bn, image_size=64, classes=10),
                       f"SheetCnn(bn={bn}, image_size=64, classes=10), eval")
        with open(os.path.join(OUT, f"{name}_parity.json"), "w") as f:
            json.dump(fx, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
