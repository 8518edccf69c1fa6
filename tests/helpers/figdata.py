"""Reading figure dicts in tests."""

import base64

import numpy as np


def arr(v):
    """A figure-dict array: plotly >= 6 stores numpy arrays as {'dtype', 'bdata', 'shape'}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(n) for n in v["shape"].split(",")]) if "shape" in v else a
    return np.asarray(v)
