"""An independent float64 numpy expected calibration error, the reference the kdcore.metrics tests use."""

from __future__ import annotations

import numpy as np


def ece_numpy(p: np.ndarray, y: np.ndarray, m: int = 15) -> float:
    """ECE of probabilities p [N, C] against labels y [N] over m equal-width confidence bins (b/m, (b+1)/m]."""
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for b in range(m):
        inside = (conf > b / m) & (conf <= (b + 1) / m)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return total
