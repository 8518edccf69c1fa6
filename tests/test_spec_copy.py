"""tests/data/vectors.json is a verbatim copy of the spec's vectors (checked when the spec is beside us)."""

import json
from pathlib import Path

import pytest

SPEC_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "vectors.json"
LOCAL = Path(__file__).resolve().parent / "data" / "vectors.json"


def test_local_vectors_hold_inputs_and_values():
    local = json.loads(LOCAL.read_text())
    assert "values" in local and "inputs" in local


def test_local_vectors_match_the_spec():
    if not SPEC_VECTORS.is_file():
        pytest.skip(
            f"the spec's vectors are not beside this checkout: {SPEC_VECTORS} does not exist "
            f"(put the spec in ../shared/spec to compare tests/data/vectors.json with it)"
        )
    assert json.loads(SPEC_VECTORS.read_text()) == json.loads(LOCAL.read_text())
