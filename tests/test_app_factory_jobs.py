"""The Distill page on the sidebar's own module:factory pair (app.runs.factory_job_fields): the factories and
weights files typed in the sidebar, a table named by path, a run queued with each student init the pair allows
and its student reopened; a factory the server may not load is refused before any run is queued
(app.safety.check_factory). The pair is tests/helpers/factory_pairs.py's residual MLPs on a generated table."""

from __future__ import annotations

import pytest
import torch

from kdcore.data.sources import DataSource
from kdcore.jobs.own_source import OwnPairSource
from tests.helpers.apptest import FACTORY, ok, start_distill_run, started
from tests.helpers.factory_pairs import STUDENT, TEACHER, write_factory_pair


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """KDWB_HOME for the module, module loading on (the factories live in tests.helpers), the pair's files."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("own_factory")
    mp.setenv("KDWB_HOME", str(root / "home"))
    mp.setenv("KDWB_ALLOW_MODULES", "1")
    yield write_factory_pair(root)
    mp.undo()


def _spec(own, data=None) -> OwnPairSource:
    """The sidebar's load spec of the factory pair (as app.state.OwnPairForm.spec makes it)."""
    data = data or DataSource("table", str(own["table"]), label_field="label", max_bytes=1 << 30)
    return OwnPairSource("factory", TEACHER, STUDENT, data, "classifier", str(own["teacher"]), str(own["student"]))


def test_factory_job_fields_from_the_sidebar_spec(own):
    from app import runs
    from kdcore.jobs import JobConfig

    fields = runs.own_job_fields(_spec(own), "from_teacher", None, "first")
    assert fields == {
        "teacher_factory": TEACHER,
        "teacher_weights": str(own["teacher"]),
        "student_factory": STUDENT,
        "student_weights": str(own["student"]),
        "data": str(own["table"]),
        "data_options": {"format": "table", "label_field": "label"},
        "model_kind": "classifier",
        "student_init": "from_teacher",
        "layer_rule": "first",
    }
    assert JobConfig(**fields).problems() == []
    assert runs.own_pair_label(_spec(own)) == "factory:make_teacher→make_student"
    builtin = runs.own_job_fields(_spec(own, DataSource("builtin", "digits")))
    assert (builtin["data"], builtin["data_options"], builtin["student_init"]) == ("digits", {}, "pretrained")
    text = runs.own_job_fields(_spec(own, DataSource("text", "/x/corpus.txt", tokenizer="word", max_bytes=10)))
    assert text["data_options"] == {"format": "text", "tokenizer": "word"}


def test_a_factory_the_server_may_not_load_is_refused_before_queueing(own, monkeypatch):
    from app import runs, safety

    monkeypatch.delenv("KDWB_ALLOW_MODULES")
    with pytest.raises(ValueError, match="Refused to load 'tests.helpers.factory_pairs:make_teacher'"):
        runs.own_job_fields(_spec(own))
    assert runs.own_pair_label(_spec(own)) is None
    with pytest.raises(ValueError, match="Refused to load 'os:getcwd'"):  # a run queued elsewhere, reopened here
        safety.check_run_factories(
            {"teacher_factory": "sample_models.architectures:DigitsTeacher", "student_factory": "os:getcwd"}
        )
    safety.check_run_factories({"pair": "digits", "teacher_factory": ""})  # nothing to load: passes
    with pytest.raises(ValueError, match="Refused to load 'tests.helpers.cnn_pairs:cnn_pair'"):
        safety.check_run_factories({"pair": "tests.helpers.cnn_pairs:cnn_pair"})  # `distill --pair mod:factory`
    labels = ({"pair": "hf:t→s", "teacher": "/models/t"}, {"pair": "factory:a→b", "teacher_factory": "os:getcwd"})
    safety.check_run_factories(labels[0])  # a display label, not a factory: the directories are the models
    with pytest.raises(ValueError, match="Refused to load 'os:getcwd'"):
        safety.check_run_factories(labels[1])  # the factory field is checked, the label is not imported


def _loaded(own, student_weights: bool = True):
    """The app with the factory pair loaded through the sidebar's form (paths typed, nothing uploaded; the
    student's weights path left empty unless `student_weights`)."""
    from app.state import DATA_CHOICES

    at = started(pair_source="Your own models", probe_size=16, own_mode=FACTORY)  # a form's radio redraws on submit
    at.selectbox(key="own_kind").set_value("classifier")
    at.text_input(key="own_teacher_factory").set_value(TEACHER)
    at.text_input(key="own_teacher_w_path").set_value(str(own["teacher"]))
    at.text_input(key="own_student_factory").set_value(STUDENT)
    at.text_input(key="own_student_w_path").set_value(str(own["student"]) if student_weights else "")
    at.selectbox(key="own_data_choice").set_value(DATA_CHOICES[1])
    at.text_input(key="own_data_path").set_value(str(own["table"]))
    at.text_input(key="own_data_option").set_value("label")
    at.sidebar.button[0].click().run()
    ok(at)
    return at


@pytest.mark.slow
def test_distill_the_factory_pair_from_the_app_and_reopen_its_student(own, monkeypatch):
    from app import state
    from kdcore.jobs import RunStore, worker

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # run below, in this process
    at = _loaded(own)
    at.switch_page("views/distill.py").run()
    ok(at)
    assert at.selectbox(key="job_pair").value == "your own models"
    init = at.radio(key="job_factory_student_init")
    assert len(init.options) == 3 and "from_teacher" in init.options[1]  # its student fits: offered
    init.set_value("from_teacher").run()
    ok(at)
    assert any("blocks ← [0, 3]" in c.value for c in at.caption), [c.value for c in at.caption]  # spread: 4 → 2
    run_id = start_distill_run(at, 2, 32)
    store = RunStore()
    cfg = store.get_run(run_id)["config"]
    assert (cfg["teacher_factory"], cfg["student_weights"], cfg["student_init"]) == (
        TEACHER,
        str(own["student"]),
        "from_teacher",
    )
    worker.run_queued(run_id, store)
    run = store.get_run(run_id)
    assert run["state"] == "completed", run["error"]
    assert run["pair"] == "factory:make_teacher→make_student[from teacher]"
    at.switch_page("views/distill.py").run()
    ok(at)
    assert run_id in list(at.dataframe(key="runs_table").value["id"])  # the run appears in the Runs tab
    pair = state._run_pair.__wrapped__(run_id)
    saved = store.load_student(run_id)
    assert all(torch.equal(pair.student.model.state_dict()[k], v) for k, v in saved.items())


@pytest.mark.slow
def test_a_pair_without_student_weights_shows_its_untrained_student_and_starts_from_the_teacher(own, monkeypatch):
    """No student weights: the sidebar says the student is untrained (the factory's seed-0 init is analysed),
    the Distill page offers reinit and from_teacher only, and a from_teacher run stores no weights path."""
    from app import state
    from app.student_init_form import NO_WEIGHTS_NOTE
    from kdcore.jobs import RunStore, worker
    from tests.helpers.factory_pairs import make_student

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # run below, in this process
    at = _loaded(own, student_weights=False)
    spec = at.session_state["own_spec"]
    assert (spec.student, spec.student_weights) == (STUDENT, "")
    assert state.UNTRAINED_NOTE in [c.value for c in at.sidebar.caption]
    torch.manual_seed(0)
    want = make_student().state_dict()
    shown = state.pair_from_key(("own", spec)).student.model.state_dict()
    assert all(torch.equal(shown[k], v) for k, v in want.items())  # the untrained student the pages analyse
    at.switch_page("views/distill.py").run()
    ok(at)
    init = at.radio(key="job_factory_student_init")
    assert [o.split("(")[-1] for o in init.options] == ["from_teacher)", "reinit)"], init.options
    assert NO_WEIGHTS_NOTE in [c.value for c in at.caption]
    init.set_value("from_teacher").run()
    ok(at)
    run_id = start_distill_run(at, 2, 32)
    store = RunStore()
    cfg = store.get_run(run_id)["config"]
    assert (cfg["student_weights"], cfg["student_init"]) == ("", "from_teacher")
    worker.run_queued(run_id, store)
    run = store.get_run(run_id)
    assert run["state"] == "completed", run["error"]
    saved = store.load_student(run_id)
    reopened = state._run_pair.__wrapped__(run_id).student.model.state_dict()
    assert all(torch.equal(reopened[k], v) for k, v in saved.items())
