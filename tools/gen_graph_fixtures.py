#!/usr/bin/env python3
"""Freeze PyTorch autograd (float64) values and gradients for nabla's graph tests.

Each case is a program in nabla's graph language. Python evaluates it with
PyTorch: `^` becomes `**` (same precedence and right-associativity, and both
bind tighter than unary minus), functions map to their torch equivalents, and
every named node keeps its gradient (`retain_grad`).

Rerun (needs PyTorch; CI does not):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch
    /tmp/fx/bin/python tools/gen_graph_fixtures.py

It rewrites crates/graph/tests/fixtures/torch_graphs.json.
"""

import json
import pathlib
import re

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/graph/tests/fixtures/torch_graphs.json"

FUNCS = {
    "sigmoid": torch.sigmoid,
    "exp": torch.exp,
    "log": torch.log,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "elu": F.elu,
    "sqrt": torch.sqrt,
    "sin": torch.sin,
    "cos": torch.cos,
    "abs": torch.abs,
    "max": torch.maximum,
    "min": torch.minimum,
    "pow": torch.pow,
}

# (name, source, sets, output); the three shipped examples are read from examples/graphs.
CASES = [
    (
        "arithmetic",
        """
        a = 1.5
        b = -0.75
        c = 2.25
        s = a + b - c
        p = a * b / c
        f = s * p - -a / (b - c) + s / p
        """,
        {},
        None,
    ),
    (
        "powers",
        """
        x = 1.3
        y = 0.7
        f = x^y + pow(y, x) + x^-2 + 2^x + (-x)^2 + x^2^0.5 - y^3
        """,
        {},
        None,
    ),
    (
        "sigmoid_exp_log_tanh",
        """
        u = 0.4
        v = -1.2
        s = sigmoid(u * v - 0.3)
        e = exp(v) + log(u + 2)
        f = tanh(s * e) + log(s) * exp(-u)
        """,
        {},
        None,
    ),
    (
        "relu_elu_abs",
        """
        p = 0.8
        n = -0.6
        r = relu(p) + relu(n) + relu(p + n)
        q = elu(p) * elu(n) + elu(n - p)
        f = r * q + abs(n) * abs(p) + abs(n - p)
        """,
        {},
        None,
    ),
    (
        "sqrt_sin_cos",
        """
        t = 0.9
        k = 2.5
        f = sqrt(k * t) * sin(t * k) + cos(sqrt(t)) / sin(k)
        """,
        {},
        None,
    ),
    (
        "max_min_both_branches",
        """
        a = 0.3
        b = 1.7
        hi = max(a, b)
        lo = min(a, b)
        f = max(hi * a, lo) + min(b - a, a * b) * hi - max(-a, -b) * lo
        """,
        {},
        None,
    ),
    (
        "free_inputs_set_on_command_line",
        """
        # x and w have no line of their own: their values come from --set.
        z = w * x + bias
        f = sigmoid(z) * z
        """,
        {"x": 0.25, "w": -1.5, "bias": 0.5},
        None,
    ),
    (
        "diamond_sharing_and_alias",
        """
        x = 0.7
        a = x * x
        b = sin(x) * a
        c = a + b * x
        d = c * a - b
        out = d / (1 + a)
        y = out
        """,
        {},
        None,
    ),
    (
        "statements_out_of_order_and_output_flag",
        """
        f = g * h + q
        g = exp(h) - p
        h = p * 2
        p = 0.35
        q = cos(g) * p
        """,
        {"p": -0.4},
        "f",
    ),
    (
        "unary_minus_chains",
        """
        x = 1.25
        y = -x^2 + -(-x) * -3 - -(x - 2)^3
        f = -y / -x
        """,
        {},
        None,
    ),
]

STATEMENT = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")
LITERAL = re.compile(r"^-?\s*(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$")


def statements(source):
    out = []
    for line in source.splitlines():
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        m = STATEMENT.match(line)
        assert m, line
        out.append((m.group(1), m.group(2)))
    return out


def evaluate(source, sets, output):
    stmts = statements(source)
    env = {}
    for name, rhs in stmts:
        if LITERAL.match(rhs):
            value = sets.get(name, float(rhs.replace(" ", "")))
            env[name] = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    for name, value in sets.items():
        env.setdefault(name, torch.tensor(value, dtype=torch.float64, requires_grad=True))
    pending = [(n, r) for n, r in stmts if n not in env]
    while pending:
        left = []
        for name, rhs in pending:
            try:
                t = eval(rhs.replace("^", "**"), {"__builtins__": {}, **FUNCS}, dict(env))
            except NameError:
                left.append((name, rhs))
                continue
            if name in env:
                raise SystemExit(f"{name} assigned twice")
            if not t.requires_grad:
                raise SystemExit(f"{name} does not depend on an input")
            # A copy per name, so an alias (y = out) is a node of its own, as in nabla.
            t = t * 1.0 if t.is_leaf or any(t is v for v in env.values()) else t
            t.retain_grad()
            env[name] = t
        assert len(left) < len(pending), f"cannot resolve {left}"
        pending = left
    out_name = output or stmts[-1][0]
    env[out_name].backward()
    nodes = [
        {
            "name": name,
            "value": t.item(),
            "grad": t.grad.item() if t.grad is not None else 0.0,
        }
        for name, t in env.items()
    ]
    return {"output": out_name, "nodes": nodes}


def main():
    torch.set_default_dtype(torch.float64)
    cases = []
    for path in sorted((ROOT / "examples/graphs").glob("*.graph")):
        cases.append((path.stem, path.read_text(), {}, None))
    cases += [(n, "\n".join(l.strip() for l in s.strip().splitlines()) + "\n", st, o) for n, s, st, o in CASES]
    fixtures = []
    for name, source, sets, output in cases:
        result = evaluate(source, sets, output)
        fixtures.append({"name": name, "source": source, "sets": sets, "output_flag": output, **result})
        print(f"{name:45s} {result['output']} = {result['nodes'][-1]['value']:.6g}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps({"generator": "tools/gen_graph_fixtures.py", "torch": torch.__version__, "cases": fixtures}, indent=1) + "\n")
    tmp.replace(OUT)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(fixtures)} cases)")


if __name__ == "__main__":
    main()
