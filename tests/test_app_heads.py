"""The Features page's MGD / FAM-KD section (app/heads_view.py): fresh heads on a sample pair, the
figures follow the widgets, and a finished mgd run shows its trained head and its α·L_MGD / CE."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.apptest import kdwb_home, open_page


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with kdwb_home(tmp_path_factory, "kdwb_heads") as d:
        from kdcore.jobs import JobConfig, RunStore, run_job

        cfg = JobConfig(
            pair="digits", objective="mgd", params={"layers": {"conv2": "conv3"}}, epochs=2, max_steps=4,
            train_size=64, val_size=64, checkpoints=1, probe_size=16,
        )  # fmt: skip
        res = run_job(cfg, store=RunStore(d))
        assert res.state == "completed", res.error
        yield res.run_id


def _open(**state) -> AppTest:
    return open_page("features", errors_ok=True, **{"probe_size": 32, **state})


def _titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


@pytest.mark.slow  # the Features page computes CKA first (AppTest: several seconds)
def test_features_page_shows_mgd_and_fam_heads(home):
    at = _open(sample_pair="digits")
    titles = _titles(at)
    assert any(t.startswith("MGD, input 0, teacher channel 0: channel mask") for t in titles), titles
    assert any("removed 0 of 16 frequencies" in t for t in titles), titles  # c = 0.1 on a 4×4 map
    assert any("A fresh head (seed 0)" in c.value for c in at.caption)
    at.select_slider(key="fam_cuton").set_value(0.5).run()
    assert any("removed 4 of 16 frequencies" in t for t in _titles(at))
    at.radio(key="mgd_mask").set_value("spatial").run()
    assert any(t.startswith("MGD, input 0, teacher channel 0: spatial mask") for t in _titles(at))
    assert not at.exception and not at.error


@pytest.mark.slow
def test_a_finished_mgd_run_shows_its_trained_head_and_its_ratio(home):
    at = _open(pair_source="Student of a finished run", run_student=home)
    assert not at.error, [e.value for e in at.error]
    assert any("The run's trained head." in c.value for c in at.caption)
    ratio = [df.value for df in at.dataframe if "ratio" in df.value.columns]
    assert ratio and ratio[0]["epoch"].tolist() == [1, 2] and (ratio[0]["ratio"] > 0).all()
