#!/usr/bin/env python3
"""Non-test Rust lines per crate, and the CLI's share of them.

A line counts when it is in `crates/*/src/**.rs` and outside a
`#[cfg(test)]` item (the module or function that follows the attribute, to
its closing brace). Integration tests (`crates/*/tests/`), benches and
build output are not counted. Files over 600 such lines are listed with
whether their first 40 lines say why ("Over 600 lines: …").

    python3 tools/loc.py            # table per crate, share of crates/cli
    python3 tools/loc.py --files    # every file, longest first
    python3 tools/loc.py --imports  # import circles between a crate's files

An import is a `crate::MODULE` path outside test code in a file other than
the crate root (`lib.rs`/`main.rs`, which only declares the modules); a
circle is a set of files that reach each other through such paths.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIMIT = 600


def non_test_lines(text: str) -> int:
    return len(non_test_code(text))


def non_test_code(text: str) -> list[str]:
    lines = text.splitlines()
    kept, i = [], 0
    while i < len(lines):
        if lines[i].strip().startswith("#[cfg(test)]"):
            # Skip the attribute and the item after it, to its matching brace
            # (or to its `;` for a one-line item such as `mod tests;`).
            depth, started = 0, False
            i += 1
            while i < len(lines):
                code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[i].split("//")[0])
                depth += code.count("{") - code.count("}")
                started = started or "{" in code
                i += 1
                if (started and depth <= 0) or (not started and code.rstrip().endswith(";")):
                    break
            continue
        kept.append(lines[i])
        i += 1
    return kept


def import_circles() -> list[list[str]]:
    circles = []
    for src in sorted((ROOT / "crates").glob("*/src")):
        files = {f: f.relative_to(src).with_suffix("").as_posix() for f in src.glob("**/*.rs")}
        modules = {m.removesuffix("/mod"): f for f, m in files.items() if m not in ("lib", "main")}
        edges: dict[pathlib.Path, set[pathlib.Path]] = {f: set() for f in modules.values()}
        for f in modules.values():
            code = "\n".join(l.split("//")[0] for l in non_test_code(f.read_text()))
            used = set(re.findall(r"crate::(\w+)", code))
            for group in re.findall(r"crate::\{([^}]*)\}", code):
                used |= set(re.findall(r"(?:^|,)\s*(\w+)", group))
            edges[f] = {modules[m] for m in used if m in modules and modules[m] != f}
        # Strongly connected components (Tarjan).
        index, low, stack, on, counter = {}, {}, [], set(), [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in edges[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                scc = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    scc.append(w)
                    if w == v:
                        break
                if len(scc) > 1:
                    circles.append(sorted(str(x.relative_to(ROOT)) for x in scc))

        for v in edges:
            if v not in index:
                visit(v)
    return circles


def main() -> None:
    files = sorted((ROOT / "crates").glob("*/src/**/*.rs"))
    per_file = {f.relative_to(ROOT): non_test_lines(f.read_text()) for f in files}
    per_crate: dict[str, int] = {}
    for f, n in per_file.items():
        per_crate[f.parts[1]] = per_crate.get(f.parts[1], 0) + n
    total = sum(per_crate.values())
    if "--imports" in sys.argv:
        circles = import_circles()
        for c in circles:
            print("circle: " + " <-> ".join(c))
        print(f"{len(circles)} import circles")
        sys.exit(1 if circles else 0)
    if "--files" in sys.argv:
        for f, n in sorted(per_file.items(), key=lambda kv: -kv[1]):
            print(f"{n:6}  {f}")
        return
    for name, n in sorted(per_crate.items(), key=lambda kv: -kv[1]):
        print(f"{name:10} {n:6}  {100 * n / total:5.1f} %")
    print(f"{'total':10} {total:6}")
    long = [(f, n) for f, n in per_file.items() if n > LIMIT]
    for f, n in sorted(long, key=lambda kv: -kv[1]):
        head = " ".join((ROOT / f).read_text().splitlines()[:40]).lower().replace("//!", "")
        reason = "reason given" if f"over {LIMIT} lines" in " ".join(head.split()) else "NO REASON AT TOP"
        print(f"over {LIMIT}: {f} ({n} lines, {reason})")


if __name__ == "__main__":
    main()
