#!/usr/bin/env python3
"""Training speed and memory of Problem 5's models in nabla (Burn flex) and PyTorch (CPU, 2 threads), in one run.

The work, identical on both sides: `cnn` or `cnn-bn` exactly as nabla builds them
(four 3x3 same-padded convolutions 32-64-128-128, [BatchNorm,] ReLU, 2x2 max-pool,
dense 256 + ReLU [+ dropout 0.5], dense 2), `resnet34` (torchvision's, 2 classes)
or `efficientnet-lite0` (the reference in tools/gen_efficientnet_fixtures.py,
2 classes), Adam at lr 1e-3, batches of 32 (--batch-size) random
uint8 RGB images 128x128 converted to [-1, 1] floats each step, `--warmup` untimed
steps then `--steps` timed ones. Each side runs in its own process so its peak
resident memory is its own. The sides take turns for `--rounds` rounds and each
reports its best round.

Run:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy torch torchvision
    cargo build --release -p nabla-cli
    /tmp/bm/bin/python tools/bench_vision.py [--models cnn,cnn-bn] [--nabla target/release/nabla]
    /tmp/bm/bin/python tools/bench_vision.py --models resnet34 --batch-size 16
    /tmp/bm/bin/python tools/bench_vision.py --models resnet34 --batch-size 16 --eval

With --eval both sides time inference instead: PyTorch's model.eval() under
torch.no_grad(), nabla's evaluation mode (BatchNorm folded into the
convolutions), softmax included.

With --device wgpu the same work runs on a GPU: nabla built with `--features
wgpu` on its `wgpu` device, PyTorch on CUDA, each step waited for
(torch.cuda.synchronize) before the clock is read. Memory is then the GPU's:
PyTorch's torch.cuda.max_memory_allocated; nabla reports none (its column
shows host memory only on the CPU).
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def cnn(bn, size):
    from torch import nn

    layers, cin = [], 3
    for cout in (32, 64, 128, 128):
        layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    side = size // 16
    head = [nn.Flatten(), nn.Linear(128 * side * side, 256), nn.ReLU()]
    if bn:
        head.append(nn.Dropout(0.5))
    head.append(nn.Linear(256, 2))
    return nn.Sequential(*layers, *head)


def torch_side(model_name, batch, size, steps, warmup, evaluate=False, device="cpu"):
    import torch
    from torch import nn

    gpu = device != "cpu"
    dev = torch.device("cuda" if gpu else "cpu")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if model_name == "resnet34":
        import torchvision

        model = torchvision.models.resnet34(num_classes=2)
    elif model_name == "efficientnet-lite0":
        import os

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from gen_efficientnet_fixtures import Lite0

        model = Lite0(classes=2)
    else:
        model = cnn(model_name == "cnn-bn", size)
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)

    def images():
        x = torch.from_numpy(rng.integers(0, 256, (batch, 3, size, size), dtype=np.uint8))
        return x.to(dev).float() / 127.5 - 1.0

    def train_step():
        x = images()
        y = (torch.arange(batch) % 2).to(dev)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def eval_step():
        x = images()
        with torch.no_grad():
            torch.softmax(model(x), 1)

    if evaluate:
        model.eval()
    step = eval_step if evaluate else train_step
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - t
    return {
        "model": model_name,
        # Burn counts BatchNorm's running mean and variance as parameters too.
        "parameters": sum(p.numel() for p in model.parameters())
        + sum(b.numel() for n, b in model.named_buffers() if "running" in n),
        "step_s": seconds / steps,
        "images_per_s": batch * steps / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        **({"peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20} if gpu else {}),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn,cnn-bn")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--nabla", default="target/release/nabla")
    ap.add_argument("--eval", action="store_true",
                    help="time evaluation (PyTorch: eval() and no_grad) instead of training")
    ap.add_argument("--device", choices=["cpu", "wgpu"], default="cpu",
                    help="wgpu: nabla on its wgpu device against PyTorch on CUDA")
    ap.add_argument("--torch-only", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_only:
        print(json.dumps(torch_side(a.torch_only, a.batch_size, a.image_size, a.steps, a.warmup, a.eval,
                                    a.device)))
        return
    common = ["--batch-size", str(a.batch_size), "--image-size", str(a.image_size),
              "--steps", str(a.steps), "--warmup", str(a.warmup)] + (["--eval"] if a.eval else [])
    nabla_device = ["--device", a.device]
    rows = []
    for model in a.models.split(","):
        ours, theirs = [], []
        for _ in range(a.rounds):
            out = subprocess.run([a.nabla, "bench", "vision", "--model", model, "--json", *common, *nabla_device],
                                 check=True, capture_output=True, text=True).stdout
            ours.append(json.loads(out))
            out = subprocess.run([sys.executable, __file__, "--torch-only", model, *common,
                                  "--device", a.device],
                                 check=True, capture_output=True, text=True).stdout
            theirs.append(json.loads(out))
        ours = max(ours, key=lambda r: r["images_per_s"])
        theirs = max(theirs, key=lambda r: r["images_per_s"])
        assert ours["parameters"] == theirs["parameters"], (ours, theirs)
        rows.append((model, ours, theirs))
    mode = "evaluation" if a.eval else "training with Adam"
    where = "CPU" if a.device == "cpu" else f"GPU ({rows[0][2]['device']}; nabla wgpu, PyTorch CUDA)"
    print(f"{mode}, batch {a.batch_size}, 3x{a.image_size}x{a.image_size}, {where} "
          f"(best of {a.rounds} rounds of {a.steps} steps)")
    memory = "MiB" if a.device == "cpu" else "GPU MiB"
    print(f"{'model':18} {'params':>9} {'nabla img/s':>12} {'torch img/s':>12} {'ratio':>6} "
          f"{'nabla MiB':>10} {'torch ' + memory:>12}")
    for model, ours, theirs in rows:
        mine = f"{ours['peak_rss_mib']:>10.0f}" if a.device == "cpu" else f"{'-':>10}"
        print(f"{model:18} {ours['parameters']:>9} {ours['images_per_s']:>12.1f} {theirs['images_per_s']:>12.1f} "
              f"{ours['images_per_s'] / theirs['images_per_s']:>5.2f}x "
              f"{mine} {theirs.get('peak_gpu_mib', theirs['peak_rss_mib']):>12.0f}")


if __name__ == "__main__":
    main()
