"""Jobs on a user's own module:factory pair (kdcore.jobs.factory_config, factory_source): the config's
checks, the pair built from the factories and safetensors files (checked against a numpy forward pass of
the files' weights), each student_init, a run whose stored student reopens, and the CLI.

The pair is tests/helpers/factory_pairs.py's residual MLPs (teacher 4 blocks, student 2) on a generated
3-class table."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kdcore.jobs.config import JobConfig, source_label
from kdcore.jobs.pair_source import pair_for_config, student_for_run
from tests.helpers.cli import cli_json
from tests.helpers.factory_pairs import STUDENT, TEACHER, WIDE_STUDENT, write_factory_pair


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return write_factory_pair(tmp_path_factory.mktemp("factory_pair"))


def _config(files, **changes) -> JobConfig:
    cfg = JobConfig(
        teacher_factory=TEACHER,
        teacher_weights=str(files["teacher"]),
        student_factory=STUDENT,
        student_weights=str(files["student"]),
        data=str(files["table"]),
        model_kind="classifier",
        epochs=1,
        batch_size=16,
        checkpoints=1,
        probe_size=8,
    )
    return replace(cfg, **changes)


def _numpy_logits(state: dict, x: np.ndarray, depth: int) -> np.ndarray:
    """TableNet's forward pass in float64 numpy: head(blocks(stem(x))), each block x + relu(W x + b)."""
    w = {k: v.double().numpy() for k, v in state.items()}
    h = x @ w["stem.weight"].T + w["stem.bias"]  # [B, W]
    for i in range(depth):
        h = h + np.maximum(h @ w[f"blocks.{i}.fc.weight"].T + w[f"blocks.{i}.fc.bias"], 0.0)
    return h @ w["head.weight"].T + w["head.bias"]  # [B, C]


# ---- the config ----------------------------------------------------------------------------------------


def test_a_complete_factory_config_is_valid_and_labelled(files):
    cfg = _config(files)
    assert cfg.problems() == []
    assert source_label(cfg) == "factory:make_teacher→make_student"
    assert source_label(replace(cfg, student_init="from_teacher")) == "factory:make_teacher→make_student[from teacher]"
    assert JobConfig.from_json(cfg.to_json()) == cfg
    assert _config(files, data="digits", data_options={}).problems() == []  # a built-in dataset by name


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"student_factory": ""}, "'student_factory' is empty"),
        ({"teacher_factory": "no_colon"}, "must look like 'package.module:factory'"),
        ({"teacher": "/some/dir"}, "name Hugging Face directories"),
        ({"student_weights": "weights.bin"}, "must be a .safetensors or .pt or .pth file"),
        ({"teacher_weights": "/nowhere/t.safetensors"}, "is not a file on this machine"),
        ({"teacher_weights": ""}, "'teacher_weights' is empty"),
        ({"data": ""}, "'data' is empty"),
        ({"data": "/nowhere/table.csv"}, "neither a file or folder on this machine nor a built-in dataset"),
        ({"model_kind": "causal_lm"}, "set model_kind 'classifier'"),
        ({"model_kind": "encoder"}, "'model_kind' of a module:factory pair must be one of classifier, causal_lm"),
        ({"data_options": {"context_length": 8}}, "unknown key 'context_length'"),
        ({"data_options": {"format": "csv"}}, "'data_options.format' must be one of auto, table, text, images"),
        ({"data_options": {"tokenizer": "bpe"}}, "'data_options.tokenizer' must be char or word"),
        ({"student_init": "from_teacher", "student_layers": 1}, "'student_layers' applies to a Hugging Face"),
    ],
)
def test_a_factory_config_names_each_problem(files, changes, expected):
    problems = _config(files, **changes).problems()
    assert any(expected in p for p in problems), problems


def test_factory_weights_without_a_factory_are_refused():
    problems = JobConfig(teacher_weights="t.safetensors").problems()
    assert any("'teacher_factory'" in p for p in problems) or any("'student_factory' is empty" in p for p in problems)


# ---- the pair, each student init -----------------------------------------------------------------------------


def test_the_pair_holds_the_files_weights_and_stays_unchanged(files):
    from kdcore.jobs.job import _place_models

    cfg = _config(files)
    pair = pair_for_config(cfg)
    assert pair.name == "factory:make_teacher→make_student" and pair.dataset.task == "classification"
    x = pair.dataset.split("val").inputs[:16]  # [16, 4]
    for adapter, name, depth in ((pair.teacher, "teacher", 4), (pair.student, "student", 2)):
        want = _numpy_logits(load_file(files[name]), x.double().numpy(), depth)
        np.testing.assert_allclose(adapter.logits(x).double().numpy(), want, rtol=1e-5, atol=1e-5)
    before = {k: v.clone() for k, v in pair.student.model.state_dict().items()}
    t_file, s_file = load_file(files["teacher"]), load_file(files["student"])
    _, pretrained = _place_models(pair, cfg, torch.device("cpu"))
    _, reinit = _place_models(pair, replace(cfg, student_init="reinit", seed=3), torch.device("cpu"))
    _, copied = _place_models(pair, replace(cfg, student_init="from_teacher"), torch.device("cpu"))
    assert all(torch.equal(pretrained.model.state_dict()[k], v) for k, v in s_file.items())
    assert not torch.equal(reinit.model.state_dict()["head.weight"], s_file["head.weight"])
    got = copied.model.state_dict()
    for s_block, t_block in ((0, 0), (1, 3)):  # spread: the first and the last of the teacher's 4 blocks
        assert torch.equal(got[f"blocks.{s_block}.fc.weight"], t_file[f"blocks.{t_block}.fc.weight"])
    assert torch.equal(got["head.weight"], t_file["head.weight"]) and torch.equal(got["stem.bias"], t_file["stem.bias"])
    assert all(torch.equal(pair.student.model.state_dict()[k], v) for k, v in before.items())  # never mutated
    assert pair_for_config(cfg).teacher is pair.teacher  # cached by factory and weights file


def test_from_teacher_is_refused_where_the_student_is_not_a_shallower_copy(files):
    from kdcore.jobs import prepare_run

    cfg = _config(files, student_factory=WIDE_STUDENT, student_weights=str(files["wide"]), student_init="from_teacher")
    label = re.escape("'factory:make_teacher→make_wide_student[from teacher]'")
    with pytest.raises(ValueError, match=f"from_teacher' does not fit the pair {label}: .*not a shallower copy"):
        prepare_run(cfg)


@pytest.mark.slow
def test_a_run_reopens_its_student_and_exports(files, data_dir, tmp_path):
    from kdcore.cli import export_run
    from kdcore.jobs import run_job
    from kdcore.jobs.store import RunStore

    store = RunStore()
    result = run_job(_config(files, max_steps=3, student_init="from_teacher"), store=store)
    run = store.get_run(result.run_id)
    assert run["state"] == "completed" and run["pair"] == "factory:make_teacher→make_student[from teacher]"
    saved = store.load_student(result.run_id)
    reopened = student_for_run(run["config"], saved)
    assert all(torch.equal(reopened.model.state_dict()[k], v) for k, v in saved.items())
    x = pair_for_config(JobConfig.from_dict(run["config"])).dataset.split("val").inputs[:8]
    np.testing.assert_allclose(
        reopened.logits(x).double().numpy(), _numpy_logits(saved, x.double().numpy(), 2), rtol=1e-5, atol=1e-5
    )
    from kdcore.doctor.diagnose import _run_pair

    assert _run_pair(run["config"]).name == run["pair"]  # the Doctor reloads the factory pair, as the runner did
    names = {p.name for p in export_run(store, result.run_id, tmp_path / "export")}
    assert {"config.json", "student.safetensors"} <= names
    assert json.loads((tmp_path / "export" / "config.json").read_text())["teacher_factory"] == TEACHER


# ---- the command line ----------------------------------------------------------------------------------------


def test_cli_distills_a_factory_pair(files, capsys, data_dir, tmp_path, monkeypatch):
    from kdcore.jobs.store import RunStore

    monkeypatch.chdir(files["table"].parent)  # relative paths are stored absolute
    flags = ["--teacher-factory", TEACHER, "--teacher-weights", "teacher.safetensors", "--student-factory", STUDENT]
    flags += ["--student-weights", "student.safetensors", "--data", "table.csv", "--label-column", "label"]
    budget = ["--model-kind", "classifier", "--objective", "kd", "--max-steps", "2", "--batch-size", "16"]
    rc, out = cli_json(capsys, "distill", *flags, *budget)
    assert rc == 0 and out["state"] == "completed", out
    cfg = RunStore().get_run(out["run_id"])["config"]
    assert cfg["teacher_weights"] == str(files["teacher"]) and cfg["data"] == str(files["table"])
    assert cfg["data_options"] == {"label_field": "label"} and cfg["student_init"] == ""
    weights = Path(__file__).resolve().parents[1] / "sample_models" / "weights"  # the shipped digits pair
    digits = {"teacher_factory": "sample_models.architectures:DigitsTeacher", "data": "digits", "data_options": {}}
    digits |= {"student_factory": "sample_models.architectures:DigitsStudent", "max_steps": 1}
    digits |= {"teacher_weights": str(weights / "digits_teacher.safetensors")}
    config_file = tmp_path / "job.json"
    config_file.write_text(
        json.dumps({**cfg, **digits, "student_weights": str(weights / "digits_student.safetensors")})
    )
    rc, out = cli_json(capsys, "distill", "--config", str(config_file))
    assert rc == 0 and out["state"] == "completed", out
    run = RunStore().get_run(out["run_id"])
    assert run["config"]["data"] == "digits" and run["pair"] == "factory:DigitsTeacher→DigitsStudent"


def test_cli_refuses_a_pair_with_factories(files, capsys, data_dir):
    from kdcore.cli import main

    rc = main(["distill", "--pair", "digits", "--teacher-factory", TEACHER, "--student-factory", STUDENT])
    assert rc == 2 and "not both" in capsys.readouterr().err


def test_each_data_format_reads_as_its_loader(files, tmp_path):
    """Text (char/word), an image folder and its .zip give the datasets kdcore.data's loaders give."""
    import zipfile

    from PIL import Image

    from kdcore.data import load_image_folder, load_text
    from kdcore.jobs.factory_source import factory_dataset

    text = tmp_path / "story.txt"
    text.write_text(" ".join(f"word{i % 5}" for i in range(600)), encoding="utf-8")
    ds = factory_dataset(_config(files, data=str(text), model_kind="causal_lm", data_options={"tokenizer": "word"}))
    assert torch.equal(ds.split("train").inputs, load_text(text, tokenizer="word").split("train").inputs)
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / c / f"{i}.png")
    want = load_image_folder(tmp_path / "photos").split("train")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for f in sorted((tmp_path / "photos").rglob("*.png")):
            z.write(f, f.relative_to(tmp_path).as_posix())
    (tmp_path / "photos.zip").rename(tmp_path / "upload.zip")
    for data in (tmp_path / "photos", tmp_path / "upload.zip"):
        got = factory_dataset(_config(files, data=str(data))).split("train")
        assert torch.equal(got.inputs, want.inputs) and torch.equal(got.targets, want.targets), data


# ---- a student without a weights file (reinit, from_teacher) -----------------------------------------------


def test_student_weights_are_optional_with_reinit_and_from_teacher(files):
    for init in ("reinit", "from_teacher"):
        cfg = _config(files, student_weights="", student_init=init)
        assert cfg.problems() == [], init
        assert JobConfig.from_json(cfg.to_json()).student_weights == ""
    assert (
        source_label(_config(files, student_weights="", student_init="reinit")) == "factory:make_teacher→make_student"
    )
    for init in ("", "pretrained"):  # the default of a factory pair starts from the file
        problems = _config(files, student_weights="", student_init=init).problems()
        assert len(problems) == 1, problems
        assert "'student_weights' is empty" in problems[0] and "choose student_init 'reinit'" in problems[0]
        assert "'from_teacher'" in problems[0]
    assert any("'teacher_weights' is empty" in p for p in _config(files, teacher_weights="").problems())


def test_a_student_without_weights_is_its_factorys_seeded_init(files):
    from kdcore.adapters import init_from_teacher
    from kdcore.jobs.job import _place_models
    from tests.helpers.factory_pairs import make_student, make_teacher

    cfg = _config(files, student_weights="", student_init="reinit", seed=5)
    pair = pair_for_config(cfg)
    torch.manual_seed(5)
    want = make_student().state_dict()
    assert "no weights: factory init" in pair.student.name
    assert all(torch.equal(pair.student.model.state_dict()[k], v) for k, v in want.items())
    _, fresh = _place_models(pair, cfg, torch.device("cpu"))  # reinit: the seeded fresh clone, as with a file
    _, with_file = _place_models(
        pair_for_config(_config(files, student_init="reinit", seed=5)), cfg, torch.device("cpu")
    )
    assert all(torch.equal(fresh.model.state_dict()[k], v) for k, v in with_file.model.state_dict().items())
    teacher = make_teacher()
    teacher.load_state_dict(load_file(files["teacher"]))
    copied, _ = init_from_teacher(teacher, make_student())
    cfg_t = replace(cfg, student_init="from_teacher")
    _, started = _place_models(pair_for_config(cfg_t), cfg_t, torch.device("cpu"))
    assert all(torch.equal(started.model.state_dict()[k], v) for k, v in copied.state_dict().items())


def test_a_from_teacher_run_without_student_weights_starts_from_the_teachers_blocks(files, data_dir, monkeypatch):
    """The run's own step-0 student (captured where the job places it) is init_from_teacher's; the stored
    student reopens from the run's record, which keeps student_weights empty."""
    import kdcore.jobs.job as job_module
    from kdcore.adapters import init_from_teacher
    from kdcore.jobs import run_job
    from kdcore.jobs.store import RunStore
    from tests.helpers.factory_pairs import make_student, make_teacher

    placed: list[dict] = []
    place = job_module._place_models

    def capture(pair, config, device):
        teacher, student = place(pair, config, device)
        placed.append({k: v.detach().clone() for k, v in student.model.state_dict().items()})
        return teacher, student

    monkeypatch.setattr(job_module, "_place_models", capture)
    store = RunStore()
    result = run_job(_config(files, student_weights="", student_init="from_teacher", max_steps=2), store=store)
    run = store.get_run(result.run_id)
    assert run["state"] == "completed" and run["config"]["student_weights"] == ""
    assert run["pair"] == "factory:make_teacher→make_student[from teacher]"
    teacher = make_teacher()
    teacher.load_state_dict(load_file(files["teacher"]))
    copied, _ = init_from_teacher(teacher, make_student())
    assert len(placed) == 1 and all(torch.equal(placed[0][k], v) for k, v in copied.state_dict().items())
    saved = store.load_student(result.run_id)
    assert not all(torch.equal(saved[k], v) for k, v in placed[0].items())  # it trained
    reopened = student_for_run(run["config"], saved)
    assert all(torch.equal(reopened.model.state_dict()[k], v) for k, v in saved.items())


def test_cli_distills_without_student_weights_and_refuses_pretrained(files, capsys, data_dir, monkeypatch):
    from kdcore.cli import main
    from kdcore.jobs.store import RunStore

    monkeypatch.chdir(files["table"].parent)
    flags = ["--teacher-factory", TEACHER, "--teacher-weights", "teacher.safetensors", "--student-factory", STUDENT]
    flags += ["--data", "table.csv", "--model-kind", "classifier", "--max-steps", "1", "--batch-size", "16"]
    rc = main(["distill", *flags])  # the default init (pretrained) needs the file
    err = capsys.readouterr().err
    assert rc == 2 and "'student_weights' is empty" in err and "'from_teacher'" in err, err
    assert RunStore().list_runs().empty  # nothing stored
    for init in ("from_teacher", "reinit"):
        rc, out = cli_json(capsys, "distill", *flags, "--student-init", init)
        assert rc == 0 and out["state"] == "completed", out
        cfg = RunStore().get_run(out["run_id"])["config"]
        assert cfg["student_weights"] == "" and cfg["student_init"] == init
