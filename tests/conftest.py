"""Shared fixtures: seeded RNGs and the spec's test vectors."""
import json
import os
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
