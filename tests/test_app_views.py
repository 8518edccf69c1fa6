"""AppTest for the views that fit the model: the logit toy, multi-label soft labels and F1, the language
model's own intro, divergence formulas and copy-vs-local split, and the Distill runs table."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.apptest import kdwb_home, open_page
from tests.helpers.runs import digits_run


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with kdwb_home(tmp_path_factory, "kdwb_views") as d:
        from kdcore.jobs import RunStore

        res = digits_run(RunStore(d), temperature=3.0, lam=0.8)
        yield {"dir": d, "run_id": res.run_id}


def _open(page: str, pair: str = "digits") -> AppTest:
    return open_page(page, sample_pair=pair, probe_size=32)


def _titles(at: AppTest) -> list[str]:
    return [
        (json.loads(c.proto.spec).get("layout", {}).get("title") or {}).get("text", "") for c in at.get("plotly_chart")
    ]


def _text(at: AppTest) -> str:
    return " ".join([m.value for m in at.markdown] + [t.value for t in at.title] + [x.value for x in at.latex])


def test_logit_toy_follows_its_temperature(home):
    at = _open("soft_labels")
    toy = [t for t in _titles(at) if t.startswith("The logit toy")]
    assert toy == ["The logit toy at T = 4: T²·KL = 1.377 nats"]
    assert any("Gradient size against temperature" in t for t in _titles(at))
    next(s for s in at.slider if s.key == "toy_temperature").set_value(1.0).run()
    assert not at.exception
    assert any(t.startswith("The logit toy at T = 1:") for t in _titles(at))
    labels = {m.label for m in at.metric}
    assert {"‖gradient‖ without T²", "‖gradient‖ with T²"} <= labels


def test_multilabel_soft_labels_are_per_label_sigmoids(home):
    at = _open("soft_labels", "shapes_multilabel")
    titles = _titles(at)
    assert titles[0].startswith("Per-label soft labels of one input") and "σ(z / T)" in titles[1]
    labels = {m.label for m in at.metric}
    assert "Teacher binary entropy" in labels
    assert not any("p_y" in lab or "Dark knowledge" in lab for lab in labels)
    assert "sigmoid per label" in _text(at)
    table = at.dataframe[0].value
    assert set(table["temperature"].astype(float)) == {4.0}, "the table's statistics are at the slider's T"


def test_multilabel_overview_has_f1_and_a_chart(home):
    at = _open("overview", "shapes_multilabel")
    assert any("micro F1" in m.label for m in at.metric)
    assert any({"micro F1", "macro F1"} <= set(d.value.columns) for d in at.dataframe)
    assert _titles(at) == ["Multi-label scores (a label is predicted when its logit > 0)"]


def test_language_model_divergence_page(home):
    at = _open("divergences", "tinylang")
    assert "Token by token" in at.title[0].value
    tex = " ".join(x.value for x in at.latex)
    for kind in ("fkl", "rkl", "jsd", "tvd", "skew\\_fkl", "skew\\_rkl", "akl", "uld"):
        assert f"\\mathrm{{{kind}}}" in tex, kind
    assert any("copy vs local" in t for t in _titles(at))
    split = next(d.value for d in at.dataframe if "positions" in d.value.columns)
    assert {"copy (induction)", "local (next-token rule)"} <= set(split["position"])


def test_language_model_soft_labels_intro(home):
    at = _open("soft_labels", "tinylang")
    assert at.title[0].value == "Soft labels of a language model"


def test_distill_runs_table_shows_t_lambda_and_accuracy(home):
    at = _open("distill")
    table = next(d.value for d in at.dataframe if "final val acc" in d.value.columns)
    row = table[table["id"] == home["run_id"]].iloc[0]
    assert (row["T"], row["λ"]) == (3.0, 0.8) and 0 <= row["final val acc"] <= 1


def test_language_model_attention_intro(home):
    at = _open("attention", "tinylang")
    assert at.title[0].value == "Attention heads of a language model"
    assert "induction head" in _text(at) and "CNN" not in _text(at)
