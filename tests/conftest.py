"""Shared fixtures: seeded RNGs and the spec's test vectors."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import sample_models  # registers the sample pairs in kdcore's pair registry (tests need no install)

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec"
VECTORS_LOCAL = Path(__file__).resolve().parent / "data" / "vectors.json"


@pytest.fixture(autouse=True, scope="session")
def _sample_pairs_in_subprocesses(tmp_path_factory):
    """Worker, CLI and app processes find the sample pairs through the `kdworkbench.pairs` entry
    point, as after `pip install -e .`: a distribution's metadata declaring it goes on PYTHONPATH.
    In this process `import sample_models` above registered them."""
    sample_models.register_pairs()
    site = tmp_path_factory.mktemp("site")
    info = site / "kdwb_test_sample_pairs-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kdwb-test-sample-pairs\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[kdworkbench.pairs]\nsample_models = sample_models:register_pairs\n")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site)] + ([before] if before else []))
    yield
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before


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


@pytest.fixture
def hub_offline(monkeypatch):
    """Hugging Face libraries that never reach the network (tests build their models from configs)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
