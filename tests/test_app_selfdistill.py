"""The Distill page with byot, education and tfkd: the run view's figures, the virtual teacher on
the form, a bad exit layer refused in plain words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.report import run_figures_for
from kdcore.jobs import JobConfig, RunStore, run_job

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
FAST = dict(pair="digits", train_size=128, val_size=64, batch_size=64, probe_size=16, checkpoints=1, seed=0)


def _titles(figs) -> list[str]:
    return [f.layout.title.text or "" for f in figs]


@pytest.mark.parametrize("objective, title", [("byot", "each exit"), ("education", "grades over time")])
def test_the_run_view_shows_the_strategys_figure(data_dir, objective, title):
    store = RunStore()
    r = run_job(JobConfig(objective=objective, epochs=3, **FAST), store=store)
    assert r.state == "completed", r.error
    assert any(title in t for t in _titles(run_figures_for(store, r.run_id)))


@pytest.mark.slow
def test_distill_form_draws_the_virtual_teacher_and_refuses_bad_exit_layers(data_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=180)
    at.session_state["sample_pair"] = "digits"
    at.run()
    at.switch_page("views/distill.py").run()
    at.selectbox(key="job_objective").set_value("tfkd").run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("virtual teacher" in (s["layout"].get("title") or {}).get("text", "") for s in specs)
    at.selectbox(key="job_objective").set_value("byot").run()
    at.text_input(key="job_byot_layers").set_value("conv1, nope")
    next(b for b in at.button if "Start distillation" in str(b.proto.label)).click().run()
    assert not at.exception
    assert at.error and "has no layer(s) ['nope']" in at.error[0].value
