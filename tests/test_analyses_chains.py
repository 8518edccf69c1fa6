"""analyses.chains: a chain's table and figure from its summary (kdcore/jobs/chain.py)."""

import numpy as np
import pytest

from analyses.chains import COLUMNS, chain_figure, chain_table
from kdcore.validation import InvalidParameterError
from tests.helpers.figdata import arr


def _stage(i: int, names: tuple[str, str], parameters: tuple[int, int], accs: tuple[float, float, float]) -> dict:
    """Stage i of a chain's summary: (teacher, student) names and parameter counts, (final, best) val.
    accuracy of the student and its teacher's val. accuracy."""
    return {
        "stage": i,
        "teacher": names[0],
        "student": names[1],
        "teacher_parameters": parameters[0],
        "student_parameters": parameters[1],
        "final_val_acc": accs[0],
        "best_val_acc": accs[1],
        "teacher_val_acc": accs[2],
    }


def _summary(rng: np.random.Generator) -> dict:
    accs = [float(a) for a in rng.uniform(0.5, 1.0, size=4)]  # teacher, assistant, student (+ one spare)
    return {
        "chain": "takd",
        "teacher_val_acc": accs[0],
        "measured": {"student alone": 0.6},
        "stages": [
            _stage(1, ("teacher", "assistant 1"), (24058, 10078), (accs[1], accs[3], accs[0])),
            _stage(2, ("assistant 1", "student"), (10078, 3022), (accs[2], accs[2], accs[1])),
        ],
    }


def test_chain_table_rows_and_gaps():
    s = _summary(np.random.default_rng(0))
    t = chain_table(s)
    assert list(t.columns) == COLUMNS
    assert t["model"].tolist() == ["teacher", "assistant 1", "student"]
    assert t["parameters"].tolist() == [24058, 10078, 3022]
    acc = [s["teacher_val_acc"]] + [st["final_val_acc"] for st in s["stages"]]
    np.testing.assert_allclose(t["final val acc"].to_numpy(dtype=float), acc)
    np.testing.assert_allclose(t["gap to teacher"].to_numpy(dtype=float), [acc[0] - a for a in acc])
    assert np.isnan(t["gap to its teacher"].iloc[0])  # the teacher was taught by nobody
    np.testing.assert_allclose(
        t["gap to its teacher"].iloc[1:].to_numpy(dtype=float), [acc[0] - acc[1], acc[1] - acc[2]]
    )


def test_chain_figure_shows_the_accuracy_along_the_chain():
    s = _summary(np.random.default_rng(1))
    fig = chain_figure(s).to_dict()
    (bar,) = fig["data"]
    np.testing.assert_allclose(arr(bar["y"]), [s["teacher_val_acc"]] + [st["final_val_acc"] for st in s["stages"]])
    assert bar["x"][0].startswith("teacher") and "3,022 params" in bar["x"][-1]
    gap = s["stages"][1]["teacher_val_acc"] - s["stages"][1]["final_val_acc"]
    assert bar["text"][-1] == f"{-100 * gap:+.1f} pts" and bar["text"][0] == ""
    assert fig["layout"]["title"]["text"] == "TAKD: accuracy along the chain"
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["student alone"]


def test_a_summary_without_stages_is_refused():
    with pytest.raises(InvalidParameterError, match="chain's summary .*Got dict without stages"):
        chain_table({"final_val_acc": 0.9})
    with pytest.raises(InvalidParameterError, match="Got NoneType"):
        chain_figure(None)
