"""student_init="from_teacher" for registered / module:factory pairs (METHODS §14.2): the job's config checks,
its step-0 student, a short run, `make-student --pair`, and the refusals, on the tiny CNN pairs of
tests/helpers/cnn_pairs.py (teacher stages of 3 and 4 residual blocks)."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kdcore.adapters import init_from_teacher
from kdcore.cli import main
from kdcore.jobs import ConfigError, JobConfig, RunStore, prepare_run, run_job
from kdcore.jobs.chain import plan_chain
from kdcore.jobs.job import _place_models
from kdcore.jobs.resolve import resolve_pair
from tests.helpers.cli import cli_json
from tests.helpers.cnn_pairs import CNN, CNN_ODD, CNN_WIDE, TEACHER_DEPTHS, TinyResNet

TEACHER = dict(zip(("layer1", "layer2"), TEACHER_DEPTHS))


def _spread_np(n_t: int, n_s: int) -> list[int]:
    return [0] if n_s == 1 else [int(v) for v in np.rint(np.arange(n_s) * (n_t - 1) / (n_s - 1))]


def _expected_state(teacher_state: dict, student_keys, kept: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Each student key's teacher tensor (float64), renaming block i of a stage to the kept teacher block."""
    out = {}
    for key in student_keys:
        m = re.match(r"^(layer\d)\.(\d+)\.(.*)$", key)
        t_key = f"{m.group(1)}.{kept[m.group(1)][int(m.group(2))]}.{m.group(3)}" if m else key
        out[key] = teacher_state[t_key].numpy().astype(np.float64)
    return out


def _assert_state(state: dict, expected: dict[str, np.ndarray]) -> None:
    assert set(state) == set(expected)
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy().astype(np.float64), expected[key], err_msg=key)


def test_config_accepts_from_teacher_for_a_pair_and_refuses_bad_fields():
    JobConfig(pair=CNN, student_init="from_teacher", layer_rule="first").validate()
    bad = [
        (dict(student_layers=2), "'student_layers' applies to a Hugging Face teacher directory"),
        (dict(layer_rule="every"), "'layer_rule' must be one of spread, stride, first"),
    ]
    for fields, needle in bad:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            JobConfig(pair=CNN, student_init="from_teacher", **fields).validate()
    with pytest.raises(ConfigError, match="needs 'student_layers'"):  # the Hugging Face path is unchanged
        JobConfig(teacher="/no/such/dir", student_init="from_teacher").validate()


@pytest.mark.parametrize("pair_name, rule", [(CNN, "spread"), (CNN_ODD, "spread"), (CNN, "first")])
def test_the_jobs_student_is_the_teachers_blocks_and_the_pair_is_unchanged(pair_name, rule):
    pair = resolve_pair(pair_name)
    before = {k: v.clone() for k, v in pair.student.model.state_dict().items()}
    config = JobConfig(pair=pair_name, student_init="from_teacher", layer_rule=rule)
    _, student = _place_models(pair, config, torch.device("cpu"))
    n_s = {name: len(getattr(pair.student.model, name)) for name in TEACHER}
    kept = {
        name: _spread_np(n_t, n_s[name]) if rule == "spread" else list(range(n_s[name]))
        for name, n_t in TEACHER.items()
    }
    expected = _expected_state(pair.teacher.model.state_dict(), before, kept)
    _assert_state(student.model.state_dict(), expected)
    reference, mapping = init_from_teacher(pair.teacher.model, pair.student.model, rule)
    assert mapping == kept
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in student.model.state_dict().items())
    assert student is not pair.student and student.model is not pair.student.model
    assert all(torch.equal(pair.student.model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.slow
def test_a_short_run_records_the_mapping(data_dir):
    result = run_job(
        JobConfig(pair=CNN, student_init="from_teacher", max_steps=2, batch_size=48, checkpoints=1), store=RunStore()
    )
    assert result.state == "completed", result.error
    notice = "student init from teacher: layer1 ← [0, 2], layer2 ← [0, 3]"
    assert result.notices == [notice]
    run = RunStore().get_run(result.run_id)
    assert run["config"]["student_init"] == "from_teacher" and notice in run["summary"]["notices"]


def test_a_pair_that_is_not_a_shallower_copy_is_refused_before_training(data_dir):
    config = JobConfig(pair=CNN_WIDE, student_init="from_teacher", max_steps=1)
    needle = "does not fit the pair 'cnn-wide'.*has shape \\(6, 4, 3, 3\\).*reinit"
    with pytest.raises(ValueError, match=needle):
        prepare_run(config)
    with pytest.raises(ValueError, match=needle):
        run_job(config, store=RunStore())
    assert RunStore().list_runs().empty
    with pytest.raises(ValueError, match="chain 'takd' trains a ladder"):
        plan_chain(JobConfig(pair=CNN, objective="takd", student_init="from_teacher"))


@pytest.mark.parametrize(
    "pair_name, argv, depths, mapping",
    [
        (CNN, [], (2, 2), {"layer1": [0, 2], "layer2": [0, 3]}),  # even: rint(3/1 · i)
        (CNN_ODD, [], (1, 3), {"layer1": [0], "layer2": [0, 2, 3]}),  # odd: 1.5 rounds to even 2
        (CNN_ODD, ["--rule", "first"], (1, 3), {"layer1": [0], "layer2": [0, 1, 2]}),
    ],
)
def test_make_student_pair_writes_a_loadable_student_and_its_mapping(
    capsys, tmp_path, pair_name, argv, depths, mapping
):
    out = tmp_path / "student"
    rc, made = cli_json(capsys, "make-student", "--pair", pair_name, "--out", str(out), *argv)
    assert (
        rc == 0
        and made["path"] == str(out)
        and made["mapping"] == mapping == json.loads((out / "mapping.json").read_text())
    )
    assert made["architecture"] == "TinyResNet"
    student = TinyResNet(depths, classes=4)
    student.load_state_dict(load_file(str(out / "student.safetensors")), strict=True)
    teacher = resolve_pair(pair_name).teacher.model.state_dict()
    _assert_state(student.state_dict(), _expected_state(teacher, student.state_dict(), mapping))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--pair", CNN_WIDE], "the student is not a shallower copy of the teacher"),
        (["--pair", CNN, "--layers", "2"], "--layers applies to --from"),
        (["--pair", CNN, "--rule", "stride"], "needs n_teacher divisible by n_student"),
    ],
)
def test_make_student_pair_refusals_write_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "student"
    assert main(["make-student", *argv, "--out", str(out)]) != 0
    assert needle in capsys.readouterr().err and not out.exists()
