"""The app with a user's own BERT-style pairs: an encoder pair (BertModel, pooled embeddings) loaded by path
with sentences tokenised by its tokenizer; Features and Attention compare the encoders (heads labelled with
tokens), the probability pages say why they do not apply and where to go; a sequence-classifier pair with
labelled sentences; the Distill page's job fields for both."""

from __future__ import annotations

import csv

import pytest
from streamlit.testing.v1 import AppTest

from kdcore.adapters.hf_files import check_kind
from tests.helpers.apptest import load_own_pair, ok, own_spec, started

CONTEXT = 16
WORDS = ["red", "blue", "fox", "stone", "river", "cloud", "seven", "green"]
DATA = {"encoder": "sentences.txt", "classifier": "labelled.csv"}


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    from tests.helpers.hf_pairs import bert_encoder_pair, bert_pair

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("own_encoders")
    mp.setenv("KDWB_HOME", str(root / "home"))
    enc = bert_encoder_pair(root)
    clf = bert_pair(root)
    lines = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 5)) + f" {i}" for i in range(60)]
    (root / "sentences.txt").write_text("\n".join(lines), encoding="utf-8")
    with open(root / "labelled.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([line, i % 2] for i, line in enumerate(lines))
    yield {"root": root, "encoder": enc, "classifier": clf}
    mp.undo()


def _loaded(own, kind: str) -> AppTest:
    teacher, student = own[kind]
    return load_own_pair(kind, teacher, student, own["root"] / DATA[kind], CONTEXT)


def _spec(own, kind: str) -> tuple:
    """The sidebar's spec of the encoder or the classifier pair, its sentences named by path."""
    teacher, student = own[kind]
    return own_spec(kind, teacher, student, data_path=str(own["root"] / DATA[kind]), context_length=CONTEXT)


def test_encoder_spec_and_job_fields(own):
    from app import runs, state
    from kdcore.jobs import JobConfig

    teacher, student = own["encoder"]
    spec = _spec(own, "encoder")
    assert spec.kind == "encoder" and spec.data.format == "hf_sentences"
    pair = state._own_pair(spec)
    assert pair.kind == "encoder" and pair.dataset.task == "encoder"
    assert pair.dataset.split("test").inputs.shape[1] == CONTEXT
    fields = runs.own_job_fields(spec)
    assert fields["model_kind"] == "encoder" and "label_field" not in fields["data_options"]
    assert JobConfig(**fields).problems() == []
    with pytest.raises(ValueError, match="holds a BertModel.*Choose Kind 'encoder'"):
        check_kind(str(teacher), "causal_lm")


def test_sequence_classifier_reads_labelled_sentences(own):
    from app import runs, state

    spec = _spec(own, "classifier")
    assert spec.kind == "sequence_classification" and spec.data.label_field == "label"
    pair = state._own_pair(spec)
    assert pair.dataset.task == "classification" and pair.kind == "classifier"
    assert runs.own_job_fields(spec)["data_options"]["label_field"] == "label"


@pytest.mark.slow
def test_encoder_pages_compare_and_point_elsewhere(own):
    at = _loaded(own, "encoder")
    at.switch_page("views/features.py").run()
    ok(at)
    assert len(at.get("plotly_chart")) >= 1  # CKA heatmaps of the two encoders
    at.switch_page("views/attention.py").run()
    ok(at)
    assert len(at.get("plotly_chart")) >= 2  # heads and their matching
    assert any("Attention heads of an encoder" in t.value for t in at.title)
    for page in ("overview", "soft_labels", "divergences", "calibration"):
        at.switch_page(f"views/{page}.py").run()
        ok(at)
        pair_charts = [c.key for c in at.get("plotly_chart") if not c.key.startswith("chart_logit_toy")]
        assert pair_charts == [], page  # (the logit toy of Soft labels needs no pair)
        assert any("encoder pair" in i.value and "Features" in i.value for i in at.info), page
    at.switch_page("views/distill.py").run()  # the form offers the methods that fit an encoder pair
    ok(at)
    assert at.selectbox(key="job_pair").value == "your own models"
    assert at.selectbox(key="job_objective").value == "embed_distill"  # an encoder pair's default method


def test_feature_layer_map_starts_at_the_last_blocks():
    from app.runs import own_layer_defaults
    from kdcore.methods import get_method

    teacher = ["embeddings", *(f"encoder.layer.{i}" for i in range(12))]
    student = ["embeddings", *(f"encoder.layer.{i}" for i in range(6))]
    fitnets, embed = get_method("feature_l2"), get_method("embed_distill")
    assert own_layer_defaults(fitnets, teacher, student, ("pretrained", None, "spread")) == {
        "layers": {"encoder.layer.5": "encoder.layer.11"}
    }
    # a from_teacher student of 4 layers is the teacher's copy: its last block is encoder.layer.3
    assert own_layer_defaults(fitnets, teacher, student, ("from_teacher", 4, "spread")) == {
        "layers": {"encoder.layer.3": "encoder.layer.11"}
    }
    assert own_layer_defaults(embed, teacher, student, ("pretrained", None, "spread")) == {}  # no required map
    assert own_layer_defaults(fitnets, ["conv", "fc"], ["conv", "fc"], ("reinit", None, "spread")) == {}


@pytest.mark.slow
def test_encoder_pair_distilled_from_the_distill_page_with_each_start(own, monkeypatch):
    """Embedding, feature and attention objectives on the encoder pair, each student_init, queued from the
    form and trained (in this process); a from_teacher run's student reopens on the Features page."""
    from kdcore.jobs import RunStore, worker

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # run below, in this process
    at = _loaded(own, "encoder")
    at.switch_page("views/distill.py").run()
    ok(at)
    store, done = RunStore(), {}
    for objective, init in (("embed_distill", "from_teacher"), ("feature_l2", "pretrained"), ("attn_kl", "reinit")):
        at.selectbox(key="job_objective").set_value(objective).run()
        at.radio(key="job_student_init").set_value(init).run()
        ok(at)
        if objective == "feature_l2":  # the layer map starts at the last blocks of both encoders
            assert at.text_input(key="job_feature_l2_layers").value == "encoder.layer.1: encoder.layer.3"
        at.number_input(key="job_max_steps").set_value(2)
        at.number_input(key="job_train_size").set_value(16)
        at.button(key="FormSubmitter:new_run-Start distillation").click().run()
        ok(at)
        run_id = at.session_state["watch_run"]
        cfg = store.get_run(run_id)["config"]
        assert (cfg["objective"], cfg["student_init"], cfg["model_kind"]) == (objective, init, "encoder")
        worker.run_queued(run_id, store)
        run = store.get_run(run_id)
        assert run["state"] == "completed", run["error"]
        done[init] = run
    assert done["from_teacher"]["pair"] == "hf:enc_teacher→enc_teacher[2 layers]"
    assert done["pretrained"]["pair"] == "hf:enc_teacher→enc_student"

    at = started(pair_source="Student of a finished run", run_student=done["from_teacher"]["id"], probe_size=16)
    ok(at)
    at.switch_page("views/features.py").run()
    ok(at)
    assert len(at.get("plotly_chart")) >= 1  # CKA of the teacher and the distilled student
