"""`python -m kdcore make-student`: a from_teacher student directory (METHODS §14.2) from the CLI, on the
tiny Llama- and BERT-style pairs of tests/helpers/hf_pairs.py, and its one-line refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdcore.cli import main
from tests.helpers.cli import cli_json
from tests.helpers.hf_pairs import bert_pair, llama_config, llama_pair, save_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_pairs")
    return {"llama": llama_pair(root)[0], "bert": bert_pair(root)[0]}


pytestmark = pytest.mark.usefixtures("hub_offline")


def _make(capsys, *argv: str) -> dict:
    rc, out = cli_json(capsys, "make-student", *argv)
    assert rc == 0, out
    return out


def _load(model_dir: Path):
    import transformers

    arch = json.loads((model_dir / "config.json").read_text())["architectures"][0]
    return getattr(transformers, arch).from_pretrained(str(model_dir), local_files_only=True).eval()


def _layer_prefix(key: str) -> tuple[str, int, str] | None:
    """("model.layers", 3, "mlp.up_proj.weight") for "model.layers.3.mlp.up_proj.weight"; None off a layer list."""
    parts = key.split(".")
    for k, part in enumerate(parts):
        if part.isdigit() and k > 0 and parts[k - 1] in ("layers", "layer"):
            return ".".join(parts[:k]), int(part), ".".join(parts[k + 1 :])
    return None


def _assert_copied(teacher, student, kept: list[int]) -> None:
    """Every student tensor equals the teacher's: layer i of the student equals teacher layer kept[i]."""
    t_state, s_state = teacher.state_dict(), student.state_dict()
    n_layer_tensors = 0
    for key, s_tensor in s_state.items():
        where = _layer_prefix(key)
        if where is not None:
            prefix, i, rest = where
            key = f"{prefix}.{kept[i]}.{rest}"
            n_layer_tensors += 1
        assert torch.equal(s_tensor, t_state[key]), key
    assert n_layer_tensors > 0  # the layer lists were found, so the mapping was tested


@pytest.mark.parametrize(
    "kind, argv, kept",
    [
        ("llama", ["--layers", "3"], [0, 2, 3]),  # spread: rint(i·3/2) = 0, 2 (1.5 to even), 3
        ("llama", ["--layers", "2", "--rule", "stride", "--offset", "1"], [1, 3]),
        ("bert", ["--layers", "2"], [0, 3]),
        ("bert", ["--layers", "3", "--rule", "first"], [0, 1, 2]),
    ],
)
def test_the_student_loads_offline_with_the_chosen_teacher_layers(teachers, tmp_path, capsys, kind, argv, kept):
    out = tmp_path / "student"
    made = _make(capsys, "--from", str(teachers[kind]), *argv, "--out", str(out))
    assert made["path"] == str(out) and made["layers"] == kept and made["teacher_layers"] == 4
    assert made["architecture"] == ("LlamaForCausalLM" if kind == "llama" else "BertForSequenceClassification")
    assert made["tokenizer_files"] and all((out / f).is_file() for f in made["tokenizer_files"])
    teacher, student = _load(teachers[kind]), _load(out)
    assert type(student) is type(teacher) and student.config.num_hidden_layers == len(kept)
    _assert_copied(teacher, student, kept)


def test_tied_embeddings_stay_tied_and_the_text_output_names_the_kept_layers(teachers, tmp_path, capsys):
    out = tmp_path / "student"
    capsys.readouterr()
    assert main(["make-student", "--from", str(teachers["llama"]), "--layers", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[0, 3]" in text and str(out) in text and "LlamaForCausalLM" in text
    student = _load(out)
    assert student.config.tie_word_embeddings
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()


def _refused(capsys, argv: list[str], *, as_json: bool) -> str:
    capsys.readouterr()
    assert main(["make-student", *argv, *(["--json"] if as_json else [])]) == 2
    got = capsys.readouterr()
    if as_json:
        return json.loads(got.out)["error"]
    assert got.out == "" and got.err.startswith("error: ") and got.err.count("\n") == 1
    assert "Traceback" not in got.err
    return got.err


@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input_is_one_line_and_exit_2(teachers, tmp_path, capsys, as_json):
    teacher = str(teachers["llama"])
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (tmp_path / "a_file").write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    cases = [
        (["--from", str(tmp_path / "missing"), "--layers", "2"], ["does not exist", "missing"]),
        (["--from", str(tmp_path / "a_file"), "--layers", "2"], ["is a file"]),
        (["--from", str(no_config), "--layers", "2"], ["no config.json"]),
        (["--from", teacher, "--layers", "0"], ["--layers", "at least 1", "Got 0"]),
        (["--from", teacher, "--layers", "5"], ["at most", "4", "deeper", "Got 5"]),
        (["--from", teacher, "--layers", "3", "--rule", "stride"], ["divisible"]),
    ]
    for i, (argv, words) in enumerate(cases):
        out = tmp_path / f"out{i}"
        message = _refused(capsys, [*argv, "--out", str(out)], as_json=as_json)
        assert all(w in message for w in words), (argv, message)
        assert not out.exists()  # a refused student leaves no folder behind
    message = _refused(capsys, ["--from", teacher, "--layers", "2", "--out", str(full)], as_json=as_json)
    assert "not empty" in message and str(full) in message
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]  # nothing overwritten


def test_an_existing_empty_out_folder_is_used_and_kept(teachers, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert _make(capsys, "--from", str(teachers["bert"]), "--layers", "1", "--out", str(out))["layers"] == [0]
    assert (out / "config.json").is_file()
    capsys.readouterr()
    assert main(["make-student", "--from", str(teachers["llama"]), "--layers", "9", "--out", str(tmp_path / "e2")]) == 2
    out2 = tmp_path / "e3"
    out2.mkdir()
    assert main(["make-student", "--from", str(teachers["llama"]), "--layers", "9", "--out", str(out2)]) == 2
    assert out2.is_dir()  # the user's own empty folder is not removed


def test_the_command_in_a_subprocess(tmp_path):
    teacher = save_model(llama_config(2), tmp_path / "teacher", seed=5)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "kdcore", "make-student", "--from", str(teacher), "--layers", "1"]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "s"), "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["layers"] == [0]
    bad = subprocess.run(
        [*cmd, "--out", str(tmp_path / "s")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "error: " in bad.stderr
