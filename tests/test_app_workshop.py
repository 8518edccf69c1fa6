"""The workshop server in the app: the launcher's flags, the participant gate, each session's lists
filtered to its workspace, the queue limit on the Distill page, and the Instructor page."""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

from app import __main__ as launcher
from app import workshop_server as ws
from kdcore.jobs import JobConfig, RunStore
from tests.test_app_pages import _app as app_test

CODE = "s3cret-code"


@pytest.fixture
def workshop(tmp_path, monkeypatch):
    """A workshop server's environment: ada has a completed run, bob a queued one (no worker starts)."""
    from kdcore.jobs import worker

    monkeypatch.setenv("KDWB_HOME", str(tmp_path))
    for k, v in {ws.WORKSHOP_ENV: "1", "KDWB_WORKERS": "2", ws.MAX_QUEUED_ENV: "1", ws.CODE_ENV: CODE}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)
    cfg = JobConfig(pair="digits", objective="kd", epochs=1)
    ada = RunStore(workspace="ada").create_run(cfg, state="running")
    RunStore().update_run(ada, state="completed", summary={"best_val_acc": 0.75, "final_val_acc": 0.7})
    bob = RunStore(workspace="bob").create_run(cfg, state="queued")
    return {"ada": ada, "bob": bob}


def _app(**state) -> AppTest:
    return app_test("digits", **state)  # the page tests' AppTest on digits, probe 32


def _text(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error") for e in at.get(kind))


def test_launcher_workshop_flags(monkeypatch):
    monkeypatch.delenv(ws.WORKSHOP_ENV, raising=False)
    opts, _ = launcher.parse_args([])
    assert launcher.workshop_env(opts, {}) == {}  # single-user: nothing set, as before
    with pytest.raises(SystemExit, match="--workers configure a workshop server: add --workshop"):
        launcher.workshop_env(launcher.parse_args(["--workers", "2"])[0], {})
    opts, _ = launcher.parse_args(["--workshop", "--workers", "1", "--max-queued", "5", "--instructor-code", "abc"])
    env = launcher.workshop_env(opts, {})
    assert env == {ws.WORKSHOP_ENV: "1", "KDWB_WORKERS": "1", ws.MAX_QUEUED_ENV: "5", ws.CODE_ENV: "abc"} | {
        "OMP_NUM_THREADS": env["OMP_NUM_THREADS"]
    }
    assert int(env["OMP_NUM_THREADS"]) >= 1 and ws.settings(env) == ws.Settings(1, 5, "abc")
    fresh = launcher.workshop_env(launcher.parse_args(["--workshop"])[0], {"OMP_NUM_THREADS": "1"})
    assert len(fresh[ws.CODE_ENV]) >= 8 and "OMP_NUM_THREADS" not in fresh  # a fresh code; threads left alone
    with pytest.raises(SystemExit, match="number of workers must be an integer from 1"):
        launcher.workshop_env(launcher.parse_args(["--workshop", "--workers", "0"])[0], {})
    with pytest.raises(ValueError, match="KDWB_MAX_QUEUED must be a positive integer. Got 'lots'"):
        ws.settings({ws.MAX_QUEUED_ENV: "lots"})
    monkeypatch.delenv("KDWB_WORKERS", raising=False)  # only KDWB_WORKSHOP set (removed again after the test)
    ws.export_workers()  # the workers started get the count the Instructor page shows
    assert os.environ["KDWB_WORKERS"] == str(ws.settings().workers)
    assert ws.code_matches(" abc ", "abc") and not ws.code_matches("abd", "abc") and not ws.code_matches("", None)


def test_a_participant_names_a_workspace_before_any_page(workshop):
    at = _app()
    at.run()
    assert "Welcome to the workshop" in [t.value for t in at.title] and not at.dataframe
    at.text_input(key="workspace_name").set_value("ada lovelace")
    at.button[0].click().run()
    assert "1 to 32 letters" in at.error[0].value and not at.dataframe  # refused, still at the gate
    at.text_input(key="workspace_name").set_value("ada")
    at.button[0].click().run()
    assert not at.exception and at.session_state[ws.PARTICIPANT_KEY] == "ada"
    assert "Workspace: ada" in _text(at) + " ".join(m.value for m in at.sidebar.markdown)


def test_a_participant_sees_only_their_runs_and_cannot_open_anothers(workshop):
    at = _app(**{ws.PARTICIPANT_KEY: "ada", "pair_source": "Student of a finished run"})
    at.run()
    assert at.sidebar.selectbox(key="run_student").options == [f"{workshop['ada']} · digits · kd"]
    at.switch_page("views/distill.py").run()
    assert not at.exception
    shown = [set(d.value["id"]) for d in at.dataframe if "id" in d.value]
    assert shown and all(ids == {workshop["ada"]} for ids in shown)  # bob's queued run is nowhere
    bob = _app(
        **{ws.PARTICIPANT_KEY: "bob", "pair_source": "Student of a finished run", "run_student": workshop["ada"]}
    )
    bob.run()
    assert any("no run" in e.value and "workspace 'bob'" in e.value for e in bob.error)  # refused by id


def test_the_instructor_page_needs_the_code_then_shows_every_run_and_the_board(workshop):
    at = _app()
    at.switch_page("views/instructor.py").run()
    assert "Enter the instructor code" in _text(at) and not at.dataframe  # no workspace asked here
    at.text_input(key="instructor_code").set_value("wrong")
    at.button[0].click().run()
    assert "not the instructor code" in at.error[0].value and not at.dataframe
    at.text_input(key="instructor_code").set_value(CODE)
    at.button[0].click().run()
    assert not at.exception and not at.error
    board, runs = (d.value for d in at.dataframe)
    assert list(board[["workspace", "best val acc", "rank"]].itertuples(index=False, name=None)) == [("ada", 0.75, 1)]
    assert dict(zip(runs["id"], runs["workspace"])) == {workshop["ada"]: "ada", workshop["bob"]: "bob"}


def test_over_the_queue_limit_the_distill_page_says_so_and_queues_nothing(workshop):
    at = _app(**{ws.PARTICIPANT_KEY: "bob"})  # bob has 1 run queued; the limit is 1
    at.run()
    at.switch_page("views/distill.py").run()
    next(b for b in at.button if "Start distillation" in str(b.proto.label)).click().run()
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "Could not start the run: Workspace 'bob' may have at most 1 runs queued or running at once; it has 1" in msg
    assert "cancel one" in msg and len(RunStore().list_runs()) == 2  # nothing queued


def test_a_participants_experiment_process_writes_to_their_workspace(workshop, monkeypatch):
    from app import experiment_jobs
    from kdcore.jobs import experiment_cli

    seen = []
    monkeypatch.setattr(experiment_jobs.subprocess, "Popen", lambda argv, **kw: seen.append(kw["env"]))
    monkeypatch.delenv("KDWB_WORKSPACE", raising=False)
    experiment_jobs.start(RunStore(workspace="ada"), ["plan"])
    experiment_jobs.start(RunStore(), ["plan"])
    assert seen[0]["KDWB_WORKSPACE"] == "ada" and "KDWB_WORKSPACE" not in seen[1]
    monkeypatch.setenv("KDWB_WORKSPACE", "ada")
    assert list(experiment_cli._store().list_runs()["id"]) == [workshop["ada"]]  # the process sees ada's only
