#!/usr/bin/env python3
"""End to end: time from nothing to 95 % validation accuracy for cnn-bn, nabla against a plain PyTorch script.

Both sides start from the photos on disk with nothing cached, decode, resize to
128x128, split 80/20 (seeded), and train cnn-bn (nabla's architecture: four
3x3 convolutions 32-64-128-128 with BatchNorm, ReLU and 2x2 max-pooling, dense
256 + ReLU + dropout 0.5, dense 2; Kaiming init) with Adam at lr 1e-3, batch
32 and random horizontal flips, evaluating after every epoch, until validation
accuracy reaches the target. The PyTorch side is what a notebook does:
torchvision's ImageFolder with PIL, decoding every image again each epoch
through a DataLoader with 2 workers, torch with 2 threads. nabla's side is
`nabla vision train --target-accuracy`, with an empty decode cache. Each side
runs in its own process; peak resident memory is its own (DataLoader workers
included for PyTorch).

Run:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install torch torchvision==0.29.2 pillow
    cargo build --release -p nabla-cli
    /tmp/bm/bin/python tools/e2e_vision.py --data data/face-mask [--target 0.95] [--max-epochs 15]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def torch_side(data, target, max_epochs):
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    torch.set_num_threads(2)
    torch.manual_seed(42)
    start = time.perf_counter()
    norm = transforms.Normalize([0.5] * 3, [0.5] * 3)
    train_tf = transforms.Compose([transforms.Resize((128, 128)), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), norm])
    val_tf = transforms.Compose([transforms.Resize((128, 128)), transforms.ToTensor(), norm])
    rgb = lambda path: datasets.folder.default_loader(path)  # PIL, converted to RGB
    full = datasets.ImageFolder(data, loader=rgb)
    n_val = int(round(0.2 * len(full)))
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(42)).tolist()
    train_set = torch.utils.data.Subset(datasets.ImageFolder(data, transform=train_tf, loader=rgb), perm[n_val:])
    val_set = torch.utils.data.Subset(datasets.ImageFolder(data, transform=val_tf, loader=rgb), perm[:n_val])
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, num_workers=2)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=32, num_workers=2)

    layers, cin = [], 3
    for cout in (32, 64, 128, 128):
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    hidden = nn.Linear(128 * 8 * 8, 256)
    nn.init.kaiming_normal_(hidden.weight, nonlinearity="relu")
    model = nn.Sequential(*layers, nn.Flatten(), hidden, nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, max_epochs + 1):
        model.train()
        for x, y in train_loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        acc = correct / len(val_set)
        history.append({"epoch": epoch, "val_accuracy": acc, "elapsed_s": time.perf_counter() - start})
        print(f"torch epoch {epoch}: val acc {acc:.4f} at {history[-1]['elapsed_s']:.0f} s", file=sys.stderr)
        if acc >= target:
            break
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {
        "seconds": time.perf_counter() - start,
        "reached": history[-1]["val_accuracy"] >= target,
        "epochs": len(history),
        "history": history,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_rss_worker_mib": children,
    }


def nabla_side(nabla, data, target, max_epochs):
    cache = tempfile.mkdtemp(prefix="nabla-e2e-cache-")
    out = tempfile.mkdtemp(prefix="nabla-e2e-run-")
    try:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", nabla, "vision", "train", "--data", data, "--model", "cnn-bn",
             "--epochs", str(max_epochs), "--target-accuracy", str(target), "--cache", cache,
             "--out", os.path.join(out, "run"), "--json"],
            check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        report = json.loads(proc.stdout)
        peak_kib = int(proc.stderr.strip().splitlines()[-1])
        history = report["history"]
        return {
            "seconds": seconds,
            "reached": history[-1]["val_accuracy"] >= target,
            "epochs": len(history),
            "history": [{"epoch": h["epoch"], "val_accuracy": h["val_accuracy"]} for h in history],
            "peak_rss_mib": peak_kib / 1024.0,
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/face-mask")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--max-epochs", type=int, default=15)
    ap.add_argument("--nabla", default="target/release/nabla")
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_only:
        print(json.dumps(torch_side(a.data, a.target, a.max_epochs)))
        return
    ours = nabla_side(a.nabla, a.data, a.target, a.max_epochs)
    out = subprocess.run([sys.executable, __file__, "--torch-only", "--data", a.data, "--target", str(a.target),
                          "--max-epochs", str(a.max_epochs)], check=True, stdout=subprocess.PIPE, text=True).stdout
    theirs = json.loads(out)
    print(json.dumps({"nabla": ours, "torch": theirs}, indent=1))
    print(f"\ntime to {a.target:.0%} validation accuracy, cnn-bn, 128 px, batch 32, Adam 1e-3, CPU, 2 cores")
    for name, r in (("nabla", ours), ("pytorch", theirs)):
        status = "reached" if r["reached"] else "NOT reached"
        extra = f" (+{r['peak_rss_worker_mib']:.0f} MiB per loader worker)" if "peak_rss_worker_mib" in r else ""
        print(f"{name:8} {r['seconds']:7.0f} s  {r['epochs']:2d} epochs  {status}  peak {r['peak_rss_mib']:.0f} MiB{extra}")
    print(f"ratio nabla/pytorch: {ours['seconds'] / theirs['seconds']:.2f}")


if __name__ == "__main__":
    main()
