"""The Distill page's schedule on the loss: the preview drawn from the form's values before a run
(it changes when the schedule changes), the schedule reaching the queued job, and the live plot of
the scheduled / learned values from a run's step metrics."""

from __future__ import annotations

import numpy as np

from app import run_figures
from tests.helpers.figdata import arr
from tests.test_app_pages import _charts, _open, _start, _titles, home  # noqa: F401  (module fixture)

PREVIEW = "The schedule this run will follow (before it starts)"


def _preview(at) -> dict:
    return next(c for c in _charts(at) if (c["layout"].get("title") or {}).get("text") == PREVIEW)


def test_the_schedule_preview_follows_the_form_and_reaches_the_job(home):  # noqa: F811
    at = _open("distill")
    assert PREVIEW not in _titles(at)  # nothing scheduled: no preview
    at.selectbox(key="job_objective").set_value("kd").run()
    at.selectbox(key="sched_target_kd").set_value("temperature").run()
    at.number_input(key="sched_start_temperature").set_value(8.0)
    at.number_input(key="sched_end_temperature").set_value(2.0).run()
    first = _preview(at)["data"][0]
    y = arr(first["y"]).astype(float)
    assert y[0] == 8.0 and abs(y[-1] - 2.0) < 1e-9 and np.all(np.diff(y) <= 1e-12)  # cosine 8 → 2
    at.selectbox(key="sched_kind").set_value("linear").run()
    y2 = arr(_preview(at)["data"][0]["y"]).astype(float)
    assert y2.shape == y.shape and not np.allclose(y, y2)  # the plot changed with the kind
    n = len(y2) - 1
    np.testing.assert_allclose(y2, 8.0 - 6.0 * np.arange(n + 1) / n, atol=1e-9)  # linear from the form's values
    _start(at)
    from kdcore.jobs import RunStore, get_status

    run_id = at.session_state["watch_run"]
    cfg = get_status(run_id, store=RunStore(home["dir"]))["config"]
    assert cfg["schedules"] == {"temperature": {"kind": "linear", "start": 8.0, "end": 2.0, "unit": "step"}}


def test_ctkd_and_curriculum_preview_their_own_schedules(home):  # noqa: F811
    at = _open("distill")
    at.selectbox(key="job_objective").set_value("ctkd").run()
    names = [d["name"] for d in _preview(at)["data"]]
    assert names == ["CTKD λ_e (reversal scale)"]
    at.selectbox(key="job_objective").set_value("curriculum").run()
    pool = _preview(at)["data"][0]
    assert pool["name"] == "curriculum pool (samples)" and arr(pool["y"])[0] < arr(pool["y"])[-1]


def test_the_live_figure_draws_the_logged_values():
    import pandas as pd

    steps = pd.DataFrame(
        {"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0], "sched_temperature": [15.6, 15.5, 15.4], "sched_pool": [4, 8, 8]}
    )
    fig = run_figures.scheduled_values(steps)
    assert [t.name for t in fig.data] == ["temperature", "curriculum pool (samples)"]
    assert list(fig.data[0].y) == [15.6, 15.5, 15.4]
    assert [t.name for t in run_figures.loss_components(steps).data] == ["loss"]  # not among the losses
    assert run_figures.scheduled_values(steps[["step", "loss"]]) is None
