#!/usr/bin/env python3
"""Non-test Rust lines per crate, and the CLI's share of them.

A line counts when it is in `crates/*/src/**.rs` and outside a
`#[cfg(test)]` item (the module or function that follows the attribute, to
its closing brace). Integration tests (`crates/*/tests/`), benches and
build output are not counted. Files over 600 such lines are listed with
whether their first 40 lines say why ("Over 600 lines: …").

    python3 tools/loc.py            # table per crate, share of crates/cli
    python3 tools/loc.py --files    # every file, longest first
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIMIT = 600


def non_test_lines(text: str) -> int:
    lines = text.splitlines()
    count, i = 0, 0
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
        count += 1
        i += 1
    return count


def main() -> None:
    files = sorted((ROOT / "crates").glob("*/src/**/*.rs"))
    per_file = {f.relative_to(ROOT): non_test_lines(f.read_text()) for f in files}
    per_crate: dict[str, int] = {}
    for f, n in per_file.items():
        per_crate[f.parts[1]] = per_crate.get(f.parts[1], 0) + n
    total = sum(per_crate.values())
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
