"""The Distill page's view of a weight_distill run (app/procedure_view.py): the phases table, phase 1 vs
phase 2 accuracy and the mixing weights, and the same figures in the run report."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

TITLES = [
    "Weight distillation: phase 1 (generated weights) vs phase 2 (plain student)",
    "Weight distillation: the generator's mixing weights c = Λω per group (every group has one teacher tensor: c = 1)",
]


@pytest.fixture(scope="module")
def wd_home(tmp_path_factory):
    from kdcore.jobs import JobConfig, RunStore, run_job

    d = tmp_path_factory.mktemp("kdwb_wd")
    cfg = JobConfig(pair="digits", objective="weight_distill", epochs=2, train_size=32, val_size=32, batch_size=32,
                    checkpoints=0)  # fmt: skip
    res = run_job(cfg, store=RunStore(d))
    assert res.state == "completed", res.error
    return str(d), res.run_id


def _script(home: str, run_id: str) -> None:
    from app.procedure_view import show_procedure
    from kdcore.jobs.store import RunStore

    store = RunStore(home)
    show_procedure(store, store.get_run(run_id), run_id)


@pytest.mark.slow  # a tiny run and an AppTest: ~5 s
def test_a_weight_distill_run_shows_its_phases_and_mixing_weights(wd_home):
    at = AppTest.from_function(_script, args=wd_home, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")] == TITLES
    assert at.dataframe[0].value["phase"].tolist() == [1, 2]


@pytest.mark.slow  # shares the run above
def test_the_run_report_holds_the_weight_distill_figures(wd_home):
    from app.report import run_figures_for
    from kdcore.jobs.store import RunStore

    titles = [f.layout.title.text for f in run_figures_for(RunStore(wd_home[0]), wd_home[1])]
    assert [t for t in titles if t.startswith("Weight distillation")] == TITLES
