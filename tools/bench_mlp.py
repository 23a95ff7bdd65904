#!/usr/bin/env python3
"""One SGD epoch of the sheet's net in nabla, plain numpy and PyTorch (CPU, 2 threads), in one run.

The work, identical on all three sides: the sheet's network (5 inputs, 5 hidden
ELU layers of 10, softmax over 3 classes, mean cross-entropy), the sheet's He
initialisation (numpy seed 42), data x = np.random.seed(0); randn(5, N) with
label i mod 3, batches of 32 consecutive samples in order, plain SGD at lr 0.01,
all in float64. Each side must reach the same loss after the epoch before any
time is reported. The sides take turns for `--rounds` rounds, every epoch from
the same initial weights, and each reports its fastest epoch.

Run:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy torch
    cargo build --release -p nabla-cli
    /tmp/bm/bin/python tools/bench_mlp.py [--samples 100000] [--nabla target/release/nabla]
"""

import argparse
import json
import subprocess
import time

import numpy as np
import torch

LR = 0.01


def init_weights(dims):
    np.random.seed(42)
    ws = [np.random.randn(dims[l], dims[l - 1]) * np.sqrt(2 / dims[l - 1]) for l in range(1, len(dims))]
    return ws, [np.zeros((d, 1)) for d in dims[1:]]


def data(n):
    np.random.seed(0)
    x = np.random.randn(5, n)
    y = np.arange(n) % 3
    return x, y


def numpy_loss(ws, bs, x, y):
    a = x
    for w, b in zip(ws[:-1], bs[:-1]):
        z = w @ a + b
        a = np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    z = ws[-1] @ a + bs[-1]
    z = z - z.max(axis=0, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=0, keepdims=True))
    return -logp[y, np.arange(len(y))].mean()


def numpy_epoch(ws, bs, x, y, batch):
    n = x.shape[1]
    for s in range(0, n, batch):
        xb, yb = x[:, s:s + batch], y[s:s + batch]
        m = xb.shape[1]
        acts, zs = [xb], []
        for w, b in zip(ws[:-1], bs[:-1]):
            z = w @ acts[-1] + b
            zs.append(z)
            acts.append(np.where(z > 0, z, np.expm1(np.minimum(z, 0))))
        z = ws[-1] @ acts[-1] + bs[-1]
        e = np.exp(z - z.max(axis=0, keepdims=True))
        p = e / e.sum(axis=0, keepdims=True)
        p[yb, np.arange(m)] -= 1.0
        dz = p / m
        for l in range(len(ws) - 1, -1, -1):
            dw = dz @ acts[l].T
            db = dz.sum(axis=1, keepdims=True)
            if l > 0:
                da = ws[l].T @ dz
                dz = da * np.where(zs[l - 1] > 0, 1.0, acts[l] + 1.0)
            ws[l] -= LR * dw
            bs[l] -= LR * db


def torch_model(ws):
    layers = []
    for i, w in enumerate(ws):
        lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.zero_()
        layers.append(lin)
        if i < len(ws) - 1:
            layers.append(torch.nn.ELU())
    return torch.nn.Sequential(*layers)


def torch_epoch(model, x, y, batch):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    for s in range(0, x.shape[0], batch):
        opt.zero_grad()
        loss = loss_fn(model(x[s:s + batch]), y[s:s + batch])
        loss.backward()
        opt.step()


def best_of(repeat, setup, run):
    best, state = float("inf"), None
    for _ in range(repeat):
        state = setup()
        t = time.perf_counter()
        run(state)
        best = min(best, time.perf_counter() - t)
    return best, state


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--nabla", default="target/release/nabla")
    args = p.parse_args()
    torch.set_num_threads(2)
    dims = [5, 10, 10, 10, 10, 10, 3]
    x, y = data(args.samples)

    def nabla_run():
        return json.loads(subprocess.run(
            [args.nabla, "bench", "mlp", "--samples", str(args.samples), "--batch-size", str(args.batch_size),
             "--lr", str(LR), "--repeat", "3", "--json"],
            check=True, capture_output=True, text=True).stdout)

    xt, yt = torch.from_numpy(x.T.copy()), torch.from_numpy(y)
    # Rounds interleave the three sides, so a slow spell on a shared machine
    # hits all of them alike; each side keeps its fastest epoch.
    best = {"nabla": float("inf"), "numpy": float("inf"), "pytorch": float("inf")}
    for _ in range(args.rounds):
        ours = nabla_run()
        best["nabla"] = min(best["nabla"], ours["epoch_s"])
        t, (ws, bs) = best_of(1, lambda: init_weights(dims), lambda s: numpy_epoch(s[0], s[1], x, y, args.batch_size))
        best["numpy"] = min(best["numpy"], t)
        t, model = best_of(1, lambda: torch_model(init_weights(dims)[0]),
                           lambda m: torch_epoch(m, xt, yt, args.batch_size))
        best["pytorch"] = min(best["pytorch"], t)
    np_loss = numpy_loss(ws, bs, x, y)
    with torch.no_grad():
        torch_loss = torch.nn.functional.cross_entropy(model(xt), yt).item()

    for name, loss in [("numpy", np_loss), ("pytorch", torch_loss)]:
        if abs(loss - ours["loss_after"]) > 1e-8:
            raise SystemExit(f"loss after the epoch differs: nabla {ours['loss_after']} vs {name} {loss}")
    print(f"one SGD epoch: {args.samples} samples, batch {args.batch_size}, {ours['updates']} updates, "
          f"float64; losses agree ({ours['loss_after']:.10f})")
    print(f"{'':16s}{'epoch (s)':>12s}{'nabla is':>12s}")
    print(f"{'nabla':16s}{best['nabla']:12.4f}{'':>12s}")
    print(f"{'numpy':16s}{best['numpy']:12.4f}{best['numpy'] / best['nabla']:11.1f}x")
    print(f"{'pytorch (2 thr)':16s}{best['pytorch']:12.4f}{best['pytorch'] / best['nabla']:11.1f}x")
    print(f"numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
