"""The Distill page's view of the procedure methods (app/procedure_view.py): block-wise KD's stones,
PWKD's stages and sub-teachers, ZSKT's generated samples, drawn from runs in the store."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest


@pytest.fixture(scope="module")
def procedure_home(tmp_path_factory):
    """A run store with one tiny finished run of each procedure method on digits."""
    from kdcore.jobs import JobConfig, RunStore, run_job

    d = tmp_path_factory.mktemp("kdwb_procedures")
    store = RunStore(d)
    base = {"pair": "digits", "train_size": 64, "val_size": 64, "checkpoints": 0, "batch_size": 32}
    ids = {}
    for name, extra in (
        ("blockwise", {"epochs": 1, "max_steps": 2}),
        ("pwkd", {"epochs": 2, "params": {"teacher_epochs": 1, "widths": [0.5, 1.0]}}),
        ("zskt", {"epochs": 2, "params": {"pseudo_batches": 2, "n_s": 1, "batch": 8}}),
    ):
        res = run_job(JobConfig(objective=name, **base, **extra), store=store)
        assert res.state == "completed", res.error
        ids[name] = res.run_id
    return {"dir": str(d), "ids": ids}


def _script(home: str, run_ids: list[str]) -> None:
    from app.procedure_view import show_procedure
    from kdcore.jobs.store import RunStore

    store = RunStore(home)
    for rid in run_ids:
        show_procedure(store, store.get_run(rid), rid)


@pytest.mark.slow  # three tiny runs and an AppTest: ~10 s
def test_each_procedure_run_shows_its_mechanism(procedure_home):
    ids = procedure_home["ids"]
    at = AppTest.from_function(_script, args=(procedure_home["dir"], list(ids.values())), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles == [
        "Block-wise KD: every stepping-stone's accuracy",
        "PWKD: sub-teachers of growing width, stage by stage",
        "ZSKT: generated samples over training (same z per column)",
        "ZSKT: the student on real data, trained on generated inputs only",
    ]
    stones = at.dataframe[0].value
    assert stones["stone"].tolist() == ["1", "2 (student)"] and stones["front"].tolist()[0] == "student up to conv1"
    assert at.dataframe[1].value["width"].tolist() == [0.5, 1.0]


@pytest.mark.slow  # shares the three runs above
def test_the_run_report_holds_each_procedures_figures(procedure_home):
    from app.report import run_figures_for
    from kdcore.jobs.store import RunStore

    store = RunStore(procedure_home["dir"])
    want = {
        "blockwise": ["Block-wise KD: every stepping-stone's accuracy"],
        "pwkd": ["PWKD: sub-teachers of growing width, stage by stage"],
        "zskt": [
            "ZSKT: generated samples over training (same z per column)",
            "ZSKT: the student on real data, trained on generated inputs only",
        ],
    }
    for name, rid in procedure_home["ids"].items():
        titles = [f.layout.title.text for f in run_figures_for(store, rid)]
        assert [t for t in titles if t.startswith(("Block-wise", "PWKD", "ZSKT"))] == want[name]
