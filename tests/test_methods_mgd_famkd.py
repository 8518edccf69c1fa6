"""The `mgd` and `famkd` entries of the method table: each step is its tested loss with the heads that
Method.modules builds, the heads train with the student and never reach its checkpoint, each runs a
few steps on digits and shapes from the CLI and the API, and bad input is refused before a run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.objectives import build_projectors, compute_loss
from kdcore.losses.famkd import FAMModule, fam_kd_loss
from kdcore.losses.mgd import MGDHead, mgd_loss
from kdcore.methods import StepTensors, get_method

BASE = JobConfig(pair="digits", epochs=1, max_steps=2, train_size=64, val_size=64, checkpoints=0, lr=1e-2)
DIGITS_MGD = {"layers": {"conv2": "conv3"}}  # student 24×4×4 -> teacher 64×4×4 (the last stages)
SHAPES_FAM = {"layers": {"conv1": "conv2", "conv2": "conv4"}}  # 8×16×16 -> 32×8×8, 16×8×8 -> 64×8×8


def _batch(epoch: int | None = None) -> StepTensors:
    g = torch.Generator().manual_seed(0)
    b = StepTensors(
        "classification", torch.randn(4, 5, generator=g).requires_grad_(), torch.randn(4, 5), torch.arange(4)
    )
    b.student_feats = {"s.a": torch.randn(4, 3, 4, 4, generator=g).requires_grad_()}
    b.teacher_feats = {"t": torch.rand(4, 6, 8, 8, generator=g)}
    b.epoch = epoch
    return b


def _terms(objective: str, **params):
    return JobConfig(objective=objective, params=params).validate().resolved_terms()


def test_mgd_step_is_its_tested_loss_with_the_built_heads():
    b = _batch()
    b.teacher_feats = {"t": torch.rand(4, 6, 4, 4)}
    terms = _terms("mgd", layers={"s.a": "t"}, alpha=0.01, scale_alpha=True)
    b.projectors = build_projectors(terms, b.student_feats, b.teacher_feats)
    head = b.projectors["mgd__s__a"]
    assert isinstance(head, MGDHead) and isinstance(head.align, torch.nn.Conv2d)  # 3 -> 6 channels
    head.eval()  # outside training no mask is drawn: the step is deterministic
    _, comps = compute_loss(terms, 0.0, b)
    want = mgd_loss(
        b.student_feats["s.a"],
        b.teacher_feats["t"],
        head.generator,
        head.align,
        alpha=0.01 * 25088 / 96,
        lambda_mask=0.0,
    )
    torch.testing.assert_close(comps["mgd/s.a"], want)
    head.train()
    torch.manual_seed(1)
    masked = compute_loss(terms, 0.0, b)[1]["mgd/s.a"]
    assert masked.item() != pytest.approx(want.item())  # training draws the mask (λ = 0.15)


def test_famkd_step_is_its_tested_loss_with_the_warmup_of_the_epoch():
    b = _batch(epoch=2)
    terms = _terms("famkd", layers={"s.a": "t"}, cuton=0.5, weight=2.0, warmup_epochs=8)
    b.projectors = build_projectors(terms, b.student_feats, b.teacher_feats)
    fam = b.projectors["famkd__s__a"]
    assert isinstance(fam, FAMModule) and fam.size == (8, 8) and fam.removed == 16
    _, comps = compute_loss(terms, 0.0, b)
    want = fam_kd_loss([b.student_feats["s.a"]], [b.teacher_feats["t"]], [fam], weight=2.0)
    torch.testing.assert_close(comps["famkd/s.a"], 0.25 * want)  # min(2/8, 1)
    b.epoch = None
    torch.testing.assert_close(compute_loss(terms, 0.0, b)[1]["famkd/s.a"], want)


@pytest.mark.slow  # ~3 s each: the CLI loads the pair, caches the teacher, writes the run
@pytest.mark.parametrize(
    ("pair", "objective", "params", "comp"),
    [
        ("digits", "mgd", DIGITS_MGD, "mgd/conv2"),
        ("shapes", "famkd", {**SHAPES_FAM, "cuton": 0.5}, "famkd/conv1"),
    ],
)
def test_the_cli_runs_mgd_and_famkd(data_dir, capsys, pair, objective, params, comp):
    argv = ["distill", "--pair", pair, "--objective", objective, "--max-steps", "2", "--json"]
    argv += ["--train-size", "64", "--val-size", "64", "--teacher-cache"]
    argv += [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed" and out["metrics"]["steps"] == 2, out
    steps = RunStore().metrics(out["run_id"], "step")
    assert comp in steps.columns and np.isfinite(steps[comp]).all() and (steps[comp] > 0).all()


@pytest.mark.parametrize(
    ("pair", "objective", "params"),
    [
        ("shapes", "mgd", {"layers": {"conv2": "conv4"}, "mask": "spatial"}),
        ("digits", "famkd", {"layers": {"conv1": "conv2", "conv2": "conv3"}}),
    ],
)
def test_the_api_trains_the_heads_and_keeps_them_out_of_the_student(tmp_path, pair, objective, params):
    store = RunStore(tmp_path)
    r = run_job(replace(BASE, pair=pair, objective=objective, params=params, checkpoints=1), store=store)
    assert r.state == "completed", r.error
    steps = store.metrics(r.run_id, "step")
    assert {f"{objective}/{s}" for s in params["layers"]} | {"ce"} <= set(steps.columns)
    arts = store.artifacts(r.run_id)
    names = [n for n, k in zip(arts["name"], arts["kind"]) if n.endswith(".safetensors") and k != "resume"]
    keys = set(load_file(str(store.artifact_path(r.run_id, names[-1]))))
    assert keys and not any(objective in k or "generator" in k or "k_real" in k for k in keys)


@pytest.mark.parametrize(
    ("objective", "params", "reason"),
    [
        ("mgd", {"layers": {"conv1": "conv1"}}, "same spatial size"),
        ("mgd", {"layers": {"conv9": "conv3"}}, "student layer 'conv9'"),
        ("mgd", {"layers": {"conv2": "conv3"}, "lambda_mask": 1.5}, r"lambda_mask must be a number in \[0, 1\]"),
        ("famkd", {"layers": {"conv2": "conv3"}, "cuton": 0.7}, r"cuton must be a number in \(0, 0.5\]"),
        ("famkd", {"layers": {"conv2": "conv3"}, "cuton": 0.0}, r"cuton must be a number in \(0, 0.5\]"),
        ("famkd", {"layers": {"conv2": "head"}}, "conv feature maps"),
        ("famkd", {}, "layers is required"),
    ],
)
def test_bad_layers_and_ranges_are_refused_before_a_run(tmp_path, objective, params, reason):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match=reason):
        run_job(replace(BASE, objective=objective, params=params), store=store)
    assert len(store.list_runs()) == 0


def test_the_table_lists_sources_sections_and_aliases():
    assert get_method("masked_generative") is get_method("mgd")
    assert get_method("fam_kd") is get_method("famkd")
    assert "2205.01529" in get_method("mgd").source and "2403.05894" in get_method("famkd").source
    assert get_method("mgd").defaults() == {
        "layers": None,
        "alpha": 7e-5,
        "scale_alpha": True,
        "lambda_mask": 0.15,
        "mask": "channel",
    }
