"""tests/data/vectors.json is a verbatim copy of the spec's vectors (when the spec is beside us)."""
import json
from pathlib import Path

SPEC_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "vectors.json"
LOCAL = Path(__file__).resolve().parent / "data" / "vectors.json"


def test_local_vectors_match_spec_when_present():
    local = json.loads(LOCAL.read_text())
    assert "values" in local and "inputs" in local
    if SPEC_VECTORS.exists():
        assert json.loads(SPEC_VECTORS.read_text()) == local
