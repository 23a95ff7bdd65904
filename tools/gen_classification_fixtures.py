#!/usr/bin/env python3
"""scikit-learn's classification_report on a few label vectors, frozen as
crates/vision/tests/fixtures/classification_report.json for nabla's
per-class precision, recall, F1 and averages (crates/vision/src/metrics.rs).

Every class 0..k-1 is passed as `labels`, so a class that is never true nor
predicted is still a row (as in nabla's confusion matrix); `zero_division=0`
is scikit-learn's default behaviour without its warning.

Run (needs scikit-learn and numpy):

    python3 -m venv /tmp/sk && /tmp/sk/bin/pip install scikit-learn numpy
    /tmp/sk/bin/python tools/gen_classification_fixtures.py
"""

import json
import os

import numpy as np
from sklearn.metrics import classification_report

rng = np.random.RandomState(3)
cases = []
for k, n, skew in [(2, 200, 0.9), (2, 7, 0.5), (3, 60, 0.6), (4, 40, 0.3)]:
    y_true = rng.randint(0, k, size=n)
    # Mostly right, sometimes another class; class k-1 is never predicted for k = 4.
    wrong = rng.rand(n) > skew
    y_pred = np.where(wrong, rng.randint(0, k, size=n), y_true)
    if k == 4:
        y_pred[y_pred == 3] = 0
    report = classification_report(
        y_true, y_pred, labels=list(range(k)), output_dict=True, zero_division=0
    )
    cases.append(
        {
            "classes": k,
            "y_true": y_true.tolist(),
            "y_pred": y_pred.tolist(),
            "report": report,
        }
    )

out = os.path.join(os.path.dirname(__file__), "..", "crates", "vision", "tests", "fixtures")
with open(os.path.join(out, "classification_report.json"), "w") as f:
    json.dump(cases, f, indent=1)
print("wrote", len(cases), "cases")
