#!/usr/bin/env python3
"""Fixtures for nabla's ResNet34 and its PyTorch weight readers (crates/vision/tests/fixtures/).

- resnet34_parity.json: torchvision's resnet34(num_classes=10) with weights drawn
  from numpy's generator (seed 7, one np.random.randn(*shape) per state-dict key
  in sorted order, scaled as `scaled` says, num_batches_tracked skipped), then
  an input of np.random.randn(2, 3, 64, 64) from the same generator; the logits
  in evaluation mode. The Rust test draws the same numbers with its
  numpy-compatible generator, so no weights are stored.
- small_state_dict.pth / .safetensors / small_state_dict.json: a few tensors
  saved by torch.save (zip format) and safetensors, covering a Parameter, a
  non-contiguous view, float16 and an int64 counter, with their values.
- small_state_dict_legacy.pth: the same in torch's legacy (pre-1.6) format,
  and small_state_dict_legacy.zip: that file inside a zip archive, as a Python
  wheel ships one. (The legacy format names storages by object id, so these two
  files differ byte for byte between runs while holding the same tensors.)

Run (needs torch, torchvision, safetensors, numpy):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch torchvision==0.29.2 safetensors numpy pillow
    /tmp/fx/bin/python tools/gen_resnet_fixtures.py
"""

import json
import os
import zipfile

import torch
import torchvision
from safetensors.torch import save_file

from fixture_weights import parity as parity_of

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "vision", "tests", "fixtures")


def parity():
    return parity_of(
        torchvision.models.resnet34(num_classes=10),
        f"torchvision {torchvision.__version__} resnet34(num_classes=10), eval",
    )


def small():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4
    tensors = {
        "layer.weight": torch.nn.Parameter(base.clone()),
        "layer.transposed": base.t(),  # a non-contiguous view
        "half": torch.tensor([0.5, -1.25, 3.0], dtype=torch.float16),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(tensors, os.path.join(OUT, "small_state_dict.pth"))
    legacy = os.path.join(OUT, "small_state_dict_legacy.pth")
    torch.save(tensors, legacy, _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(os.path.join(OUT, "small_state_dict_legacy.zip"), "w") as z:
        z.write(legacy, "package/models/small.pth")
        z.writestr("package/__init__.py", "")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(OUT, "small_state_dict.safetensors"))
    return {k: {"shape": list(v.shape), "data": v.detach().double().flatten().tolist()} for k, v in tensors.items()}


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "resnet34_parity.json"), "w") as f:
        json.dump(parity(), f)
    with open(os.path.join(OUT, "small_state_dict.json"), "w") as f:
        json.dump(small(), f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
