"""Views of BYOT, education and Tf-KD (analyses/self_distill.py, app/strategy_figures.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses import self_distill as sd
from app.strategy_figures import grades_from_epochs, strategy_figures


def _byot_epochs() -> pd.DataFrame:
    rows = [{"epoch": 0, "teacher_val_acc": 1.0}]
    rows += [
        {
            "epoch": e,
            "val_acc": 0.5 + e / 10,
            "val_acc_exit1": 0.3 + e / 20,
            "val_acc_exit2": 0.5 + e / 10,
            "val_acc_exit10": 0.1,
            "val_acc_exit_mean": 0.4,
        }
        for e in (1, 2, 3)
    ]
    return pd.DataFrame(rows)


def _education_epochs() -> pd.DataFrame:
    grade, active = [1, 1, 2, 3, 3], [3, 3, 6, 10, 10]
    rows = [{"epoch": 0}]
    for e, (g, n) in enumerate(zip(grade, active), start=1):
        row = {"epoch": e, "grade": g, "active_classes": n, "val_acc": 0.1 * e}
        row.update({f"val_acc_grade{h}": 0.2 * h for h in range(1, g + 1)})
        rows.append(row)
    return pd.DataFrame(rows)


def test_exit_figure_orders_exits_numerically_with_the_own_head_last():
    ep = _byot_epochs()
    assert sd.exit_columns(ep) == ["val_acc_exit1", "val_acc_exit2", "val_acc_exit10"]
    fig = sd.exit_accuracy_figure(ep)
    names = [t.name for t in fig.data]
    assert names == ["exit 1", "exit 2", "exit 3 (own head)", "mean of the exits' logits"]
    assert list(fig.data[0].y) == pytest.approx([0.35, 0.4, 0.45])  # epoch 0 left out
    with pytest.raises(ValueError, match="not a 'byot' run"):
        sd.exit_accuracy_figure(pd.DataFrame({"epoch": [1], "val_acc": [0.5]}))


def test_grades_figure_shows_active_classes_and_accuracy_per_grade():
    ep = _education_epochs()
    grades = grades_from_epochs(ep)
    assert grades == [(0, 3), (3, 6), (6, 10)]
    mat = sd.active_classes_matrix(ep, grades)  # [C, E]
    expected = np.full((10, 5), np.nan)
    for j, g in enumerate([1, 1, 2, 3, 3]):
        for h, (m, n) in enumerate(grades[:g], start=1):
            expected[m:n, j] = h
    np.testing.assert_array_equal(mat, expected)
    fig = sd.grades_figure(ep, grades)
    lines = [t for t in fig.data if t.type == "scatter"]
    assert [t.name.split(" (")[0] for t in lines] == ["grade 1", "grade 2", "grade 3", "all classes"]
    assert np.isnan(lines[1].y[0]) and lines[1].y[2] == pytest.approx(0.4)


def test_virtual_teacher_figure_is_the_losses_virtual_teacher():
    fig = sd.virtual_teacher_figure(10, 2, a=0.99, temperature=20.0)
    p = np.asarray(fig.data[0].y)
    b = 0.01 / 9  # independent: softmax of the probabilities over T (the code's softening)
    e_t, e_o = np.exp(0.99 / 20), np.exp(b / 20)
    assert p[2] == pytest.approx(e_t / (e_t + 9 * e_o), rel=1e-6) and p.sum() == pytest.approx(1.0, rel=1e-6)
    assert list(fig.data[1].y) == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def test_strategy_figures_pick_the_objective():
    assert len(strategy_figures({"config": {"objective": "byot"}}, _byot_epochs())) == 1
    assert len(strategy_figures({"config": {"objective": "education_distillation"}}, _education_epochs())) == 1
    assert strategy_figures({"config": {"objective": "kd"}}, _byot_epochs()) == []
    assert strategy_figures({"config": {"objective": "byot"}}, pd.DataFrame()) == []
