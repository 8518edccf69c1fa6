"""Shared fixtures: seeded RNGs and the spec's test vectors."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec"
VECTORS_LOCAL = Path(__file__).resolve().parent / "data" / "vectors.json"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The suite's tensors are tiny: intra-op threads only add contention on a 2-core machine
    (a float64 log_softmax took ~10 ms per call with 2 threads). Restored at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_plotly_template():
    """Figures are compared through their dicts with the plotly template off (CONVENTIONS.md §10)."""
    import plotly.io as pio
    before = pio.templates.default
    pio.templates.default = None
    yield
    pio.templates.default = before


@pytest.fixture(scope="session")
def vectors():
    """METHODS.md's worked numbers (a copy lives in tests/data so CI does not depend on ../shared)."""
    return json.loads(VECTORS_LOCAL.read_text())


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An isolated run-store/data directory for one test."""
    d = tmp_path / "kdwb"
    monkeypatch.setenv("KDWB_HOME", str(d))
    return d
