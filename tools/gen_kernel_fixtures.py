#!/usr/bin/env python3
"""PyTorch references for nabla's CPU kernels (crates/kernels/tests/pytorch.rs).

For randomized shapes — batch 1 and odd sizes, every stride and padding the
four vision models use, TensorFlow's asymmetric "same" padding, channel
counts that are not multiples of the vector width — writes the inputs, the
forward outputs and the gradients of `sum(out * r)` for a random `r`, as
PyTorch 2.x computes them in f32 on the CPU:

- conv2d (dense and depthwise), with and without bias;
- batch_norm in training mode (batch statistics, biased variance for the
  normalisation) followed by identity, ReLU or ReLU6;
- max_pool2d, optionally after a ReLU.

Run (writes crates/kernels/tests/fixtures/pytorch.json, ~1 MB):

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy torch
    /tmp/bm/bin/python tools/gen_kernel_fixtures.py
"""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kernels", "tests", "fixtures", "pytorch.json")


def t(a):
    return torch.tensor(a, dtype=torch.float32, requires_grad=True)


def f32(values):
    # Nine significant digits round-trip every f32 exactly.
    return [float(f"{v:.9g}") for v in np.asarray(values, dtype=np.float32).ravel()]


def flat(x):
    return f32(x.detach().numpy())


def conv_case(rng, n, c, h, w, o, k, s, pad, groups, bias):
    """pad = (top, left, bottom, right)."""
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((o, c // groups, k, k)) / np.sqrt(c // groups * k * k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    xt, wtt = t(x), t(wt)
    bt = t(b) if bias else None
    top, left, bottom, right = pad
    xp = F.pad(xt, (left, right, top, bottom))
    out = F.conv2d(xp, wtt, bt, stride=s, groups=groups)
    r = rng.standard_normal(out.shape).astype(np.float32)
    (out * torch.from_numpy(r)).sum().backward()
    case = {
        "kind": "conv2d",
        "shape": [n, c, h, w],
        "out_channels": o,
        "kernel": k,
        "stride": s,
        "padding": [top, left],
        "padding_end": [bottom, right],
        "groups": groups,
        "x": flat(xt),
        "weight": flat(wtt),
        "r": f32(r),
        "out": flat(out),
        "dx": flat(xt.grad),
        "dweight": flat(wtt.grad),
    }
    if bias:
        case["bias"] = flat(bt)
        case["dbias"] = flat(bt.grad)
    return case


def norm_case(rng, n, c, h, w, act):
    x = (rng.standard_normal((n, c, h, w)) * 2 + 0.5).astype(np.float32)
    g = (rng.standard_normal(c) * 0.5 + 1).astype(np.float32)
    b = (rng.standard_normal(c) * 0.5).astype(np.float32)
    xt, gt, bt = t(x), t(g), t(b)
    eps = 1e-5 if act != "relu6" else 1e-3
    out = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    if act == "relu":
        out = F.relu(out)
    elif act == "relu6":
        out = F.relu6(out)
    r = rng.standard_normal(out.shape).astype(np.float32)
    (out * torch.from_numpy(r)).sum().backward()
    return {
        "kind": "batch_norm",
        "shape": [n, c, h, w],
        "activation": act,
        "epsilon": eps,
        "x": flat(xt),
        "gamma": flat(gt),
        "beta": flat(bt),
        "r": f32(r),
        "out": flat(out),
        "mean": [float(v) for v in x.astype(np.float64).mean(axis=(0, 2, 3))],
        "var": [float(v) for v in x.astype(np.float64).var(axis=(0, 2, 3))],
        "dx": flat(xt.grad),
        "dgamma": flat(gt.grad),
        "dbeta": flat(bt.grad),
    }


def pool_case(rng, n, c, h, w, k, s, p, relu):
    # Distinct values, so no ties decide the gradient's destination.
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w).astype(np.float32) / 7.0 - 20.0
    xt = t(x)
    y = F.relu(xt) if relu else xt
    out = F.max_pool2d(y, k, s, p)
    r = rng.standard_normal(out.shape).astype(np.float32)
    (out * torch.from_numpy(r)).sum().backward()
    return {
        "kind": "max_pool2d",
        "shape": [n, c, h, w],
        "kernel": k,
        "stride": s,
        "padding": p,
        "relu": relu,
        "x": flat(xt),
        "r": f32(r),
        "out": flat(out),
        "dx": flat(xt.grad),
    }


def main():
    rng = np.random.default_rng(20261201)
    cases = [
        # The sheet's CNNs: 3x3 stride 1 same, first layer from RGB.
        conv_case(rng, 2, 3, 8, 8, 16, 3, 1, (1, 1, 1, 1), 1, True),
        conv_case(rng, 1, 17, 7, 6, 19, 3, 1, (1, 1, 1, 1), 1, False),
        # ResNet: 7x7 stride 2 stem, 3x3 stride 2, 1x1 stride 2 downsample.
        conv_case(rng, 2, 3, 15, 13, 8, 7, 2, (3, 3, 3, 3), 1, False),
        conv_case(rng, 3, 10, 9, 9, 12, 3, 2, (1, 1, 1, 1), 1, False),
        conv_case(rng, 2, 9, 8, 7, 13, 1, 2, (0, 0, 0, 0), 1, False),
        # EfficientNet-Lite0: 1x1 expansions, TF-same 3x3 stride 2 stem.
        conv_case(rng, 2, 12, 7, 6, 20, 1, 1, (0, 0, 0, 0), 1, True),
        conv_case(rng, 1, 3, 16, 15, 8, 3, 2, (0, 0, 1, 1), 1, False),
        # Depthwise 3x3 and 5x5, stride 1 and 2, symmetric and TF-same.
        conv_case(rng, 2, 11, 9, 10, 11, 3, 1, (1, 1, 1, 1), 11, False),
        conv_case(rng, 1, 7, 12, 12, 7, 3, 2, (0, 0, 1, 1), 7, False),
        conv_case(rng, 3, 5, 11, 9, 5, 5, 1, (2, 2, 2, 2), 5, False),
        conv_case(rng, 2, 9, 14, 13, 9, 5, 2, (1, 1, 2, 2), 9, True),
        # Its last stages: kernels as large as the 2x2 and 4x4 planes, or larger.
        conv_case(rng, 4, 7, 2, 2, 7, 5, 1, (2, 2, 2, 2), 7, False),
        conv_case(rng, 3, 6, 4, 4, 6, 5, 2, (1, 1, 2, 2), 6, False),
        conv_case(rng, 2, 5, 8, 8, 5, 3, 2, (0, 0, 1, 1), 5, False),
        conv_case(rng, 4, 6, 2, 2, 6, 3, 1, (1, 1, 1, 1), 6, False),
        norm_case(rng, 4, 5, 6, 7, "identity"),
        norm_case(rng, 1, 9, 5, 5, "relu"),
        norm_case(rng, 3, 17, 4, 3, "relu6"),
        pool_case(rng, 2, 3, 8, 10, 2, 2, 0, True),
        pool_case(rng, 1, 5, 9, 7, 2, 2, 0, False),
        pool_case(rng, 2, 4, 11, 12, 3, 2, 1, False),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
