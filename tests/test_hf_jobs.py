"""Distilling a user's own Hugging Face pair end to end (tiny tied-embedding Llama pair): student_init,
tied weights through the run store, export and resume, and the epoch-0 row (the student before training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kdcore.cli import export_run
from kdcore.jobs.config import JobConfig
from kdcore.jobs.pair_source import pair_for_config, student_for_run
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import RunStore
from kdcore.weights import tensors_for_safetensors
from tests.helpers.hf_pairs import llama_pair_with_corpus
from tests.helpers.runs import cancel_and_resume, llama_job

TEXT = "\n\n".join(f"a small corpus line {i}: the cat {i % 5} sat on mat {i * 3}." for i in range(80))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return llama_pair_with_corpus(tmp_path_factory.mktemp("hfjobs"), TEXT)


# two steps of token KD with a checkpoint (each test adds or overrides fields)
TOKEN = dict(
    data_options={"context_length": 16},
    objective="token",
    batch_size=8,
    val_size=16,
    probe_size=8,
    checkpoints=1,
    lr=1e-2,
)


def _cfg(llama, **kw) -> JobConfig:
    return llama_job(llama, **{**TOKEN, **kw})


def _tied(adapter) -> bool:
    return adapter.model.lm_head.weight is adapter.model.model.embed_tokens.weight


def _ce64(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean token cross-entropy in float64 numpy over positions whose target is not -100."""
    z = logits.double().numpy().reshape(-1, logits.shape[-1])
    y = targets.numpy().reshape(-1)
    keep = y != -100
    z, y = z[keep], y[keep]
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_safetensors_copies_tied_tensors_only():
    w = torch.randn(4, 3)
    out = tensors_for_safetensors({"a": w, "b": w, "c": torch.ones(2)})
    assert out["a"].data_ptr() != out["b"].data_ptr()
    np.testing.assert_array_equal(out["a"].numpy(), out["b"].numpy())
    assert out["a"].data_ptr() == w.data_ptr()  # the first name keeps the tensor itself (no copy)


@pytest.mark.parametrize("init", ["pretrained", "from_teacher", "reinit"])
def test_epoch_zero_row_is_the_student_before_training(llama, init, tmp_path):
    kw = {"student": "", "student_layers": 2} if init == "from_teacher" else {}
    cfg = _cfg(llama, student_init=init, **kw)
    store = RunStore(tmp_path / "home")
    result = run_job(cfg, store=store)
    assert result.state == "completed", result.error
    row0 = store.metrics(result.run_id, "epoch").set_index("epoch").loc[0]
    pair = pair_for_config(cfg)
    val = pair.dataset.split("val").subset(16)
    if init == "reinit":  # the seeded re-initialised clone the runner trained from
        torch.manual_seed(cfg.seed)
        start = pair.student.clone(reinit=True, seed=cfg.seed)
    else:  # the student's own weights, or the teacher's layer subset
        start = pair.student
    with torch.no_grad():
        logits = start.logits(val.inputs)
        t_logits = pair.teacher.logits(val.inputs)
    assert row0["val_loss"] == pytest.approx(_ce64(logits, val.targets), rel=1e-5)
    agree = (logits.argmax(-1) == t_logits.argmax(-1)).double().mean().item()  # every position (metrics.agreement)
    assert row0["val_agreement"] == pytest.approx(agree, abs=1e-9)
    assert row0["teacher_val_loss"] == pytest.approx(_ce64(t_logits, val.targets), rel=1e-5)
    assert store.get_run(result.run_id)["pair"].startswith("hf:llama_teacher→")


def test_tied_student_saves_reloads_and_exports_still_tied(llama, tmp_path):
    cfg = _cfg(llama, student_init="pretrained")
    store = RunStore(tmp_path / "home")
    result = run_job(cfg, store=store)
    assert result.state == "completed", result.error
    run = store.get_run(result.run_id)
    state = store.load_student(result.run_id)
    np.testing.assert_array_equal(state["lm_head.weight"].numpy(), state["model.embed_tokens.weight"].numpy())
    original = pair_for_config(cfg).student.model.state_dict()
    assert not torch.equal(state["model.embed_tokens.weight"], original["model.embed_tokens.weight"])  # trained
    student = student_for_run(run["config"], state)
    assert _tied(student)
    for k, v in student.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k].numpy())
    for epoch in store.checkpoints(result.run_id):
        assert _tied(student_for_run(run["config"], store.load_student(result.run_id, epoch=epoch)))
    files = export_run(store, result.run_id, tmp_path / "export")
    exported = load_file(str(next(f for f in files if f.name == "student.safetensors")))
    again = student_for_run(run["config"], exported)
    assert _tied(again)
    np.testing.assert_array_equal(again.model.lm_head.weight.detach().numpy(), state["lm_head.weight"].numpy())


def test_tied_student_resumes_where_it_stopped(llama, tmp_path, monkeypatch):
    cfg = _cfg(llama, student_init="pretrained", max_steps=None, epochs=2, train_size=48, batch_size=24, checkpoints=2)
    store = RunStore(tmp_path / "home")
    full, part, resumed = cancel_and_resume(cfg, store, monkeypatch, epoch=2, steps=1)
    assert resumed.state == "completed" and resumed.step == full.step and not resumed.notices
    a, b = store.load_student(full.run_id), store.load_student(part.run_id)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-5, atol=1e-6)
    assert _tied(student_for_run(store.get_run(part.run_id)["config"], b))
