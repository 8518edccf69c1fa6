"""analyses.leaderboard.figure: the bars, error bars, student-alone line and gain labels read back from the
figure's dict equal the table's numbers (from a numpy computation on random seeded per-seed values)."""

import numpy as np
import pandas as pd
import pytest

from analyses import _style
from analyses.leaderboard import FLOOR, figure, ordered
from tests.helpers.figdata import arr


def _table(seed: int = 0, metric: str = "val_acc") -> tuple[pd.DataFrame, dict]:
    """A leaderboard table built in float64 numpy from random per-seed values (3 seeds, 4 methods)."""
    rng = np.random.default_rng(seed)
    methods = ["ce", "kd", "dkd", "cakd"]
    best = {m: rng.uniform(0.80, 0.97, size=3) for m in methods}  # [seeds]
    final = {m: best[m] - rng.uniform(0, 0.03, size=3) for m in methods}
    rows = []
    for m in methods:
        gain = best[m] - best["ce"] if metric == "val_acc" else best["ce"] - best[m]
        rows.append(
            {
                "method": m,
                "metric": metric,
                "best_mean": best[m].mean(),
                "best_std": best[m].std(ddof=1),
                "final_mean": final[m].mean(),
                "final_std": final[m].std(ddof=1),
                "gain_mean": gain.mean(),
            }
        )
    t = pd.DataFrame(rows)
    order = -t["best_mean"] if metric == "val_acc" else t["best_mean"]
    t["rank"] = order.rank(method="min").astype("Int64")
    return t, {"best": best, "final": final}


def test_bars_error_bars_line_and_gains_match_the_table():
    table, raw = _table()
    fig = figure(table, pair="digits").to_dict()
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    assert [b["name"] for b in bars] == ["best epoch", "final epoch"]
    expected_order = ["ce"] + [m for m in table.sort_values("rank")["method"] if m != "ce"]
    for b, which in zip(bars, ("best", "final")):
        assert list(b["x"]) == expected_order
        np.testing.assert_allclose(arr(b["y"]), [raw[which][m].mean() for m in expected_order], rtol=1e-12)
        np.testing.assert_allclose(arr(b["error_y"]["array"]), [raw[which][m].std(ddof=1) for m in expected_order])
        assert b["error_y"]["visible"] is True
    assert bars[0]["marker"]["color"] == _style.STUDENT
    (line,) = fig["layout"]["shapes"]
    assert line["y0"] == line["y1"] == pytest.approx(raw["best"]["ce"].mean())
    assert line["line"]["color"] == _style.BASELINE
    assert any(t.get("name") == "student alone (best epoch)" for t in fig["data"])
    labels = {a["x"]: a["text"] for a in fig["layout"]["annotations"]}
    assert set(labels) == {"kd", "dkd", "cakd"}  # no gain label on the student alone
    for m in labels:
        gain = (raw["best"][m] - raw["best"]["ce"]).mean() * 100
        assert labels[m] == f"{gain:+.1f} pts"
    assert fig["layout"]["yaxis"]["title"]["text"] == "validation accuracy"
    assert fig["layout"]["xaxis"]["title"]["text"] == "method"
    assert "digits" in fig["layout"]["title"]["text"] and "mean ± std" in fig["layout"]["title"]["text"]
    low, high = fig["layout"]["yaxis"]["range"]
    tops = [raw[w][m].mean() + raw[w][m].std(ddof=1) for w in ("best", "final") for m in raw["best"]]
    bottoms = [raw[w][m].mean() - raw[w][m].std(ddof=1) for w in ("best", "final") for m in raw["best"]]
    assert low <= min(bottoms) and high >= max(tops)  # every error bar inside the axis


def test_a_loss_leaderboard_is_labelled_lower_is_better():
    table, raw = _table(seed=3, metric="val_loss")
    fig = figure(table).to_dict()
    assert fig["layout"]["yaxis"]["title"]["text"] == "validation loss (lower is better)"
    labels = {a["x"]: a["text"] for a in fig["layout"]["annotations"]}
    assert labels["kd"] == f"{(raw['best']['ce'] - raw['best']['kd']).mean():+.4f}"
    assert list(ordered(table)["method"])[0] == FLOOR


def test_unfinished_methods_are_left_out_and_single_seeds_have_no_error_bar():
    table, _ = _table(seed=1)
    table.loc[table["method"] == "cakd", ["best_mean", "final_mean", "gain_mean"]] = np.nan
    table.loc[:, ["best_std", "final_std"]] = np.nan  # one seed each
    fig = figure(table).to_dict()
    bar = fig["data"][0]
    assert "cakd" not in list(bar["x"])
    assert (arr(bar["error_y"]["array"]) == 0).all()


def test_bad_tables_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="compare_methods"):
        figure([1, 2])
    with pytest.raises(ValueError, match=r"lacks the columns \['gain_mean'"):
        figure(_table()[0].drop(columns=["gain_mean"]))
    empty = _table()[0].assign(best_mean=np.nan)
    with pytest.raises(ValueError, match="no finished run"):
        figure(empty)
