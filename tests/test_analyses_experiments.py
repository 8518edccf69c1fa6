"""Figures of the experiments' reports (analyses/experiments.py) on scripted reports: the capacity heatmap's
cells are the grid's gains (rows the sizes largest first, columns T), the sweep figure marks the chosen
values, and a report of another kind is refused."""

from __future__ import annotations

import numpy as np
import pytest

from analyses import experiments as ex
from kdcore.validation import InvalidParameterError


def _capacity(rng: np.random.Generator) -> dict:
    sizes = [("rung 1", 19258), ("rung 2", 10078), ("student", 3022)]
    grid = []
    for size, params in sizes:
        for t in (1.0, 4.0, 10.0):
            g = float(rng.normal(0, 0.02))
            grid.append(
                {"size": size, "parameters": params, "temperature": t, "gain_mean": g, "gain": f"{g:+.4f} [..]"}
            )
    return {"kind": "capacity", "grid": grid, "metric": "val_acc", "spec": {}}


def test_capacity_heatmap_cells_are_the_grid_gains():
    report = _capacity(np.random.default_rng(0))
    fig = ex.capacity_heatmap(report)
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=float)
    expected = np.array([[g["gain_mean"] for g in report["grid"][i * 3 : i * 3 + 3]] for i in range(3)])
    np.testing.assert_allclose(z, expected)
    assert list(heat.y) == ["rung 1 (19,258)", "rung 2 (10,078)", "student (3,022)"]
    assert list(heat.x) == ["T=1", "T=4", "T=10"] and heat.zmid == 0
    assert heat.zmax == pytest.approx(np.abs(expected).max()) and heat.text[0][0] == report["grid"][0]["gain"]
    table = ex.report_tables(report)
    assert list(next(iter(table.values())).columns) == ["size", "T=1", "T=4", "T=10"]


def test_sweep_figure_marks_the_chosen_values_and_other_kinds_are_refused():
    rows = [
        {
            "phase": "floor",
            "variant": "floor",
            "temperature": None,
            "lam": None,
            "score_mean": 0.9,
            "score_low": 0.89,
            "score_high": 0.91,
        },
        {
            "phase": "temperature",
            "variant": "T=1",
            "temperature": 1.0,
            "lam": 0.9,
            "score_mean": 0.91,
            "score_low": 0.90,
            "score_high": 0.92,
        },
        {
            "phase": "temperature",
            "variant": "T=4",
            "temperature": 4.0,
            "lam": 0.9,
            "score_mean": 0.95,
            "score_low": 0.93,
            "score_high": 0.97,
        },
        {
            "phase": "lam",
            "variant": "λ=0.5",
            "temperature": 4.0,
            "lam": 0.5,
            "score_mean": 0.94,
            "score_low": 0.92,
            "score_high": 0.96,
        },
    ]
    report = {
        "kind": "plan",
        "table": rows,
        "metric": "val_acc",
        "curves": {},
        "chosen": {"temperature": {"value": 4.0, "score_mean": 0.95}, "lam": {"value": 0.5, "score_mean": 0.94}},
        "spec": {"rule": {"metric": "best"}},
    }
    fig = ex.sweep_figure(report)
    stars = [t for t in fig.data if t.name and t.name.startswith("chosen")]
    assert [(t.name, t.x[0], t.y[0]) for t in stars] == [("chosen T", 4.0, 0.95), ("chosen λ", 0.5, 0.94)]
    sweep = next(t for t in fig.data if t.name == "T sweep")
    np.testing.assert_allclose(sweep.error_y.array, [0.01, 0.02])
    np.testing.assert_allclose(sweep.error_y.arrayminus, [0.01, 0.02])
    with pytest.raises(InvalidParameterError, match="capacity"):
        ex.capacity_heatmap(report)
    with pytest.raises(InvalidParameterError, match="experiment's report"):
        ex.report_figures({"kind": "other"})
