"""On-policy runs end to end (methods/15 §15.3–15.5): gkd, minillm and distillm on the tinylang pair
(and gkd on a tiny Hugging Face Llama pair), the per-step sources, determinism, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kdcore.jobs.config import JobConfig
from kdcore.jobs.onpolicy_job import MixtureSampler, generation_problems
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import RunStore
from tests.helpers.runs import cancel_and_resume, llama_job

FAST = dict(
    pair="tinylang",
    max_steps=4,
    epochs=1,
    batch_size=4,
    train_size=16,
    val_size=8,
    probe_size=4,
    checkpoints=0,
    lr=1e-3,
)
SMALL = dict(prompt_tokens=8, max_new_tokens=6)


def _run(objective: str, params: dict, **kw):
    store = RunStore()
    r = run_job(JobConfig(objective=objective, params={**SMALL, **params}, **{**FAST, **kw}), store=store)
    assert r.state == "completed", r.error
    return r, store.metrics(r.run_id, "step"), store.metrics(r.run_id, "epoch")


@pytest.mark.parametrize(
    "objective, params, share",
    [
        ("gkd", dict(lmbda=1.0, divergence="jsd"), 1.0),
        ("gkd", dict(lmbda=0.0, divergence="fkl"), 0.0),
        ("minillm", dict(mix_alpha=0.2), 1.0),
        ("distillm", dict(init_phi=1.0, capacity=4), None),
    ],
)
def test_each_method_trains_and_logs_its_sources(data_dir, objective, params, share):
    r, steps, epochs = _run(objective, params)
    assert len(steps) == 4 and np.isfinite(steps["loss"]).all()
    assert epochs["val_loss"].notna().all()
    if objective == "distillm":  # φ = 1: generate until the buffer (one batch) is full, then generate or replay
        st = steps.sort_values("step").fillna(0)
        assert st["source_generate"].iloc[0] == 1.0
        assert (st["source_generate"] + st.get("source_replay", 0)).tolist() == [1.0] * 4
        share = st["source_generate"].mean()  # replayed batches are off-policy: older students sampled them
        assert "distillm_phi" in epochs
    assert steps["onpolicy_share"].iloc[-1] == pytest.approx(share)
    assert r.metrics["onpolicy_share"] == pytest.approx(share)


def test_gkd_share_follows_the_seeded_branch_draws(data_dir):
    _, steps, _ = _run("gkd", dict(lmbda=0.5), max_steps=8, train_size=32)
    u = np.random.default_rng(0).random(8)  # the job's Generator(seed) draws, one per step
    np.testing.assert_array_equal(steps.sort_values("step")["onpolicy"].to_numpy(), (u < 0.5).astype(float))


def test_distillm_with_a_falling_loss_is_supervised_skew_kd(data_dir):
    _, steps, epochs = _run("distillm", dict(init_phi=0.0), max_steps=4)
    assert steps["source_data"].sum() == 4 and steps["onpolicy_share"].iloc[-1] == 0.0


def test_a_fixed_seed_reproduces_the_run(data_dir):
    a = _run("gkd", dict(lmbda=0.5), max_steps=3)[1]
    b = _run("gkd", dict(lmbda=0.5), max_steps=3)[1]
    cols = ["step", "loss", "onpolicy"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


def test_refusals_name_the_problem(data_dir):
    base = dict(student_vocab=38, teacher_vocab=38, context=64, seq_len=64)
    p = generation_problems("gkd", dict(prompt_tokens=8, max_new_tokens=4), **{**base, "teacher_vocab": 40})
    assert len(p) == 1 and "'uld'" in p[0]
    p = generation_problems("gkd", dict(prompt_tokens=70, max_new_tokens=4), **base)
    assert any("prompt alone is longer than the model's context of 64" in x for x in p)
    p = generation_problems("gkd", dict(prompt_tokens=8, max_new_tokens=0), **base)
    assert p == ["params.max_new_tokens must be an integer ≥ 1; got 0"]
    with pytest.raises(ValueError, match="context of 64"):
        run_job(JobConfig(objective="gkd", params=dict(prompt_tokens=40, max_new_tokens=30), **FAST), use_store=False)
    with pytest.raises(ValueError, match="capacity"):
        run_job(JobConfig(objective="distillm", params=dict(capacity=2), **FAST), use_store=False)
    with pytest.raises(ValueError, match="run alone"):
        terms = [dict(name="gkd", weight=1.0), dict(name="token", weight=1.0)]
        run_job(JobConfig(objective="sum", terms=terms, **FAST), use_store=False)
    from kdcore.jobs.config import ConfigError

    with pytest.raises(ConfigError, match="lmbda"):
        run_job(JobConfig(objective="gkd", params=dict(lmbda=1.5), **FAST), use_store=False)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        run_job(JobConfig(objective="minillm", params=dict(max_new_tokens=0), **FAST), use_store=False)


def test_mixture_sampler_is_the_log_of_the_mixed_distribution():
    torch.manual_seed(0)
    s, t = torch.nn.Linear(3, 5), torch.nn.Linear(3, 5)
    x = torch.randn(2, 4, 3)
    got = MixtureSampler(s, t, 0.3, 0.7, None)(x).exp()
    want = 0.3 * torch.softmax(t(x) / 0.7, -1) + 0.7 * torch.softmax(s(x) / 0.7, -1)
    torch.testing.assert_close(got, want)


TEXT = "\n\n".join(f"a small corpus line {i}: the cat {i % 5} sat on mat {i * 3}." for i in range(40))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from tests.helpers.hf_pairs import llama_pair_with_corpus

    return llama_pair_with_corpus(tmp_path_factory.mktemp("onpolicy_hf"), TEXT)


def _llama_job(teacher, student, data, objective: str, params: dict, **kw) -> JobConfig:
    """A two-step on-policy job on the tiny Llama pair."""
    tiny = dict(batch_size=4, val_size=8, probe_size=4, checkpoints=0)
    return llama_job((teacher, student, data), objective=objective, params=params, **tiny, **kw)


@pytest.mark.parametrize("objective, params", [("gkd", dict(lmbda=1.0)), ("minillm", dict(mix_alpha=0.5))])
def test_on_a_hugging_face_llama_pair(data_dir, llama, objective, params):
    teacher, student, data = llama
    params = dict(prompt_tokens=8, max_new_tokens=8, **params)
    cfg = _llama_job(teacher, student, data, objective, params, data_options={"context_length": 16})
    r = run_job(cfg, use_store=False)
    assert r.state == "completed", r.error
    assert r.metrics["onpolicy_share"] == 1.0 and r.metrics["steps_student"] == 2


def test_the_cached_mixture_equals_the_recomputed_one(data_dir):
    from kdcore.generation import generate
    from kdcore.jobs.onpolicy_job import CachedMixtureSampler, mixture_sampler
    from kdcore.jobs.resolve import resolve_pair

    pair = resolve_pair("tinylang")
    s, t = pair.student.model, pair.teacher.model
    cached = mixture_sampler(s, t, 0.4, 1.0, 64)
    assert isinstance(cached, CachedMixtureSampler)
    plain = MixtureSampler(s, t, 0.4, 1.0, 64)
    prompts = pair.dataset.split("val").inputs[:3, :8]
    a = generate(cached, prompts, max_new_tokens=6, do_sample=True, seed=5).sequences
    b = generate(plain, prompts, max_new_tokens=6, do_sample=True, seed=5).sequences
    assert torch.equal(a, b)


def test_a_pair_recipe_never_turns_on_the_teacher_cache_for_on_policy_runs():
    from kdcore.jobs.recipes import pair_recipe

    recipe = pair_recipe("tinylang")
    assert recipe is not None and recipe.teacher_cache
    assert "teacher_cache" in recipe.fills("token", set())
    assert all("teacher_cache" not in recipe.fills(m, set()) for m in ("gkd", "minillm", "distillm"))


@pytest.mark.parametrize("objective, params", [("gkd", dict(lmbda=0.5)), ("distillm", dict(init_phi=1.0, capacity=4))])
def test_a_cancelled_run_resumes_exactly(data_dir, monkeypatch, objective, params):
    cfg = JobConfig(
        objective=objective, params={**SMALL, **params}, **{**FAST, "max_steps": None, "epochs": 3, "train_size": 8}
    )
    store = RunStore()
    full, part, resumed = cancel_and_resume(cfg, store, monkeypatch, epoch=2, steps=1)
    assert resumed.state == "completed" and not resumed.notices
    cols = ["step", "loss", "onpolicy", "onpolicy_share"]
    a = store.metrics(full.run_id, "step").sort_values("step")[cols].reset_index(drop=True)
    b = store.metrics(part.run_id, "step").sort_values("step")[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    assert resumed.metrics["onpolicy_share"] == full.metrics["onpolicy_share"]


def test_gkd_seq_kd_trains_on_the_teachers_samples(data_dir):
    r, steps, _ = _run("gkd", dict(lmbda=0.0, seq_kd=True), max_steps=2)
    assert steps["source_teacher"].tolist() == [1.0, 1.0] and r.metrics["onpolicy_share"] == 0.0


def test_gkd_lambda0_step_is_supervised_fkl_on_the_data_window(data_dir):
    from kdcore.jobs.resolve import resolve_pair

    _, steps, _ = _run("gkd", dict(lmbda=0.0, divergence="fkl"), max_steps=1, train_size=8, batch_size=8)
    pair = resolve_pair("tinylang")
    P, N = SMALL["prompt_tokens"], SMALL["max_new_tokens"]
    x = pair.dataset.split("train").inputs[:8, : P + N]  # the whole training subset is the one batch
    student = pair.student.clone(reinit=True, seed=0)  # the job's student before its first update
    with torch.no_grad():
        zs, zt = student.logits(x).double().numpy(), pair.teacher.logits(x).double().numpy()
    zs, zt = zs[:, P - 1 : P + N - 1], zt[:, P - 1 : P + N - 1]  # positions predicting the completion

    def logsm(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    want = (np.exp(logsm(zt)) * (logsm(zt) - logsm(zs))).sum(-1).mean()
    assert steps["loss"].iloc[0] == pytest.approx(want, rel=1e-4)


# a Hugging Face run on a prompt/completion file (the module fixture builds the pair)
def test_gkd_on_a_prompt_completion_file_takes_its_records(data_dir, llama, tmp_path):
    import json

    teacher, student, _ = llama
    data = tmp_path / "qa.jsonl"
    rows = [{"prompt": f"question {i}: the cat", "completion": f" sat on mat {i}"} for i in range(30)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = _llama_job(teacher, student, data, "gkd", dict(lmbda=0.5, max_new_tokens=6))  # prompts=auto: records
    store = RunStore()
    r = run_job(cfg, store=store)
    assert r.state == "completed", r.error
    assert store.get_run(r.run_id)["config"]["data"] == str(data)
    ep = store.metrics(r.run_id, "epoch")
    assert "heldout_em" in ep and "teacher_heldout_em" in ep  # the file's test split, greedy exact match
    assert sum(r.metrics.get(f"steps_{k}", 0) for k in ("student", "data")) == 2
