"""`python -m kdcore distill --teacher DIR --student DIR --data PATH` on the tiny tied-embedding Llama pair
(tests/helpers/hf_pairs.py) with each student_init, from flags and from a config file, and its one-line
refusals (in-process, tiny budgets)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from kdcore.cli import main
from kdcore.jobs.pair_source import student_for_run
from kdcore.jobs.store import RunStore
from tests.helpers.cli import cli_json
from tests.helpers.hf_pairs import MAX_POSITIONS, llama_config, llama_pair_with_corpus, save_model

TEXT = "\n\n".join(f"line {i} of a tiny corpus: {i % 7} birds and {i * 11} stones." for i in range(70))
BUDGET = ["--max-steps", "2", "--batch-size", "8", "--val-size", "16", "--context-length", "16"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("clihf")
    return (*llama_pair_with_corpus(root, TEXT), root)


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.mark.parametrize("init", ["pretrained", "from_teacher", "reinit"])
def test_cli_distill_with_each_student_init(llama, init, capsys, data_dir):
    teacher, student, data, _ = llama
    who = ["--student-layers", "2"] if init == "from_teacher" else ["--student", str(student)]
    rc, out = cli_json(
        capsys, "distill", "--teacher", str(teacher), *who, "--student-init", init, "--data", str(data), *BUDGET
    )
    assert rc == 0 and out["state"] == "completed", out
    assert out["recipe_fields"] == {"objective": "token"} and out["metrics"]["steps"] == 2
    store = RunStore()
    run = store.get_run(out["run_id"])
    label = "llama_teacher[2 layers]" if init == "from_teacher" else "llama_student"
    assert run["pair"] == f"hf:llama_teacher→{label}" and run["config"]["student_init"] == init
    epochs = store.metrics(out["run_id"], "epoch").set_index("epoch")
    assert np.isfinite(epochs.loc[0, ["val_loss", "val_acc", "val_agreement"]].to_numpy(float)).all()
    assert epochs.loc[1, "val_loss"] != epochs.loc[0, "val_loss"]
    reopened = student_for_run(run["config"], store.load_student(out["run_id"]))
    assert reopened.model.lm_head.weight is reopened.model.model.embed_tokens.weight
    assert len(reopened.layer_names()) == len(student_for_run(run["config"], reopened.model.state_dict()).layer_names())


def test_config_file_and_runs_export(llama, capsys, data_dir, tmp_path, monkeypatch):
    teacher, _, data, root = llama
    monkeypatch.chdir(root)  # relative paths are stored absolute, so the run reruns from any folder
    cfg = {
        "teacher": "llama_teacher",
        "data": "corpus.txt",
        "student_init": "from_teacher",
        "student_layers": 3,
        "layer_rule": "first",
        "data_options": {"context_length": 16, "mode": "pack"},
        "objective": "token",
        "max_steps": 2,
        "batch_size": 8,
        "val_size": 16,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out = cli_json(capsys, "distill", "--config", str(path))
    assert rc == 0 and out["state"] == "completed", out
    run = RunStore().get_run(out["run_id"])
    assert run["config"]["data_options"] == {"context_length": 16, "mode": "pack"}
    assert (run["config"]["teacher"], run["config"]["data"]) == (str(teacher), str(data))
    assert run["pair"] == "hf:llama_teacher→llama_teacher[3 layers]"
    assert main(["runs", "export", out["run_id"], "--out", str(tmp_path / "exp")]) == 0
    state = load_file(str(tmp_path / "exp" / "student.safetensors"))
    student = student_for_run(run["config"], state)
    assert len([k for k in state if k.endswith("self_attn.q_proj.weight")]) == 3
    np.testing.assert_array_equal(student.model.lm_head.weight.detach().numpy(), state["lm_head.weight"].numpy())


def test_bad_input_is_refused_in_one_line(llama, capsys, data_dir, tmp_path):
    teacher, student, data, root = llama
    base = ["distill", "--teacher", str(teacher), "--data", str(data), "--max-steps", "1"]
    cases = [
        ([*base, "--student-init", "from_teacher", "--student-layers", "4"], "student_layers below 4"),
        ([*base, "--student", str(student), "--context-length", str(MAX_POSITIONS + 1)], "max_position_embeddings"),
        ([*base, "--student", str(student), "--pair", "digits"], "not both"),
        ([*base], "'student' is empty"),
        ([*base, "--student", str(root / "missing")], "does not exist"),
    ]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": line}) + "\n" for line in TEXT.split("\n\n")))
    jbase = [*base[:3], "--data", str(jsonl), "--student", str(student)]
    cases.append(([*jbase, "--text-field", "body"], "'body'"))
    bare = save_model(llama_config(2), tmp_path / "bare", seed=5, tokenizer=False)
    cases.append(([*base, "--student", str(bare)], "has no tokenizer"))
    wide = save_model(llama_config(2, vocab_size=640), tmp_path / "wide", seed=5)
    cases.append(([*base, "--student", str(wide), "--student-init", "pretrained"], "640 tokens"))
    for argv, words in cases:
        rc, out = cli_json(capsys, *argv)
        assert rc == 2 and words in out["error"], (argv, out)
    assert RunStore().list_runs().empty  # nothing ran
