"""The app with a user's own Hugging Face pair: the sidebar names local directories and a data file (no
upload, no upload cap), text is tokenised by the pair's own tokenizer, every page renders, the Distill
page runs the pair with each student_init, and the student of a finished run reopens on every page.

The pair is the tiny Llama-style teacher (4 layers) and student (2 layers) of tests/helpers/hf_pairs.py,
with the shipped 512-token BPE tokenizer, and a few paragraphs of text.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from kdcore.adapters.hf_files import num_layers
from kdcore.data.sources import DataSource
from kdcore.jobs.own_source import OwnPairSource
from tests.helpers.apptest import FACTORY, load_own_pair, ok, own_spec, start_distill_run, started

PAGES = ("overview", "soft_labels", "features", "attention", "cams", "divergences", "calibration", "distill", "doctor")
CONTEXT = 32
PARAGRAPHS = [f"The fox number {i} jumps over the lazy dog at {i * 7} o'clock, then sleeps." for i in range(80)]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """KDWB_HOME for the module, and the pair's directories and text file."""
    from tests.helpers.hf_pairs import llama_pair

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("own_models")
    mp.setenv("KDWB_HOME", str(root / "home"))
    teacher, student = llama_pair(root)
    text = root / "corpus.txt"
    text.write_text("\n\n".join(PARAGRAPHS), encoding="utf-8")
    yield {"root": root, "teacher": teacher, "student": student, "text": text}
    mp.undo()


def _loaded(own, **state) -> AppTest:
    """The app with the own pair loaded through the sidebar's form (paths typed, nothing uploaded)."""
    return load_own_pair("causal_lm", own["teacher"], own["student"], own["text"], CONTEXT, **state)


def _spec(own, upload=None, **changes) -> tuple:
    """The sidebar's load spec of the own pair, its text named by path (or uploaded)."""
    args = dict(data_path=str(own["text"]), context_length=CONTEXT, text_field="text")
    args.update(changes)
    return own_spec("causal_lm", own["teacher"], own["student"], upload=upload, **args)


# ---- the sidebar's form ----------------------------------------------------------------------------------


def test_text_is_tokenised_by_the_pairs_own_tokenizer(own):
    """Named paths, no upload: the dataset's tokens are those of the model's tokenizer (counted independently
    with transformers: each paragraph, its special tokens, and a closing EOS), never char/word ids."""
    from transformers import AutoTokenizer

    from app import state

    spec = _spec(own)
    data = spec.data
    assert data.format == "hf_text" and (data.teacher_dir, data.student_dir) == (
        str(own["teacher"]),
        str(own["student"]),
    )
    assert (data.context_length, data.text_field) == (CONTEXT, "text")
    ds = state._own_pair.__wrapped__(spec).dataset
    tok = AutoTokenizer.from_pretrained(str(own["teacher"]), local_files_only=True)
    expected = 0
    for paragraph in PARAGRAPHS:
        ids = tok(paragraph)["input_ids"]
        expected += len(ids) + (ids[-1] != tok.eos_token_id)
    assert ds.load_report["tokens"] == expected
    assert ds.vocab_size == 512 and ds.task == "causal_lm"
    row = ds.split("train").inputs[0]
    words = tok.decode(row[:12].tolist(), skip_special_tokens=True)
    assert words.strip() and words.strip() in " ".join(PARAGRAPHS), words
    assert tuple(ds.split("train").inputs.shape[1:]) == (CONTEXT,)


@pytest.mark.slow
def test_the_form_loads_the_pair_by_path(own):
    at = _loaded(own)
    assert at.session_state["own_spec"].data.format == "hf_text"
    caption = at.sidebar.caption[-1].value
    assert "your pair" in caption and "causal_lm" in caption and "53,536" in caption  # the teacher's parameters


def test_a_missing_local_path_is_named(own):
    with pytest.raises(ValueError, match="does not exist on this machine"):
        _spec(own, data_path=str(own["root"] / "nowhere.txt"))


def test_a_kind_that_contradicts_the_config_is_refused(own):
    with pytest.raises(ValueError, match="holds a LlamaForCausalLM .* Choose Kind 'causal_lm'"):
        own_spec("classifier", own["teacher"], own["student"], data=0)


def test_a_context_length_above_the_models_is_refused_in_plain_words(own):
    from app import state

    with pytest.raises(ValueError, match="at most the model's max_position_embeddings, 64"):
        state._own_pair.__wrapped__(_spec(own, context_length=65))


def test_named_local_files_escape_the_upload_cap(own, monkeypatch):
    """The same bytes: refused as an upload above the cap (the message says to name the path), read when named."""
    from app import state

    data = own["text"].read_bytes()
    monkeypatch.setattr(state, "UPLOAD_LIMIT_MB", len(data) / 2**20 / 2)  # half the file
    upload = io.BytesIO(data)
    upload.name = "corpus.txt"
    with pytest.raises(ValueError, match="Name its path on this machine instead"):
        _spec(own, upload, data_path="")
    spec = _spec(own)
    assert spec.data.max_bytes == state.LOCAL_DATA_LIMIT > len(data)
    assert state._own_pair.__wrapped__(spec).dataset.load_report["documents"] == len(PARAGRAPHS)


def _digits_factory(teacher_weights: tuple, student_weights: tuple) -> tuple:
    """The spec of the shipped digits architectures by module:factory name with these weight files."""
    return own_spec(
        "classifier",
        "sample_models.architectures:DigitsTeacher",
        "sample_models.architectures:DigitsStudent",
        source=FACTORY,
        weights=(teacher_weights, student_weights),
        data=0,
    )


def test_factory_weights_named_by_path(own):
    """module:factory weights typed as paths on this machine (the shipped digits weights), no upload."""
    from app import state

    weights = Path(__file__).resolve().parents[1] / "sample_models" / "weights"
    teacher_w, student_w = weights / "digits_teacher.safetensors", weights / "digits_student.safetensors"
    spec = _digits_factory((str(teacher_w), None), (str(student_w), None))
    assert (spec.teacher, spec.teacher_weights) == (
        "sample_models.architectures:DigitsTeacher",
        str(teacher_w.resolve()),
    )
    pair = state._own_pair.__wrapped__(spec)
    shipped = state._sample_pair.__wrapped__("digits")
    x = shipped.dataset.split("test").inputs[:8]
    assert torch.equal(pair.teacher.logits(x), shipped.teacher.logits(x))  # the very weights named
    with pytest.raises(ValueError, match="does not exist on this machine"):
        _digits_factory((str(own["root"] / "missing.safetensors"), None), (str(student_w), None))


def test_own_job_fields_from_the_sidebar_spec(own):
    from app import runs
    from kdcore.jobs import JobConfig

    spec = _spec(own)
    fields = runs.own_job_fields(spec, "from_teacher", 2, "first")
    assert fields == {
        "teacher": str(own["teacher"]),
        "student": "",
        "data": str(own["text"]),
        "data_options": {"context_length": CONTEXT, "text_field": "text"},
        "model_kind": "causal_lm",
        "student_init": "from_teacher",
        "student_layers": 2,
        "layer_rule": "first",
    }
    assert JobConfig(**fields).problems() == []
    assert runs.own_job_fields(spec)["student"] == str(own["student"])
    assert runs.own_pair_label(spec) == "hf:llama_teacher→llama_student"
    assert num_layers(spec.teacher) == 4 and num_layers(own["text"]) is None and num_layers(own["root"]) is None
    with pytest.raises(ValueError, match="trains on a data file"):
        runs.own_job_fields(replace(spec, data=DataSource("builtin", "digits")))
    with pytest.raises(ValueError, match="Refused to load 'm:f'"):  # module loading is off: refused before queueing
        runs.own_job_fields(OwnPairSource("factory", "m:f", "m:f", spec.data, "causal_lm", "w", "w"))


# ---- every page, the Distill page, and the reopened student ---------------------------------------------------


def _walk(at: AppTest, pages=PAGES) -> dict[str, int]:
    """Each page rendered in this session: {page: plotly charts drawn}."""
    drawn = {}
    for page in pages:
        at.switch_page(f"views/{page}.py").run()
        ok(at)
        drawn[page] = len(at.get("plotly_chart"))
    return drawn


@pytest.mark.slow
def test_every_page_renders_with_the_own_pair(own):
    at = _loaded(own)
    drawn = _walk(at)
    for page in ("overview", "soft_labels", "features", "attention", "divergences", "calibration"):
        assert drawn[page] >= 1, (page, drawn)
    for page in ("attention", "divergences"):  # what to look for speaks of this pair, not of tinylang's copies
        at.switch_page(f"views/{page}.py").run()
        look_for = [m.value for m in at.markdown if m.value.startswith("**What to look for.**")]
        assert len(look_for) == 1 and "tinylang" not in look_for[0] and "copied" not in look_for[0], (page, look_for)


@pytest.mark.slow
def test_generated_samples_with_the_own_pairs_tokenizer(own):
    import json

    at = _loaded(own)
    at.switch_page("views/divergences.py").run()
    ok(at)
    assert [r.value for r in at.radio if r.key == "gen_prompt_source"] == ["type a prompt"]  # no prompt records
    at.text_input(key="gen_prompt_text").set_value("The fox number 3 jumps").run()
    ok(at)
    titles = [(json.loads(c.proto.spec)["layout"].get("title") or {}).get("text", "") for c in at.get("plotly_chart")]
    assert "Generated tokens coloured by KL(p_T ‖ q_S) at T = 1, nats" in titles
    table = next(d.value for d in at.dataframe if "generated by" in d.value.columns)
    assert set(table["generated by"]) == {"teacher", "student"} and (table["divergence (nats)"] >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("init", ["from_teacher", "pretrained", "reinit"])
def test_distill_the_own_pair_and_reopen_its_student(own, monkeypatch, init):
    from app import state
    from kdcore.jobs import RunStore, worker

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # run below, in this process
    at = _loaded(own)
    at.switch_page("views/distill.py").run()
    ok(at)
    assert at.selectbox(key="job_pair").value == "your own models"
    at.radio(key="job_student_init").set_value(init).run()
    ok(at)
    run_id = start_distill_run(at, 2, 16)
    store = RunStore()
    cfg = store.get_run(run_id)["config"]
    assert (cfg["teacher"], cfg["data"], cfg["student_init"]) == (str(own["teacher"]), str(own["text"]), init)
    assert cfg["data_options"] == {"context_length": CONTEXT, "text_field": "text"}
    worker.run_queued(run_id, store)
    run = store.get_run(run_id)
    assert run["state"] == "completed", run["error"]

    at = started(pair_source="Student of a finished run", run_student=run_id, probe_size=16)
    ok(at)
    assert f"run {run_id}" in at.sidebar.caption[-1].value
    label = {"from_teacher": "hf:llama_teacher→llama_teacher[2 layers]"}.get(init, "hf:llama_teacher→llama_student")
    assert run["pair"] == label and label in at.sidebar.caption[-1].value
    drawn = _walk(at, PAGES if init == "from_teacher" else ("overview", "divergences"))  # all pages once
    assert drawn["overview"] >= 1 and drawn["divergences"] >= 1
    if init == "pretrained":  # the Doctor examines the run with its own pair (its models, its data)
        from kdcore.doctor import diagnose

        report = diagnose(run_id, store=store)
        assert "lm.tokenizers" in report.ids(), report.ids()  # the random tiny teacher is flagged
    if init == "reinit":  # the Runs tab's button points the sidebar at the run's student
        at.session_state["pair_source"] = "Sample pair"
        at.switch_page("views/distill.py").run()
        row = at.dataframe(key="runs_table")
        at.session_state["runs_table"] = {"selection": {"rows": [list(row.value["id"]).index(run_id)], "columns": []}}
        at.run()
        at.button(key=f"reopen_{run_id}").click().run()
        ok(at)
        assert (at.session_state["pair_source"], at.session_state["run_student"]) == (
            "Student of a finished run",
            run_id,
        )

    pair = state._run_pair.__wrapped__(run_id)
    saved = store.load_student(run_id)
    mine = pair.student.model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(mine[name], tensor), name
    assert pair.student.model.config.num_hidden_layers == 2
    model = pair.student.model  # the tied input/output embeddings are one tensor again
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert pair.dataset.split("train").inputs.shape[1] == CONTEXT


def test_choosing_the_format_redraws_the_fields_at_once(own):
    """The format radio sits outside the form: a form's widgets rerun only on submit, so a radio inside it
    left the directory fields on screen after "module:factory + safetensors" was chosen."""
    at = started(pair_source="Your own models")
    labels = lambda: {w.label for w in at.sidebar.text_input}  # noqa: E731
    assert "Teacher directory" in labels() and "Teacher factory" not in labels()
    at.sidebar.radio(key="own_mode").set_value(FACTORY).run()
    assert "Teacher factory" in labels() and "Teacher directory" not in labels()
    assert not [r for r in at.sidebar.radio if r.key == "own_mode" and r.form_id]  # not inside a form
