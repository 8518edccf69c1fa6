"""The view of on-policy runs (analyses/onpolicy.py, app/onpolicy_figures.py) and the Distill page
with gkd: the share and quality figure in the run view, a prompt longer than the context refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analyses.onpolicy import onpolicy_figure, sequence_figure
from app.onpolicy_figures import onpolicy_caption, onpolicy_figures
from app.report import run_figures_for
from kdcore.jobs import JobConfig, RunStore, run_job

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
FAST = dict(
    pair="tinylang", max_steps=3, epochs=1, batch_size=4, train_size=12, val_size=8, probe_size=4, checkpoints=0
)
TITLE = "On-policy share and quality"


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    steps = pd.DataFrame(
        {
            "step": [3, 1, 2, 4],
            "onpolicy_share": [2 / 3, 1.0, 0.5, 0.5],
            "source_student": [1.0, 1.0, None, None],
            "source_data": [None, None, 1.0, 1.0],
        }
    )
    epochs = pd.DataFrame(
        {"epoch": [0, 1, 2], "step": [0, 2, 4], "val_loss": [3.0, 2.5, 2.2], "teacher_val_loss": [1.5, None, None]}
    )
    return steps, epochs


def test_figure_draws_the_share_by_step_the_sources_and_the_quality_curve():
    steps, epochs = _frames()
    fig = onpolicy_figure(steps, epochs)
    by_name = {t.name: t for t in fig.data}
    share = by_name["share of student-sampled steps"]
    assert list(share.x) == [1, 2, 3, 4] and list(share.y) == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert list(by_name["student samples"].x) == [1, 3] and list(by_name["data"].x) == [2, 4]
    assert list(by_name["student validation loss"].y) == [3.0, 2.5, 2.2]
    assert list(by_name["teacher"].y) == [1.5, 1.5]
    assert fig.layout.title.text == TITLE
    with pytest.raises(ValueError, match="not a gkd, minillm or distillm run"):
        onpolicy_figure(pd.DataFrame({"step": [1], "loss": [1.0]}), epochs)
    assert onpolicy_figures({"config": {"objective": "token"}}, steps, epochs) == []


def test_exact_match_is_drawn_between_the_share_and_the_loss():
    steps, epochs = _frames()
    epochs["heldout_em"] = [0.0, 12.5, 40.0]
    epochs["teacher_heldout_em"] = [100.0, None, None]
    fig = onpolicy_figure(steps, epochs)
    em = next(t for t in fig.data if t.name == "student exact match")
    assert list(em.x) == [0, 1, 2] and list(em.y) == [0.0, 12.5, 40.0] and em.yaxis == "y2"
    teachers = [t for t in fig.data if t.name == "teacher"]
    assert [list(t.y) for t in teachers] == [[100.0, 100.0], [1.5, 1.5]] and sum(t.showlegend for t in teachers) == 1
    assert fig.layout.yaxis2.title.text == "exact match (%)" and fig.layout.yaxis3.title.text.startswith("validation")
    seq = sequence_figure(epochs)
    assert [t.name for t in seq.data] == ["student exact match", "teacher", "student validation loss", "teacher"]
    assert seq.layout.title.text == "Quality over the epochs"
    assert "Exact match" in onpolicy_caption({"config": {"objective": "seqkd"}})
    assert onpolicy_caption({"config": {"objective": "kd"}}) == ""


@pytest.mark.slow  # builds the copy task's records and generates the teacher's completions
def test_a_seqkd_run_view_shows_its_quality_curve(data_dir):
    store = RunStore()
    r = run_job(JobConfig(objective="seqkd", params=dict(decoding="greedy", max_new_tokens=30), **FAST), store=store)
    assert r.state == "completed", r.error
    (fig,) = [f for f in run_figures_for(store, r.run_id) if f.layout.title.text == "Quality over the epochs"]
    em = next(t for t in fig.data if t.name == "student exact match")
    assert list(em.x) == [0, 1] and all(0 <= y <= 100 for y in em.y)


def test_the_run_view_shows_the_share_and_quality(data_dir):
    store = RunStore()
    r = run_job(JobConfig(objective="gkd", params=dict(prompt_tokens=8, max_new_tokens=4), **FAST), store=store)
    assert r.state == "completed", r.error
    assert TITLE in [f.layout.title.text for f in run_figures_for(store, r.run_id)]


@pytest.mark.slow
def test_distill_page_with_gkd_live_figure_and_context_refusal(data_dir):
    from streamlit.testing.v1 import AppTest

    store = RunStore()
    run_job(JobConfig(objective="gkd", params=dict(prompt_tokens=8, max_new_tokens=4), **FAST), store=store)
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.session_state["sample_pair"] = "tinylang"
    at.run()
    at.switch_page("views/distill.py").run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(TITLE in ((s["layout"].get("title") or {}).get("text") or "") for s in specs)
    at.selectbox(key="job_objective").set_value("gkd").run()
    at.number_input(key="job_gkd_prompt_tokens").set_value(60)
    next(b for b in at.button if "Start distillation" in str(b.proto.label)).click().run()
    assert not at.exception
    assert at.error and "longer than the model's context of 64" in at.error[0].value
