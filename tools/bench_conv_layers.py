#!/usr/bin/env python3
"""PyTorch's time for ResNet34's 3x3 stride-1 convolutions at batch 16, to hold beside
`nabla bench kernels --batch-size 16` (forward + input gradient + weight gradient).

Each layer: nn.Conv2d(c, c, 3, padding=1, bias=False) on a 16 x c x h x h input that
requires a gradient, forward then backward of ones, 3 untimed passes, best of 5.

Run:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy torch
    /tmp/bm/bin/python tools/bench_conv_layers.py [--threads 2]
"""

import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}")
    print("layer                     forward ms  forward+backward ms")
    for name, c, h in [("layer1", 64, 32), ("layer2", 128, 16), ("layer3", 256, 8), ("layer4", 512, 4)]:
        x = torch.randn(args.batch_size, c, h, h, requires_grad=True)
        conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        for _ in range(3):
            conv(x).sum().backward()
        fwd, both = float("inf"), float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            y = conv(x)
            t1 = time.perf_counter()
            y.backward(torch.ones_like(y))
            t2 = time.perf_counter()
            fwd, both = min(fwd, t1 - t0), min(both, t2 - t0)
        print(f"resnet {name} {c}->{c} @{h:<4} {fwd * 1e3:10.1f}  {both * 1e3:19.1f}")


if __name__ == "__main__":
    main()
