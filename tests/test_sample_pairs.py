"""Common checks over every sample pair, the manifest's promises, and bit-for-bit retraining."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import sample_models
from kdcore.data import get_dataset
from sample_models import PAIRS, ROLES, load_model, load_pair, manifest
from sample_models import architectures as arch
from sample_models.recipes import RECIPES as JOB_RECIPES
from sample_models.train import RECIPES, SUBSET, evaluate

ROOT = Path(__file__).resolve().parents[1]
CASES = [(p, r) for p in PAIRS for r in ROLES]


def test_pairs_and_manifest_agree():
    m = manifest()
    assert PAIRS == ("digits", "shapes", "shapes_multilabel", "tinylang")
    assert set(m["pairs"]) == set(PAIRS) == set(RECIPES)
    assert m["threads"] >= 1 and m["torch"]
    total = 0
    for name in PAIRS:
        entry = m["pairs"][name]
        assert entry["dataset"] == RECIPES[name].dataset and entry["recipe"]["seed"] == RECIPES[name].seed
        for role in ROLES:
            info = entry["models"][role]
            path = sample_models.ROOT / info["file"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], f"{path} differs from the manifest"
            total += path.stat().st_size
    assert total < 5_000_000  # a few MB in all


@pytest.mark.parametrize("name,role", CASES)
def test_common_checks_over_every_sample_model(name, role):
    model = load_model(name, role)
    info = manifest()["pairs"][name]["models"][role]
    dataset = get_dataset(manifest()["pairs"][name]["dataset"])
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    assert not model.training
    x = dataset.split("test").inputs[:5]
    with torch.no_grad():
        out = model(x)
    want = (5, dataset.size) if dataset.task != "causal_lm" else (5, x.shape[1], dataset.size)
    assert tuple(out.shape) == want and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    modules = dict(model.named_modules())
    assert model.feature_layers and all(layer in modules for layer in model.feature_layers)
    if dataset.task == "causal_lm":
        assert model.cam_layer is None
        _check_attentions(model, x, out)
    else:
        assert any(isinstance(m, nn.Conv2d) for m in modules[model.cam_layer].modules())
        last_conv = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1]
        assert last_conv.startswith(model.cam_layer + ".")  # the cam layer holds the last convolution
    # a loaded model is a fresh object: loading twice gives equal but separate modules
    again = load_model(name, role)
    assert again is not model
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def _check_attentions(model, ids, logits):
    with torch.no_grad():
        out, atts = model.forward_with_attentions(ids)
    assert torch.equal(out, logits)
    assert len(atts) == model.cfg.n_layers
    L = ids.shape[1]
    for a in atts:
        assert tuple(a.shape) == (ids.shape[0], model.cfg.n_heads, L, L)
        assert torch.allclose(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5)
        assert (a.triu(diagonal=1) == 0).all()  # causal: nothing attends to the future
    # causality end to end: changing a later token leaves earlier logits unchanged
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % model.cfg.vocab_size
    with torch.no_grad():
        assert torch.allclose(model(changed)[:, :-1], logits[:, :-1], atol=1e-6)


def test_students_are_much_smaller_and_share_the_baselines_architecture():
    for name in PAIRS:
        models = manifest()["pairs"][name]["models"]
        assert models["student"]["architecture"] == models["student_baseline"]["architecture"]
        assert models["teacher"]["parameters"] >= 6 * models["student"]["parameters"], name


def test_tinylang_student_is_a_single_layer_and_the_teacher_has_several_heads_and_layers():
    t, s = load_model("tinylang", "teacher"), load_model("tinylang", "student")
    assert t.cfg.n_layers >= 2 and t.cfg.n_heads >= 2
    assert s.cfg.n_layers == 1


@pytest.mark.parametrize("name,role", CASES)
def test_manifest_metrics_reproduce_on_a_subset(name, role):
    model = load_model(name, role)
    dataset = get_dataset(manifest()["pairs"][name]["dataset"])
    want = manifest()["pairs"][name]["models"][role][f"test_first_{SUBSET}"]
    got = evaluate(model, dataset, SUBSET)
    assert set(got) == set(want)
    for k in want:
        if "accuracy" in k or "exact" in k or "f1" in k:
            assert abs(got[k] - want[k]) <= 1.5 / SUBSET, k  # at most one prediction may flip on a near-tie
        else:
            assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-5), k


def test_targets_on_the_test_split():
    pairs = manifest()["pairs"]
    assert pairs["digits"]["models"]["teacher"]["test"]["accuracy"] >= 0.97
    assert pairs["shapes"]["models"]["teacher"]["test"]["accuracy"] >= 0.95
    lm = {role: pairs["tinylang"]["models"][role]["test"] for role in ROLES}
    assert lm["teacher"]["excess_over_true"] <= 0.1  # within 0.1 nats/token of the true entropy
    assert lm["teacher"]["loss"] - lm["teacher"]["true_entropy"] == pytest.approx(
        lm["teacher"]["excess_over_true"], abs=0.05
    )
    for role in ("student", "student_baseline"):
        assert lm[role]["loss_copy"] > lm["teacher"]["loss_copy"] + 0.3, role  # a single layer copies badly
    # the shapes student is far from its teacher: a real capacity gap
    shapes = pairs["shapes"]["models"]
    assert shapes["student_baseline"]["test"]["accuracy"] < shapes["teacher"]["test"]["accuracy"] - 0.05


def test_load_pair_wraps_cached_adapters():
    from kdcore.pairs import Pair

    pair = load_pair("digits")
    assert isinstance(pair, Pair) and pair.name == "digits"
    assert load_pair("digits") is pair  # cached
    assert pair.dataset is get_dataset("digits")
    x = pair.dataset.split("test").inputs[:4]
    ref = load_model("digits", "teacher")
    with torch.no_grad():
        assert torch.allclose(pair.teacher.logits(x), ref(x))
    assert pair.student.num_parameters() < pair.teacher.num_parameters()
    assert pair.student_baseline is not None


def test_load_pair_rejects_unknown_names():
    with pytest.raises(ValueError, match="'name'.*'cifar'"):
        load_pair("cifar")
    with pytest.raises(ValueError, match="'role'.*'teacher2'"):
        load_model("digits", "teacher2")


def test_transformer_rejects_too_long_inputs():
    model = arch.TinyLangStudent()
    with pytest.raises(ValueError, match="'ids'.*at most 64.*65"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.slow
def test_training_reproduces_the_committed_digits_weights():
    env = {k: v for k, v in os.environ.items() if k != "KDWB_TRAIN_PINNED"}
    res = subprocess.run(
        [sys.executable, "-m", "sample_models.train", "--only", "digits", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count(" ok ") == 6  # teacher, student, baseline and the three ladder rungs


def test_the_sample_pairs_are_registered_in_kdcore():
    """`import sample_models` registers every pair (kdcore never imports sample_models)."""
    from kdcore.jobs import resolve_pair
    from kdcore.pairs import registered_pairs

    sample_models.register_pairs()  # again: idempotent
    entries = registered_pairs()
    assert set(PAIRS) <= set(entries)
    for name in PAIRS:
        assert entries[name].source == "sample_models" and entries[name].description
        assert entries[name].recipe is JOB_RECIPES[name]  # the job recipe: one source of truth
    assert resolve_pair("digits") is load_pair("digits")
    with pytest.raises(ValueError, match="Did you mean 'shapes'"):
        resolve_pair("shapez")


def test_pyproject_declares_the_sample_pairs_entry_point():
    import importlib
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["kdworkbench.pairs"]["sample_models"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is sample_models.register_pairs
