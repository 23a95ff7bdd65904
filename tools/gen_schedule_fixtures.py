#!/usr/bin/env python3
"""PyTorch's learning-rate schedules, frozen as
crates/vision/tests/fixtures/lr_schedules.json for nabla's per-batch
schedules (crates/vision/src/schedule.rs):

- one-cycle: torch.optim.lr_scheduler.OneCycleLR(max_lr=0.01, total_steps=40,
  pct_start=0.25, anneal_strategy="cos", div_factor=25, final_div_factor=1e4,
  cycle_momentum=False), the rate of each of the 40 steps;
- cosine: CosineAnnealingLR(T_max=40, eta_min=0) from 0.01, 40 steps.

Run (needs torch):

    python3 -m venv /tmp/bm && /tmp/bm/bin/pip install torch numpy
    /tmp/bm/bin/python tools/gen_schedule_fixtures.py
"""

import json
import os

import torch

STEPS = 40
LR = 0.01


def rates(make):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR)
    sched = make(opt)
    out = []
    for _ in range(STEPS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


cases = {
    "steps": STEPS,
    "lr": LR,
    "one_cycle": rates(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o,
            max_lr=LR,
            total_steps=STEPS,
            pct_start=0.25,
            anneal_strategy="cos",
            div_factor=25.0,
            final_div_factor=1e4,
            cycle_momentum=False,
        )
    ),
    "cosine": rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.0)),
    "torch": torch.__version__,
}
out = os.path.join(os.path.dirname(__file__), "..", "crates", "vision", "tests", "fixtures")
with open(os.path.join(out, "lr_schedules.json"), "w") as f:
    json.dump(cases, f, indent=1)
print("wrote", os.path.join(out, "lr_schedules.json"))
