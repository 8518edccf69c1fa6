"""`python -m kdcore distill --teacher DIR --student DIR --data PATH --model-kind encoder|sequence_classification`
on tiny BERT-style pairs (tests/helpers/hf_pairs.py): sentence data tokenised by the pair's tokenizer, the
encoder's default objective embed_distill, each student_init, the student reopened, and the refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from kdcore.cli import main
from kdcore.jobs import JobConfig
from kdcore.jobs.pair_source import pair_for_config, student_for_run
from kdcore.jobs.store import RunStore
from tests.helpers.cli import cli_json
from tests.helpers.hf_pairs import bert_encoder_pair, bert_pair

BUDGET = ["--max-steps", "2", "--batch-size", "8", "--val-size", "16", "--context-length", "16"]
WORDS = ["red", "blue", "fox", "stone", "river", "cloud", "seven", "green"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clienc")
    enc = bert_encoder_pair(root)
    clf = bert_pair(root)
    lines = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 5)) + f" {i}" for i in range(60)]
    (root / "sentences.txt").write_text("\n".join(lines))
    with open(root / "labelled.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        for i, line in enumerate(lines):
            w.writerow([line, "even" if i % 2 == 0 else "odd"])
    return enc, clf, root


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.mark.parametrize("init", ["pretrained", "reinit", "from_teacher"])
def test_encoder_pair_distils_from_the_cli(pairs, init, capsys, data_dir):
    (teacher, student), _, root = pairs
    who = ["--student-layers", "2"] if init == "from_teacher" else ["--student", str(student)]
    argv = ["distill", "--teacher", str(teacher), *who, "--data", str(root / "sentences.txt")]
    rc, out = cli_json(capsys, *argv, "--model-kind", "encoder", "--student-init", init, *BUDGET)
    assert rc == 0 and out["state"] == "completed", out
    assert out["recipe_fields"] == {"objective": "embed_distill"}
    store = RunStore()
    run = store.get_run(out["run_id"])
    assert run["config"]["model_kind"] == "encoder" and run["config"]["data_options"]["context_length"] == 16
    epochs = store.metrics(out["run_id"], "epoch").set_index("epoch")
    assert np.isfinite(float(epochs.loc[0, "val_cka"])) and np.isfinite(float(epochs.loc[1, "val_cka"]))
    reopened = student_for_run(run["config"], store.load_student(out["run_id"]))
    assert reopened.kind == "encoder"
    pair = pair_for_config(JobConfig.from_dict(run["config"]))
    x = pair.dataset.split("test").inputs[:3]
    assert reopened.logits(x).shape[0] == 3  # pooled embeddings [B, H] of the reopened student


def test_sequence_classifier_pair_distils_with_labelled_sentences(pairs, capsys, data_dir):
    _, (teacher, student), root = pairs
    argv = ["distill", "--teacher", str(teacher), "--student", str(student), "--data", str(root / "labelled.csv")]
    flags = ["--model-kind", "sequence_classification", "--text-field", "sentence", "--label-field", "label"]
    rc, out = cli_json(capsys, *argv, *flags, "--objective", "kd", *BUDGET)
    assert rc == 0 and out["state"] == "completed", out
    pair = pair_for_config(JobConfig.from_dict(RunStore().get_run(out["run_id"])["config"]))
    assert pair.dataset.task == "classification" and pair.kind == "classifier"
    assert sorted(pair.dataset.split("train").targets.unique().tolist()) == [0, 1]


def test_sentence_data_refusals(pairs, capsys, data_dir):
    (teacher, student), (c_teacher, c_student), root = pairs
    base = ["distill", "--teacher", str(c_teacher), "--student", str(c_student), "--data", str(root / "labelled.csv")]
    rc = main([*base, "--model-kind", "sequence_classification", "--text-field", "sentence", *BUDGET])
    err = capsys.readouterr().err
    assert rc == 2 and "label_field" in err and "--label-field" in err
    rc = main(
        ["distill", "--teacher", str(teacher), "--student", str(student), "--data", "s.txt", "--label-field", "x"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "sentence data" in err
    with pytest.raises(ValueError, match="'data_options.unit' must be one of line, paragraph"):
        JobConfig(teacher=str(teacher), student=str(student), data="x.txt", data_options={"unit": "word"}).validate()
