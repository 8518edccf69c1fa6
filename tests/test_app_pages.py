"""AppTest for every page of the workbench: change the widgets, no exception, the expected charts present,
and the charts that depend on a widget redrawn with new data when it changes (the others left as they were).

One module-scoped run store (KDWB_HOME in a tmp dir) holding one tiny completed run, so the pages
that list runs (Distill, Features, the sidebar's "Student of a finished run") have something to show.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.menus import LM_METHODS
from tests.helpers.runs import digits_run

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """KDWB_HOME for the module, with one short completed digits run (3 steps, checkpoints saved)."""
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("kdwb_app")
    mp.setenv("KDWB_HOME", str(d))
    from kdcore.jobs import RunStore

    res = digits_run(RunStore(d), epochs=2, train_size=64, val_size=64, probe_size=32, checkpoints=2, name="app-test")
    yield {"dir": d, "run_id": res.run_id}
    mp.undo()


def _app(pair: str = "digits", **state) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.session_state["sample_pair"] = pair
    at.session_state["probe_size"] = 32
    for k, v in state.items():
        at.session_state[k] = v
    return at


def _open(page: str, pair: str = "digits", **state) -> AppTest:
    at = _app(pair, **state)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as dicts (their JSON spec)."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _data(at: AppTest) -> list[list]:
    """Each chart's traces (its figure's "data"), to compare before and after a widget change."""
    return [c["data"] for c in _charts(at)]


def _changed(before: list[list], after: list[list]) -> list[int]:
    """Indices of the charts whose data differ (the pages keep their charts in a fixed order)."""
    assert len(before) == len(after), f"{len(before)} charts before the change, {len(after)} after"
    return [i for i, (b, a) in enumerate(zip(before, after)) if b != a]


def _moved(at: AppTest, widget, value) -> list[int]:
    """Indices of the charts whose data change when `widget` of `at` is set to `value` (the page stays clean)."""
    before = _data(at)
    widget.set_value(value).run()
    _ok(at)
    return _changed(before, _data(at))


def _titles(at: AppTest) -> list[str]:
    return [(f.get("layout", {}).get("title") or {}).get("text", "") for f in _charts(at)]


def _slider(at: AppTest, key: str):
    return next(s for s in at.slider if s.key == key)


# ---- one test per page -----------------------------------------------------------------------------


def test_overview_scorecard(home):
    at = _open("overview")
    assert len(_charts(at)) == 2
    assert at.metric and {m.label for m in at.metric} >= {"Compression", "Accuracy retained", "Disagreement"}
    assert at.latex, "every page opens with its formulas"
    assert any("workshop" in p.proto.label.lower() for p in at.get("page_link"))


def test_overview_multilabel_table(home):
    at = _open("overview", "shapes_multilabel")
    df = at.dataframe[0].value
    assert {"exact_match", "label_accuracy"} <= set(df.columns) and len(df) == 3


def test_workshop_links_every_page(home):
    at = _open("workshop")
    steps = [b for b in at.button if b.key and b.key.startswith("workshop_")]
    assert len(steps) == 10
    text = " ".join(m.value for m in at.markdown)
    assert text.count("**Try:**") == 10 and text.count("**Look at:**") == 10
    next(b for b in steps if b.key == "workshop_5").click().run()  # Grad-CAM on the shapes pair
    _ok(at)
    assert at.session_state["sample_pair"] == "shapes"
    assert any("Grad-CAM" in t.value for t in at.title), "the step opened the CAMs page"
    assert len(_charts(at)) == 3
    notices = [m.value for m in at.markdown if "**Notice:**" in m.value]
    assert len(notices) == 1 and "pointing game" in notices[0], "the step's Notice is computed on the page's data"
    next(b for b in at.button if b.key == "guide_next").click().run()  # step 6: divergences on shapes
    _ok(at)
    assert any("Divergence" in t.value for t in at.title)
    assert any("NCKD carries" in m.value for m in at.markdown if "**Notice:**" in m.value)
    at.sidebar.selectbox(key="sample_pair").set_value("digits")  # the page now shows another pair
    at.switch_page("views/divergences.py").run()  # (AppTest reruns its own page)
    _ok(at)
    notices = [m.value for m in at.markdown if "**Notice:**" in m.value]
    assert len(notices) == 1 and "Open on shapes" in notices[0]


def test_soft_labels_sliders_move_the_curves(home):
    at = _open("soft_labels")
    before = _charts(at)
    assert len(before) == 7  # five of the pair, two of the logit toy
    assert "T = 4" in _titles(at)[0]
    _slider(at, "sl_temperature").set_value(10.0).run()
    _ok(at)
    after = _charts(at)
    assert "T = 10" in _titles(at)[0]
    assert before[0]["data"][0]["y"] != after[0]["data"][0]["y"], "the soft labels at T must change with T"
    loss_before = after[1]["data"]
    _slider(at, "sl_lambda").set_value(0.2).run()
    _ok(at)
    assert _charts(at)[1]["data"] != loss_before, "the KD terms must follow λ"


def test_features_cka_and_checkpoints(home):
    at = _open("features")
    titles = _titles(at)
    cka = next(i for i, t in enumerate(titles) if "teacher layers × student layers" in t)
    assert any("checkpoint" in t for t in titles), titles
    assert cka in _moved(at, at.radio(key="cka_kind"), "rbf"), "the CKA heatmap must follow the kernel"
    assert "teacher layers × student layers" in _titles(at)[cka]


def test_features_token_options_on_language_model(home, monkeypatch):
    from analyses import cka as cka_an

    real = cka_an.dominance_table

    def first_layer_dominated(result):  # tinylang has no outlier dimension: flag one layer to see the warning
        table = real(result)
        table.loc[0, "dominated"] = True
        return table

    monkeypatch.setattr(cka_an, "dominance_table", first_layer_dominated)
    at = _open("features", "tinylang")
    cka = next(i for i, t in enumerate(_titles(at)) if "teacher layers × student layers" in t)
    assert any("attention sink" in m.value for m in at.markdown), "the page explains the pitfall"
    warning = [w.value for w in at.warning]
    assert len(warning) == 1 and "1 layer(s)" in warning[0] and "teacher blocks.0" in warning[0]
    assert any("first token, special tokens left out" in c.value for c in at.caption)
    steps = [
        (lambda: at.toggle(key="cka_drop_special").set_value(False), "special tokens"),
        (lambda: at.toggle(key="cka_drop_first").set_value(False), "the first token"),
        (lambda: at.radio(key="cka_pool").set_value("per_token"), "the rows"),
    ]
    for change, what in steps:
        before = _data(at)
        change().run()
        _ok(at)
        assert cka in _changed(before, _data(at)), f"the CKA heatmap must follow {what}"
    assert any("every kept token one row; padding left out." in c.value for c in at.caption)


def test_attention_transfer_on_cnn(home):
    at = _open("attention")
    assert len(_data(at)) == 1
    assert _moved(at, at.number_input(key="at_sample"), 3) == [0], "the maps must show the chosen image"


def test_attention_heads_on_language_model(home):
    at = _open("attention", "tinylang")
    assert len(_data(at)) == 3  # maps, head matching, entropy
    moved = _moved(at, at.selectbox(key="att_metric"), "js")
    assert at.dataframe
    assert moved == [1], "only the head-matching matrix depends on the divergence"


def test_cams_with_masks(home):
    at = _open("cams", "shapes")
    assert len(_data(at)) == 3, _titles(at)  # overlay, agreement, localisation
    assert _moved(at, _slider(at, "cam_q"), 40) == [1], "the top region sets the IoU of the agreement chart only"
    assert _moved(at, at.number_input(key="cam_index"), 2) == [0], "only the overlay shows one image"


def test_cams_explain_the_teachers_prediction(home):
    # on shapes_multilabel's first 32 test images the teacher's top class is absent from images 8, 15 and 21
    # (on shapes it is always the label, so there the choice would change nothing)
    at = _open("cams", "shapes_multilabel")
    moved = _moved(at, at.radio(key="cam_explain"), "teacher")
    assert 1 in moved, "explaining the teacher's prediction must move the agreement"


def test_cams_explain_language_model_instead(home):
    at = _open("cams", "tinylang")
    assert not _charts(at) and at.info


def test_divergence_components(home):
    at = _open("divergences")
    assert len(_data(at)) == 4  # rules, classes, dkd, samples
    moved = _moved(at, at.selectbox(key="div_rule"), "topk")
    assert moved == [1, 3], "the rule picks the strong set of the class and sample charts"
    assert _moved(at, _slider(at, "div_temperature"), 1.0) == [0, 1, 2, 3], "every component depends on T"


def test_page_claims_are_shown_once_marked_by_whether_they_hold(home):
    """The computed "Here ..." line: one sentence, green when the data bears the lesson out, blue otherwise."""
    for page, what in [("divergences", "NCKD"), ("calibration", "calibrated")]:
        at = _open(page)
        shown = [(e.value, True) for e in at.success] + [(e.value, False) for e in at.info]
        hits = [(text, ok) for text, ok in shown if text.startswith("Here") and what in text]
        assert len(hits) == 1, shown
        assert "Here:" not in hits[0][0]


def test_divergence_tokens_language_model(home):
    at = _open("divergences", "tinylang")
    before = _data(at)
    assert len(before) == 3 and at.metric  # the text's tokens, copy vs local positions, generated samples
    at.number_input(key="tok_index").set_value(1).run()
    _ok(at)
    assert _changed(before, _data(at)) == [0], "the token chart must show the chosen text"
    assert _titles(at)[2] == "Generated tokens coloured by KL(p_T ‖ q_S) at T = 1, nats"
    assert {"mean over the teacher's sample", "mean over the student's sample"} <= {m.label for m in at.metric}
    at.selectbox(key="gen_prompt").set_value(3).run()
    _ok(at)
    assert _changed(before, _data(at)) == [0, 2], "the samples must continue the chosen prompt"
    at.selectbox(key="gen_divergence").set_value("rkl").run()
    _ok(at)
    assert _titles(at)[2].startswith("Generated tokens coloured by KL(q_S ‖ p_T)")
    at.radio(key="gen_prompt_source").set_value("type a prompt").run()
    at.text_input(key="gen_prompt_text").set_value("<s> a b c <c>").run()
    _ok(at)
    table = next(d.value for d in at.dataframe if "generated by" in d.value.columns)
    assert set(table["generated by"]) == {"teacher", "student"} and (table["divergence (nats)"] >= 0).all()


def test_calibration(home):
    at = _open("calibration")
    assert len(_data(at)) == 2
    assert set(at.dataframe[0].value["model"]) >= {"teacher", "student"}
    assert 0 in _moved(at, _slider(at, "cal_bins"), 10), "the reliability diagram must be redrawn with 10 bins"


def test_calibration_multilabel(home):
    at = _open("calibration", "shapes_multilabel")
    assert len(_charts(at)) == 2


def test_distill_finds_runs_from_the_store(home):
    at = _open("distill")
    assert at.tabs and len(at.tabs) == 4
    # the Live tab shows the last run (found in the store, not the session) with its curves
    assert any("loss" in t.lower() for t in _titles(at))
    assert at.selectbox(key="live_run").value == home["run_id"]
    from kdcore.jobs import RunStore

    last = RunStore(home["dir"]).metrics(home["run_id"], "step").iloc[-1]
    shown = {m.label: float(m.value) for m in at.metric if m.label in last.index}
    assert "loss" in shown  # each component's last value, to 4 significant digits at any scale
    assert all(v == pytest.approx(last[k], rel=1e-3, abs=0) for k, v in shown.items()), (shown, last)


def _start(at: AppTest) -> None:
    next(b for b in at.button if "Start distillation" in str(b.proto.label)).click().run()
    assert not at.exception


def test_distill_rejects_a_bad_config_in_plain_words(home):
    at = _open("distill")
    at.selectbox(key="job_objective").set_value("dkd").run()
    at.number_input(key="job_dkd_beta").set_value(-1.0)  # DKD's β must be ≥ 0
    _start(at)
    assert at.error and "Could not start the run" in at.error[0].value
    assert "params.beta must be a number in [0, inf); got -1" in at.error[0].value


def test_distill_form_has_a_field_per_parameter_of_every_method(home):
    from kdcore.methods import methods_for

    at = _open("distill")
    offered = at.selectbox(key="job_objective").options
    assert [o.split(" — ")[0] for o in offered] == [m.name for m in methods_for("classification")]
    at.selectbox(key="job_objective").set_value("cakd").run()
    keys = {w.key for w in (*at.number_input, *at.selectbox, *at.checkbox, *at.text_input)}
    assert {f"job_cakd_{p}" for p in ("temperature", "alpha", "beta", "rule", "k", "tau")} <= keys
    assert at.selectbox(key="job_cakd_rule").value == "target"
    at.selectbox(key="job_cakd_rule").set_value("topk")
    _start(at)  # rule topk without k
    assert at.error and "params.k is required with rule 'topk'" in at.error[0].value
    at.selectbox(key="job_pair").set_value("tinylang").run()  # a language model: its methods only
    assert [o.split(" — ")[0] for o in at.selectbox(key="job_objective").options] == LM_METHODS
    assert at.selectbox(key="job_token_kind").value == "fkl"
    assert at.number_input(key="job_token_temperature").value == 1.0


def test_distill_heldout_prompts_field_for_language_models_reaches_the_run(home, monkeypatch):
    from kdcore.jobs import RunStore, worker

    monkeypatch.setattr(worker, "start_worker_process", lambda store: None)  # queue only: no training in the test
    at = _open("distill")
    assert "job_heldout_prompts" not in {w.key for w in at.number_input}  # a classifier decodes nothing
    at.selectbox(key="job_pair").set_value("tinylang").run()
    assert at.number_input(key="job_heldout_prompts").value == 64
    at.number_input(key="job_heldout_prompts").set_value(0)
    _start(at)
    store = RunStore(home["dir"])
    queued = store.list_runs(state="queued")
    assert len(queued) == 1
    assert store.get_run(queued.iloc[0]["id"])["config"]["heldout_prompts"] == 0
    store.delete_run(queued.iloc[0]["id"])  # the module's other pages see one run


def test_doctor_page_renders(home):
    _open("doctor")


def test_doctor_fix_that_is_a_run_queues_it(home, monkeypatch):
    """The home run has no student-alone run of its budget: capacity.no_gain offers one, and its button queues it."""
    from kdcore.jobs import RunStore, worker

    monkeypatch.setattr(worker, "start_worker_process", lambda store: None)  # queue only: no training in the test
    at = _open("doctor")
    button = next(b for b in at.button if "Student alone, same budget" in str(b.proto.label))
    button.click().run()
    _ok(at)
    store = RunStore(home["dir"])
    queued = store.list_runs(state="queued")
    assert len(queued) == 1 and queued.iloc[0]["objective"] == "ce"
    cfg, kd = store.get_run(queued.iloc[0]["id"])["config"], store.get_run(home["run_id"])["config"]
    assert {k: cfg[k] for k in ("epochs", "train_size", "lr", "seed")} == {
        k: kd[k] for k in ("epochs", "train_size", "lr", "seed")
    }
    store.delete_run(queued.iloc[0]["id"])  # the module's other pages see one run


def test_student_of_a_finished_run(home):
    at = _app(pair_source="Student of a finished run")
    at.run()
    _ok(at)
    assert at.selectbox(key="run_student").value == home["run_id"]
    assert len(_charts(at)) == 2  # the overview of the run's student
    assert "run" in at.sidebar.caption[0].value


def test_own_models_bad_path_is_explained(home):
    at = _app(pair_source="Your own models")
    at.run()
    at.text_input(key="own_teacher_dir").set_value("/nonexistent/teacher")
    at.text_input(key="own_student_dir").set_value("/nonexistent/student")
    at.sidebar.button[0].click().run()
    assert not at.exception
    assert at.error and "Could not load the pair" in at.error[0].value


def test_sessions_do_not_share_choices(home):
    a, b = _app("digits"), _app("digits")
    a.run(), b.run()
    digits = _data(b)
    a.sidebar.selectbox(key="sample_pair").set_value("shapes").run()
    b.run()
    assert a.session_state["sample_pair"] == "shapes" and b.session_state["sample_pair"] == "digits"
    assert _data(b) == digits and _data(a) != digits, "each session shows its own pair"


def test_run_report_is_self_contained(home):
    from app.report import run_report
    from kdcore.jobs import RunStore

    html = run_report(RunStore(home["dir"]), home["run_id"])
    assert html.startswith("<!doctype html>") and home["run_id"] in html
    assert html.count("<script src=") == 0, "no external scripts: plotly.js is inlined"
    assert "Plotly" in html and html.count('class="plotly-graph-div"') >= 3
    assert "Configuration" in html and "temperature" in html and "final_val_acc" in html


# ---- the Distill page: the pair's recipe, the workshop preset, run names ------------------------------


def test_distill_form_starts_from_the_pairs_recipe(home):
    from kdcore.jobs.recipes import pair_recipe

    at = _open("distill")
    for pair in ("digits", "shapes"):
        if pair != "digits":
            at.selectbox(key="job_pair").set_value(pair).run()
            _ok(at)
        r = pair_recipe(pair)
        assert at.selectbox(key="job_objective").value == r.objective == "kd"
        shown = {
            "epochs": at.number_input(key="job_epochs").value,
            "lr": at.number_input(key="job_lr").value,
            "batch_size": at.number_input(key="job_batch").value,
            "train_size": at.number_input(key="job_train_size").value or None,
            "schedule": at.selectbox(key="job_schedule").value,
            "teacher_cache": at.checkbox(key="job_teacher_cache").value,
            "temperature": at.number_input(key="job_kd_temperature").value,
            "lam": at.number_input(key="job_kd_lam").value,
            "objective": "kd",
        }
        assert shown == r.settings(), pair
        assert any(
            f"Defaults from the {pair} recipe: {r.settings_text()}, under which KD beats the student alone "
            f"over 3 seeds" in c.value
            for c in at.caption
        )


def test_distill_workshop_preset_queues_kd_and_the_student_alone(home, monkeypatch):
    from app import guide
    from kdcore.jobs import RunStore, worker
    from kdcore.jobs.recipes import pair_recipe

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # queue only: no training here
    store = RunStore(home["dir"])
    at = _open("distill")
    button = next(b for b in at.button if b.key == "workshop_preset")
    step = next(s for s in guide.STEPS if s.page == "views/distill.py")
    assert button.proto.label == guide.PRESET_BUTTON and f"'{guide.PRESET_BUTTON}'" in step.try_this
    button.click().run()
    _ok(at)
    queued = store.list_runs(state="queued")
    try:
        assert len(queued) == 2
        cfgs = {store.get_run(r)["config"]["objective"]: store.get_run(r)["config"] for r in queued["id"]}
        assert set(cfgs) == {"kd", "ce"}
        budget = ("epochs", "train_size", "batch_size", "lr", "schedule", "seed")
        r = pair_recipe("digits")
        assert (
            {k: cfgs["kd"][k] for k in budget}
            == {k: cfgs["ce"][k] for k in budget}
            == {**{k: getattr(r, k) for k in budget if k != "seed"}, "seed": 0}
        )
        assert (cfgs["kd"]["temperature"], cfgs["kd"]["lam"], cfgs["ce"]["temperature"]) == (r.temperature, r.lam, None)
        assert any("shown side by side here when both finish" in c.value for c in at.caption)
    finally:
        for rid in queued["id"]:
            store.delete_run(rid)  # the module's other tests see one run


def test_distill_workshop_preset_shows_both_runs_side_by_side(home, monkeypatch):
    from app import runs
    from kdcore.jobs import RunStore, worker
    from kdcore.jobs.recipes import Recipe

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)
    store = RunStore(home["dir"])
    tiny = Recipe(objective="kd", temperature=4.0, lam=0.9, lr=1e-2, epochs=1, train_size=64, batch_size=32)
    pid = runs.start_workshop(store, "digits", tiny)
    ids = [r["run_id"] for r in store.get_protocol(pid)["runs"]]
    try:
        for rid in ids:
            worker.run_queued(rid, store)
        at = _open("distill")
        labels = [m.label for m in at.metric]
        assert (
            "kd on the digits recipe (completed)" in labels
            and "student alone (same budget as kd) (completed)" in labels
        )
        finals = {m.label: float(m.value) for m in at.metric if "(completed)" in m.label}
        for rid in ids:
            run = store.get_run(rid)
            assert finals[f"{run['name']} (completed)"] == pytest.approx(run["summary"]["final_val_acc"], abs=1e-4)
        chart = next(c for c in _charts(at) if "runs compared" in c["layout"]["title"]["text"])
        assert [t["name"] for t in chart["data"]] == ["kd on the digits recipe", "student alone (same budget as kd)"]
    finally:
        for rid in ids:
            store.delete_run(rid)


def test_distill_live_picker_shows_run_names(home):
    from app.run_table import run_label
    from kdcore.jobs import RunStore

    at = _open("distill")
    picker = at.selectbox(key="live_run")
    assert picker.options == [run_label(RunStore(home["dir"]).get_run(home["run_id"]))] == ["app-test"]


def test_overview_lm_generation_scorecard_on_request(home):
    at = _open("overview", "tinylang", lm_scorecard_prompts=10)
    assert not any(m.label == "Generates faster" for m in at.metric)  # measured on request only
    next(b for b in at.button if b.key == "lm_scorecard_go").click().run()
    _ok(at)
    labels = {m.label for m in at.metric}
    assert {"Exact match kept", "Fewer parameters", "Generates faster"} <= labels
    assert any("held-out prompts" in md.value for md in at.markdown)
