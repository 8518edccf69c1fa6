"""analyses.procedures: the figures of blockwise (every stone's accuracy), pwkd (stages and sub-teachers)
and zskt (generated samples over time, accuracy on real data), from recorded metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.procedures import (
    pwkd_figure,
    samples_grid,
    stone_accuracy_figure,
    stone_table,
    zskt_accuracy_figure,
    zskt_samples_figure,
)
from kdcore.validation import InvalidParameterError
from tests.helpers.figdata import arr


def _stone_epochs(rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {"epoch": [0, 1, 2], "step": [0, 5, 10], "val_acc": rng.uniform(size=3),
         "val_acc_stone2": rng.uniform(size=3), "val_acc_stone1": rng.uniform(size=3)}
    )  # fmt: skip


def test_the_stone_figure_has_a_line_per_stone_in_order_and_the_student_last():
    ep = _stone_epochs(np.random.default_rng(0))
    fig = stone_accuracy_figure(ep, teacher_acc=0.9).to_plotly_json()
    names = [t["name"] for t in fig["data"]]
    assert names == ["stone 1", "stone 2", "student (stone 3)"]
    assert arr(fig["data"][1]["y"]) == pytest.approx(ep["val_acc_stone2"].to_numpy()[1:])  # epochs ≥ 1
    table = stone_table(ep, {"blockwise": {"student_stages": ["a", "b", "c"], "teacher_stages": ["x", "y", "z"]}})
    assert table["weight"].tolist() == [0.25, 0.5, 1.0]
    assert table["val acc"].tolist() == pytest.approx(ep.iloc[-1][["val_acc_stone1", "val_acc_stone2", "val_acc"]])
    assert table["back"].tolist() == ["teacher after x", "teacher after y", "student head"]
    with pytest.raises(InvalidParameterError, match="epoch metrics"):
        stone_accuracy_figure(ep.to_dict())


def test_the_pwkd_figure_draws_each_stage_and_its_sub_teacher():
    stages = [{"stage": k + 1, "width": w, "start_epoch": k + 1, "end_epoch": k + 1, "teacher_val_acc": a}
              for k, (w, a) in enumerate([(0.5, 0.6), (1.0, 0.9)])]  # fmt: skip
    ep = pd.DataFrame({"epoch": [0, 1, 2], "val_acc": [0.1, 0.4, 0.7]})
    fig = pwkd_figure(ep, {"pwkd": {"stages": stages}}).to_plotly_json()
    sub = next(t for t in fig["data"] if t["name"] == "sub-teacher")
    assert arr(sub["y"]).tolist() == [0.6, 0.6, 0.9, 0.9]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["T×0.5", "T×1"]
    with pytest.raises(InvalidParameterError, match="pwkd run"):
        pwkd_figure(ep, {})


def test_the_sample_grid_puts_one_epoch_per_row_each_sample_scaled_to_0_1():
    rng = np.random.default_rng(1)
    samples = {f"epoch_{e}": rng.normal(size=(3, 1, 4, 5)) * (e + 1) for e in (0, 2, 10)}
    epochs, grid = samples_grid(samples)
    assert epochs == [0, 2, 10] and grid.shape == (3 * 5, 3 * 6, 1)
    block = grid[5:9, 6:11, 0]  # epoch 2, sample 1 (after the 1-pixel gaps)
    a = samples["epoch_2"][1, 0]
    assert block == pytest.approx((a - a.min()) / (a.max() - a.min()))
    fig = zskt_samples_figure(samples).to_plotly_json()
    assert fig["layout"]["yaxis"]["ticktext"] == ["epoch 0", "epoch 2", "epoch 10"]
    rgb = zskt_samples_figure({"epoch_0": rng.normal(size=(2, 3, 4, 4))}).to_plotly_json()
    assert rgb["data"][0]["type"] == "image"
    with pytest.raises(InvalidParameterError, match="epoch_<e>"):
        samples_grid({"x": np.zeros((1, 1, 2, 2))})


def test_the_zskt_accuracy_figure_shows_the_student_on_real_data():
    ep = pd.DataFrame({"epoch": [1, 2], "val_acc": [0.3, 0.5]})
    fig = zskt_accuracy_figure(ep, 0.95, 0.45).to_plotly_json()
    assert arr(fig["data"][0]["y"]).tolist() == [0.3, 0.5]
    assert len(fig["layout"]["shapes"]) == 2
