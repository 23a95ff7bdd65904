#!/usr/bin/env python3
"""Coefficients of q(r) ≈ expm1(r) / r on |r| ≤ ln 2 / 2, the polynomial inside
nabla's branch-free exp and expm1 (crates/dense/src/activation.rs, `reduce`).

A Chebyshev fit (mpmath's chebyfit, within a small factor of the minimax
polynomial) of degree 10 has a largest error of 1.8e-17, a tenth of an ulp;
the Taylor series needs degree 12 for the same. Rerun:

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install mpmath
    /tmp/bm/bin/python tools/expm1_coefficients.py
"""

import mpmath as mp

DEGREE = 10

mp.mp.dps = 50
half_ln2 = mp.log(2) / 2


def q(r):
    return mp.expm1(r) / r if r != 0 else mp.mpf(1)


poly, err = mp.chebyfit(q, [-half_ln2, half_ln2], DEGREE + 1, error=True)
print(f"// degree {DEGREE}, largest error {mp.nstr(err, 3)} (mpmath chebyfit)")
for c in reversed(poly):  # chebyfit lists the highest degree first
    print(f"    {float(c)!r},")
