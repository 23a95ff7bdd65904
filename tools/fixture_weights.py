"""The weights and logits of the parity fixtures, shared by gen_resnet_fixtures.py
and gen_efficientnet_fixtures.py; the Rust tests (crates/vision/tests/parity/)
draw the same numbers with nabla's numpy-compatible generator."""

import math

import numpy as np
import torch


def scaled(name, v):
    """The weight for key `name` from standard normal draws `v` (float64)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5 + 0.5 * v * v
    if leaf == "running_mean" or leaf == "bias":
        return 0.1 * v
    if v.ndim == 1:  # BatchNorm weight; small on each residual branch's last
        # BatchNorm (ResNet's `.bn2.`, EfficientNet's `._bn2.`) so that
        # activations stay near unit scale through the residual sums
        return 0.3 + 0.05 * v if "bn2." in name else 1.0 + 0.1 * v
    fan_in = int(np.prod(v.shape[1:]))
    return v * math.sqrt(2.0 / fan_in)


def parity(model, description):
    """`model` (10 classes) in evaluation mode with weights drawn from numpy's
    generator (seed 7, one np.random.randn(*shape) per state-dict key in sorted
    order, scaled by `scaled`, num_batches_tracked skipped), then the logits
    of an input of np.random.randn(2, 3, 64, 64) from the same generator."""
    model.eval()
    sd = model.state_dict()
    np.random.seed(7)
    keys, new = [], {}
    for name in sorted(sd):
        if name.endswith("num_batches_tracked"):
            new[name] = sd[name]
            continue
        shape = list(sd[name].shape)
        keys.append([name, shape])
        new[name] = torch.from_numpy(scaled(name, np.random.randn(*shape))).float()
    model.load_state_dict(new)
    x = np.random.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).float()).double().numpy()
    return {"seed": 7, "model": description, "keys": keys,
            "input_shape": [2, 3, 64, 64], "logits": logits.tolist()}
