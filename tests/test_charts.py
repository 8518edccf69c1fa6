"""Readable charts from their figure dicts: one palette with distinct teacher / baseline / student
colours, losses of different scale on separate axes, run names in legends, the runs table's columns,
legends kept off colour bars, long class lists trimmed."""

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import _style
from analyses import calibration as cal
from analyses import components as comp
from analyses import soft_labels as sl
from app import run_figures, run_table
from tests.helpers.runs import digits_run


def test_roles_have_three_distinct_colours_and_names_map_to_them():
    assert len({_style.TEACHER, _style.STUDENT, _style.BASELINE, _style.NEUTRAL}) == 4
    assert _style.role_colour("student baseline") == _style.BASELINE
    assert _style.role_colour("student alone (baseline)") == _style.BASELINE
    assert _style.role_colour("distilled student") == _style.STUDENT
    assert _style.role_colour("teacher") == _style.TEACHER
    assert _style.role_colour("perfect calibration") == _style.NEUTRAL


def test_line_trace_sets_only_the_line_properties_it_is_given():
    x, y = [0, 1, 2], [0.5, 0.25, 1.0]
    plain = _style.line_trace(x, y, "student", _style.STUDENT)
    assert plain.to_plotly_json() == {
        "type": "scatter",
        "x": x,
        "y": y,
        "mode": "lines",
        "name": "student",
        "line": {"color": _style.STUDENT},
    }
    styled = _style.line_trace(x, y, "exit 1", "black", mode="lines+markers", dash="dot", width=2.5, legendgroup="g")
    assert styled.mode == "lines+markers" and styled.legendgroup == "g"
    assert styled.line.to_plotly_json() == {"color": "black", "dash": "dot", "width": 2.5}


def test_panels_in_a_row_lays_out_one_row_under_the_titles():
    fig = _style.panels_in_a_row(("left", "right"), widths=[0.25, 0.75], spacing=0.1)
    a, b = fig.layout.xaxis.domain, fig.layout.xaxis2.domain
    assert [t.text for t in fig.layout.annotations] == ["left", "right"]
    assert b[0] - a[1] == pytest.approx(0.1) and (a[1] - a[0]) / (b[1] - b[0]) == pytest.approx(1 / 3)
    assert fig.layout.yaxis.domain == fig.layout.yaxis2.domain and "xaxis3" not in fig.layout


def test_calibration_figures_colour_each_model_apart():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (50,), generator=g)
    res = {
        name: cal.calibration_from_logits(torch.randn(50, 3, generator=g), y, n_bins=5)
        for name in ("teacher", "student baseline", "student")
    }
    d = cal.figure_reliability(res).to_dict()
    bars = [t["marker"]["color"] for t in d["data"] if t["name"] == "accuracy per bin"]
    assert bars == [_style.TEACHER, _style.BASELINE, _style.STUDENT]
    titles = [a["text"] for a in d["layout"]["annotations"]]
    assert all("<br>" in t for t in titles), "panel titles on two lines, so three fit side by side"
    m = cal.figure_metrics(res).to_dict()
    assert len({t["marker"]["color"] for t in m["data"]}) == 3


def _epochs():
    return pd.DataFrame(
        {
            "epoch": [0, 1, 2, 3],
            "val_acc": [0.1, 0.5, 0.7, 0.8],
            "val_agreement": [0.1, 0.5, 0.7, 0.8],
            "val_loss": [2.3, 1.9, 1.2, 0.9],
            "train_loss": [9.0, 8.1, 6.0, 4.2],
        }
    )


def test_training_objective_and_validation_loss_are_on_separate_axes():
    d = run_figures.epoch_metrics(_epochs(), teacher_acc=0.9).to_dict()
    axis = {t["name"]: t["yaxis"] for t in d["data"]}
    assert axis["val loss"] != axis["train loss"] != axis["val acc"]
    assert axis["val acc"] == axis["val agreement"]
    titles = {k: v.get("title", {}).get("text") for k, v in d["layout"].items() if k.startswith("yaxis")}
    assert titles == {"yaxis": "share of samples", "yaxis2": "cross-entropy (nats)", "yaxis3": "objective (nats)"}


@pytest.mark.parametrize("epochs", [3, 12, 50])
def test_epoch_axes_label_whole_epochs_without_crowding(epochs):
    """One tick per epoch up to 12 (no 1.5); a 50-epoch run's three panels get plotly's own whole ticks."""
    ep = pd.DataFrame({"epoch": range(epochs + 1), "val_acc": np.linspace(0.1, 0.9, epochs + 1)})
    ckpt = pd.DataFrame({"epoch": range(1, epochs + 1), "div/kl": np.linspace(1, 0, epochs)})
    for fig in (
        run_figures.epoch_metrics(ep),
        run_figures.compare_curves({"a": ep}, "val_acc"),
        run_figures.checkpoint_divergences(ckpt),
    ):
        axes = [v for k, v in fig.to_dict()["layout"].items() if k.startswith("xaxis")]
        assert axes and all((a.get("dtick") == 1) == (epochs <= 12) for a in axes), axes
        assert all(a.get("dtick") == 1 or a.get("tickformat") == "d" for a in axes), axes


def test_compare_curves_name_runs_by_their_labels():
    runs = [
        {"id": "a1", "name": "", "config": {"pair": "digits", "objective": "kd", "temperature": 4.0, "lam": 0.9}},
        {"id": "b2", "name": "my baseline", "config": {"pair": "digits", "objective": "ce"}},
        {"id": "c3", "name": "", "config": {"pair": "digits", "objective": "kd"}},
    ]
    labels = run_table.unique_labels(runs)
    assert labels == ["kd T=4 λ=0.9 (a1)", "my baseline", "kd T=4 λ=0.9 (c3)"]
    d = run_figures.compare_curves(dict(zip(labels, [_epochs()] * 3)), "val_acc").to_dict()
    assert [t["name"] for t in d["data"]] == labels


def test_runs_table_shows_temperature_lambda_and_final_accuracy(tmp_path):
    from kdcore.jobs import RunStore

    store = RunStore(tmp_path)
    res = digits_run(store, temperature=3.0, lam=0.7)
    df = run_table.runs_table(store)
    assert list(df.columns) == run_table.COLUMNS
    row = df.iloc[0]
    assert row["id"] == res.run_id and row["T"] == 3.0 and row["λ"] == 0.7
    assert row["final val acc"] == pytest.approx(store.get_run(res.run_id)["summary"]["final_val_acc"])
    assert row["name"] == "kd T=3 λ=0.7"
    assert run_table.effective_settings({"pair": "digits", "objective": "kd"}) == (4.0, 0.9)  # kd's defaults
    assert run_table.effective_settings({"pair": "digits", "objective": "ce"}) == (None, None)


def test_class_curves_keep_the_teachers_top_classes():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 30, generator=g) * 3
    res = sl.class_probabilities(t, [1.0, 4.0], samples=[0, 1, 2])
    d = sl.figure_class_probabilities(res, top=6).to_dict()
    shown = {tr["name"] for tr in d["data"] if tr.get("showlegend") is not False} - {"the rest"}
    assert "the rest" in {tr["name"] for tr in d["data"]}  # the 24 other classes, as one curve
    assert len(shown) == 6
    peak = res[res["class_index"] >= 0].groupby("class_name")["probability"].max().sort_values(ascending=False)
    assert shown == {f"class {c}" for c in peak.index[:6]}
    assert "top 6 of 30" in d["layout"]["title"]["text"]


def test_token_figure_legend_sits_below_the_colour_bar_and_labels_are_coloured_by_kind():
    g = torch.Generator().manual_seed(0)
    res = comp.token_components(
        torch.randn(8, 6, generator=g),
        torch.randn(8, 6, generator=g),
        tokens=["<s>", "a", "b", "<c>", "a", "b", "<s>", "c"],
        kinds=("fkl", "rkl"),
    )
    d = comp.token_figure(res, position_kind=torch.tensor([-1, 0, 0, 0, 1, 1, -1, 0])).to_dict()
    bar = next(t for t in d["data"] if t["type"] == "heatmap")["colorbar"]
    legend = d["layout"]["legend"]
    assert (legend["y"], legend["yanchor"]) == (0, "bottom")  # beside the entropy panel ...
    assert bar["y"] - bar["len"] / 2 >= 0.35  # ... the colour bar beside the heatmap
    ticks = d["layout"]["xaxis2"]["ticktext"]
    assert "color:#d62728" in ticks[4] and "color:#1f77b4" in ticks[1]
    assert d["layout"]["xaxis2"]["tickangle"] == -90


def test_divergence_parts_do_not_wear_model_colours():
    g = torch.Generator().manual_seed(0)
    res = comp.compute(
        torch.randn(40, 5, generator=g),
        torch.randn(40, 5, generator=g),
        torch.randint(0, 5, (40,), generator=g),
        temperature=4.0,
    )
    roles = {_style.TEACHER, _style.STUDENT, _style.BASELINE}
    for fig in (comp.rules_figure(res), comp.class_figure(res), comp.dkd_figure(res)):
        colours = {t.marker.color for t in fig.data}
        assert colours and not colours & roles, colours
