"""The Distill page shows a chain of runs as a chain: each stage's accuracy and the teacher →
assistant → student gap (app/chain_view.py, analyses/chains.py), in the Live tab."""

from __future__ import annotations

import json

import pytest

from tests.helpers.apptest import kdwb_home, open_page


@pytest.fixture(scope="module")
def chain_home(tmp_path_factory):
    """KDWB_HOME holding one finished TAKD chain on digits (2 steps a stage)."""
    with kdwb_home(tmp_path_factory, "kdwb_chain") as d:
        from kdcore.jobs import JobConfig, RunStore
        from kdcore.jobs.chain import run_chain

        cfg = JobConfig(
            pair="digits", objective="takd", epochs=1, max_steps=2, train_size=64, val_size=64, checkpoints=0
        )
        res = run_chain(cfg, store=RunStore(d))
        assert res.state == "completed"
        yield {"dir": d, "chain_id": res.chain_id, "summary": res.metrics}


@pytest.mark.slow  # an AppTest of the Distill page: ~10 s
def test_the_live_tab_shows_a_chain_with_each_stage_and_the_gaps(chain_home):
    at = open_page("distill", errors_ok=True, sample_pair="digits", watch_run=chain_home["chain_id"])
    assert at.selectbox(key="live_run").value == chain_home["chain_id"]
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    chain = [f for f in figs if f["layout"]["title"]["text"] == "TAKD: accuracy along the chain"]
    assert len(chain) == 1
    assert chain[0]["data"][0]["x"][0].startswith("teacher") and "student" in chain[0]["data"][0]["x"][-1]
    assert any("A TAKD chain: 4 stage(s)" in m.value for m in at.markdown)
    tables = [df.value for df in at.dataframe]
    table = next(t for t in tables if "gap to its teacher" in t.columns)
    assert table["model"].tolist() == ["teacher", "assistant 1", "assistant 2", "assistant 3", "student"]
    want = [chain_home["summary"]["teacher_val_acc"]] + [s["final_val_acc"] for s in chain_home["summary"]["stages"]]
    assert table["final val acc"].tolist() == pytest.approx(want)
