#!/usr/bin/env python3
"""Freeze numpy and PyTorch references for nabla's dense-network tests.

- numpy's legacy generator after np.random.seed(s) for s in 0, 42, 4294967295:
  random_sample and randn, 10,000+ draws each (the first draws as IEEE bit
  patterns, all of them as an FNV-1a hash of their bit patterns).
- The sheet's own `initialize_weights` (copied verbatim from the sheet) and a
  numpy forward pass (ELU hidden layers, softmax output) at x = (1, ..., 5).
- Per-layer gradient norms of the 30-layer net by PyTorch autograd, starting
  from the sheet's numpy weights, for several activations and inits.
- Full-batch loss trajectories of torch.optim.SGD without momentum, with
  momentum 0.9 and with Nesterov momentum 0.9 on a small net.

Rerun (needs numpy and PyTorch; CI does not):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install numpy torch
    /tmp/fx/bin/python tools/gen_dense_fixtures.py

It rewrites crates/dense/tests/fixtures/*.json.
"""

import json
import pathlib
import struct

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/dense/tests/fixtures"
SHOWN = 64


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def fnv1a(values):
    h = 0xCBF29CE484222325
    for v in values:
        for byte in struct.pack("<d", float(v)):
            h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def write(name, doc):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"generator": "tools/gen_dense_fixtures.py", "numpy": np.__version__,
                               "torch": torch.__version__, **doc}, indent=1) + "\n")
    tmp.replace(path)
    print("wrote", path.relative_to(ROOT))


# ---- the sheet's code, verbatim ------------------------------------------------
def initialize_weights(layer_dimensions):
    np.random.seed(42)  # For reproducibility

    parameters = {}
    L = len(layer_dimensions) - 1  # Number of layers excluding input layer

    for l in range(1, L + 1):
        # He initialization for weights
        parameters[f"W{l}"] = np.random.randn(
            layer_dimensions[l], layer_dimensions[l - 1]
        ) * np.sqrt(2 / layer_dimensions[l - 1])
        # Initializing biases to zeros
        parameters[f"b{l}"] = np.zeros((layer_dimensions[l], 1))
    return parameters
# --------------------------------------------------------------------------------


def init_like(layer_dims, init, seed=42):
    """The same draws as the sheet, with the scale of `init`."""
    np.random.seed(seed)
    ws = []
    for l in range(1, len(layer_dims)):
        fan_in, fan_out = layer_dims[l - 1], layer_dims[l]
        scale = {"he": np.sqrt(2 / fan_in), "xavier": np.sqrt(2 / (fan_in + fan_out)), "normal": 0.01}[init]
        ws.append(np.random.randn(fan_out, fan_in) * scale)
    return ws


def elu(z):
    return np.where(z > 0, z, np.expm1(z))


def numpy_forward(params, x, L):
    a = x
    for l in range(1, L + 1):
        a = elu(params[f"W{l}"] @ a + params[f"b{l}"])
    z = params[f"W{L + 1}"] @ a + params[f"b{L + 1}"]
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


ACTS = {
    "elu": F.elu,
    "relu": F.relu,
    "leaky-relu": lambda z: F.leaky_relu(z, 0.01),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "selu": F.selu,
}


def torch_loss(ws, bs, act, x, y):
    a = x
    for w, b in zip(ws[:-1], bs[:-1]):
        a = ACTS[act](w @ a + b[:, None])
    logits = ws[-1] @ a + bs[-1][:, None]
    return F.cross_entropy(logits.T, y)


def rng_fixture():
    seeds = []
    for seed in [0, 42, 4294967295]:
        np.random.seed(seed)
        u = np.random.random_sample(10000)
        np.random.seed(seed)
        g = np.random.randn(10001)
        seeds.append({
            "seed": seed,
            "random_sample": {"count": len(u), "first_bits": [bits(v) for v in u[:SHOWN]], "fnv1a": fnv1a(u)},
            "randn": {"count": len(g), "first_bits": [bits(v) for v in g[:SHOWN]], "fnv1a": fnv1a(g)},
        })
    write("numpy_rng.json", {"seeds": seeds})


def forward_fixture():
    L, d = 5, 10
    dims = [5] + [d] * L + [3]
    params = initialize_weights(dims)
    x = np.arange(1, 6, dtype=np.float64).reshape(5, 1)
    probs = numpy_forward(params, x, L)
    write("sheet_forward.json", {
        "layer_dims": dims,
        "input": x.ravel().tolist(),
        "weights_bits": [[bits(v) for v in params[f"W{l}"].ravel()] for l in range(1, L + 2)],
        "probs": probs.ravel().tolist(),
    })


def grad_norm_fixture():
    L, d = 30, 10
    dims = [5] + [d] * L + [3]
    x = torch.arange(1, 6, dtype=torch.float64).reshape(5, 1)
    y = torch.tensor([0])
    assert all(np.array_equal(a, b) for a, b in zip(init_like(dims, "he"), [
        initialize_weights(dims)[f"W{l}"] for l in range(1, L + 2)]))
    curves = []
    for act, init in [(a, "he") for a in ACTS] + [("elu", "xavier"), ("elu", "normal"), ("tanh", "xavier")]:
        ws = [torch.tensor(w, requires_grad=True) for w in init_like(dims, init)]
        bs = [torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True) for w in ws]
        loss = torch_loss(ws, bs, act, x, y)
        loss.backward()
        curves.append({"activation": act, "init": init, "loss": loss.item(),
                       "norms": [w.grad.norm().item() for w in ws]})
    write("grad_norms.json", {"layers": L, "width": d, "input": [1, 2, 3, 4, 5], "target": 0, "curves": curves})


def optimizer_fixture():
    dims, lr, rho, steps = [3, 4, 4, 3], 0.1, 0.9, 25
    rs = np.random.RandomState(3)
    x = rs.randn(3, 12)
    labels = [0, 1, 2] * 4
    runs = []
    for name, kwargs in [("sgd", {}), ("momentum", {"momentum": rho}),
                         ("nesterov", {"momentum": rho, "nesterov": True})]:
        ws = [torch.tensor(w, requires_grad=True) for w in init_like(dims, "he", seed=7)]
        bs = [torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True) for w in ws]
        opt = torch.optim.SGD(ws + bs, lr=lr, **kwargs)
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            loss = torch_loss(ws, bs, "elu", torch.tensor(x), torch.tensor(labels))
            losses.append(loss.item())
            loss.backward()
            opt.step()
        losses.append(torch_loss(ws, bs, "elu", torch.tensor(x), torch.tensor(labels)).item())
        runs.append({"optimizer": name, "losses": losses,
                     "final_weights": [w.detach().numpy().ravel().tolist() for w in ws]})
    write("optimizer_trajectories.json", {
        "layer_dims": dims, "init_seed": 7, "activation": "elu", "lr": lr, "momentum": rho,
        "x": x.tolist(), "labels": labels, "runs": runs,
    })


def main():
    torch.set_default_dtype(torch.float64)
    rng_fixture()
    forward_fixture()
    grad_norm_fixture()
    optimizer_fixture()


if __name__ == "__main__":
    main()
