#!/usr/bin/env python3
"""nabla's graph engine against micrograd on the same 1,000,000-node graph, in one run.

The graph: N terms relu(a_i * b_i + c_i) summed by a balanced pairwise tree
(7 nodes per term), with inputs computed the same way as `nabla bench graph`.
Both sides must agree on the output and on three gradients before any time
is reported. micrograd builds eagerly, so its forward is its construction:
the ratio compares build + forward + backward on both sides. micrograd runs
with Python's cyclic garbage collector off, its fastest setting.

Run (micrograd from PyPI):

    python3 -m venv /tmp/mg && /tmp/mg/bin/pip install micrograd
    cargo build --release -p nabla-cli
    /tmp/mg/bin/python tools/bench_graph.py [--nodes 1000000] [--nabla target/release/nabla]
"""

import argparse
import gc
import json
import resource
import subprocess
import time

from micrograd.engine import Value


def bench_inputs(i):
    a = ((i * 37) % 101) / 50.0 - 1.0
    b = ((i * 53) % 97) / 48.0 - 1.0
    c = ((i * 11) % 89) / 88.0 - 0.5
    return a, b, c


def micrograd_run(neurons):
    # Python's cyclic GC rescans the million live Values again and again while
    # they are built; turning it off makes micrograd several times faster, so
    # the comparison gives micrograd its best case.
    gc.disable()
    t0 = time.perf_counter()
    level = []
    first = None
    for i in range(neurons):
        a, b, c = (Value(v) for v in bench_inputs(i))
        if first is None:
            first = (a, b, c)
        level.append((a * b + c).relu())
    while len(level) > 1:
        level = [level[k] + level[k + 1] if k + 1 < len(level) else level[k] for k in range(0, len(level), 2)]
    out = level[0]
    t1 = time.perf_counter()
    out.backward()
    t2 = time.perf_counter()
    gc.enable()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "build_forward_s": t1 - t0,
        "backward_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_rss_mib": peak_mib,
        "output": out.data,
        "grads": [v.grad for v in first],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--nabla", default="target/release/nabla")
    args = p.parse_args()

    ours = json.loads(subprocess.run(
        [args.nabla, "bench", "graph", "--nodes", str(args.nodes), "--json"],
        check=True, capture_output=True, text=True).stdout)
    theirs = micrograd_run(ours["neurons"])

    def close(x, y):
        return abs(x - y) <= 1e-9 * max(1.0, abs(y))

    agree = close(ours["output"], theirs["output"]) and all(
        close(x, y) for x, y in zip([ours["grad_a0"], ours["grad_b0"], ours["grad_c0"]], theirs["grads"]))
    if not agree:
        raise SystemExit(f"results differ: nabla {ours} vs micrograd {theirs}")

    print(f"graph: {ours['nodes']} nodes ({ours['neurons']} relu neurons + pairwise sum); outputs agree: {ours['output']:.6f}")
    print(f"{'':28s}{'nabla':>12s}{'micrograd':>12s}{'ratio':>10s}")
    rows = [
        ("build + forward (s)", ours["build_s"] + ours["forward_s"], theirs["build_forward_s"]),
        ("backward (s)", ours["backward_s"], theirs["backward_s"]),
        ("total (s)", ours["total_s"], theirs["total_s"]),
        ("peak memory (MiB)", ours["peak_rss_mib"], theirs["peak_rss_mib"]),
    ]
    for name, a, b in rows:
        print(f"{name:28s}{a:12.3f}{b:12.3f}{b / a:9.0f}x")
    fb = ours["forward_s"] + ours["backward_s"]
    print(f"nabla forward + backward alone (graph already built): {fb:.3f} s, "
          f"{theirs['total_s'] / fb:.0f}x faster than micrograd's forward + backward")


if __name__ == "__main__":
    main()
