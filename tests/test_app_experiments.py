"""The Experiments page: it renders with no experiment, refuses bad input on the page before anything
starts, starts a valid plan in the background (the process start is stubbed), and shows a stored report
(tables, figures, the HTML download); the HTML export is one self-contained file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _report(store) -> str:
    """A plan report kept in the store without training (scripted numbers)."""
    from kdcore.jobs.experiment_store import create_experiment, save_report

    eid = create_experiment(store, "plan", "digits", spec={}, planned=0)
    rows = []
    for phase, variant, t, lam, m in (
        ("floor", "floor (student alone)", None, None, 0.90),
        ("temperature", "T=1", 1.0, 0.9, 0.91),
        ("temperature", "T=4", 4.0, 0.9, 0.93),
        ("lam", "λ=0.5 at T=4", 4.0, 0.5, 0.92),
    ):
        rows.append(
            {
                "phase": phase,
                "variant": variant,
                "temperature": t,
                "lam": lam,
                "n_seeds": 2,
                "best": f"{m}",
                "final": f"{m}",
                "score_mean": m,
                "score_low": m - 0.01,
                "score_high": m + 0.01,
                "score": f"{m}",
                "gain_mean": m - 0.9,
                "gain_low": None,
                "gain_high": None,
                "gain": "",
                "wall_s": 1.0,
            }
        )
    chosen = {
        "temperature": {"value": 4.0, "variant": "T=4", "score_mean": 0.93, "score": "0.93", "gain": "+0.03"},
        "lam": {"value": 0.9, "variant": "λ=0.9 at T=4", "score_mean": 0.93, "score": "0.93", "gain": "+0.03"},
    }
    curve = {"epoch": [1, 2], "mean": [0.5, 0.9], "std": [0.01, 0.02]}
    save_report(
        store,
        eid,
        {
            "kind": "plan",
            "experiment_id": eid,
            "pair": "digits",
            "state": "completed",
            "metric": "val_acc",
            "spec": {"rule": {"metric": "best", "ties": "lower", "tolerance": 0.0}},
            "table": rows,
            "curves": {r["variant"]: curve for r in rows},
            "chosen": chosen,
            "runs": [],
            "wall_s": 3.0,
        },
    )
    return eid


@pytest.fixture
def page(data_dir, monkeypatch):
    from app import experiment_jobs

    started: list[list[str]] = []
    monkeypatch.setattr(experiment_jobs, "start", lambda store, argv: started.append(argv))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.session_state["sample_pair"] = "digits"
    at.run()
    at.switch_page("views/experiments.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at, started


@pytest.mark.slow  # AppTest of a page: ~7 s
def test_page_refuses_a_one_value_sweep_and_starts_a_valid_plan(page):
    at, started = page
    assert any("Experiments" in t.value for t in at.title)
    at.text_input(key="exp_temps").set_value("4")
    at.button[0].click().run()  # the plan form's submit button comes first
    assert any("at least two values" in e.value for e in at.error) and started == []
    at.text_input(key="exp_temps").set_value("1, 4")
    at.text_input(key="exp_lams").set_value("0.5, 1.5")
    at.button[0].click().run()
    assert any("[0, 1]" in e.value for e in at.error) and started == []
    at.text_input(key="exp_lams").set_value("0.5, 0.9")
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert started and started[0][:3] == ["plan", "--pair", "digits"] and "1,4" in started[0]


@pytest.mark.slow  # AppTest of a page: ~7 s
def test_page_shows_a_stored_report_and_its_html_is_self_contained(data_dir):
    from app.experiment_report import experiment_html, main
    from kdcore.jobs import RunStore
    from kdcore.jobs.experiment_store import load_report

    store = RunStore()
    eid = _report(store)
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.session_state["sample_pair"] = "digits"
    at.run()
    at.switch_page("views/experiments.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [(c["layout"].get("title") or {}).get("text", "") for c in charts]
    assert any("Sweeps" in t for t in titles) and any("per epoch" in t for t in titles)
    html = experiment_html(load_report(store, eid))
    assert html.count("<script") >= 1 and "http" not in html.split("<script", 1)[0] and "Chosen" in html
    out = Path(data_dir) / "r.html"
    assert main([eid, "--out", str(out)]) == 0
    written = out.read_text()
    assert written.startswith("<!doctype html>") and "Chosen" in written and eid in written
