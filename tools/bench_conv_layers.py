#!/usr/bin/env python3
"""PyTorch's time for ResNet34's convolutions at batch 16, to hold beside
`nabla bench kernels --batch-size 16` (forward, then forward + input gradient + weight gradient).

Each layer: nn.Conv2d(c, o, k, stride, padding, bias=False) on a 16 x c x h x h input, forward
then backward of ones, 3 untimed passes, best of 5. The stem's input is the image, which needs
no gradient (as in training): its second column is forward + weight gradient only.

Run:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install numpy torch
    /tmp/bm/bin/python tools/bench_conv_layers.py [--threads 2]
"""

import argparse
import time

import torch

# name, in channels, side, out channels, kernel, stride, padding, input needs a gradient
LAYERS = [
    ("stem 3->64 7x7/2", 3, 128, 64, 7, 2, 3, False),
    ("layer1 64->64", 64, 32, 64, 3, 1, 1, True),
    ("layer2 128->128", 128, 16, 128, 3, 1, 1, True),
    ("layer3 256->256", 256, 8, 256, 3, 1, 1, True),
    ("layer4 512->512", 512, 4, 512, 3, 1, 1, True),
    ("down2 64->128 3x3/2", 64, 32, 128, 3, 2, 1, True),
    ("down3 128->256 3x3/2", 128, 16, 256, 3, 2, 1, True),
    ("down4 256->512 3x3/2", 256, 8, 512, 3, 2, 1, True),
    ("shortcut 256->512 1x1/2", 256, 8, 512, 1, 2, 0, True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}")
    print("layer                              forward ms  forward+backward ms")
    for name, c, h, o, k, stride, pad, input_grad in LAYERS:
        x = torch.randn(args.batch_size, c, h, h, requires_grad=input_grad)
        conv = torch.nn.Conv2d(c, o, k, stride=stride, padding=pad, bias=False)
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
        print(f"resnet {name:27s} @{h:<4} {fwd * 1e3:10.1f}  {both * 1e3:19.1f}")


if __name__ == "__main__":
    main()
