"""Micro-batch and data-parallel slice weights by the objective's unit (kdcore.jobs.step_weights): the
weights against plain numpy on random masks, the unit of each objective, and, on the tinylang causal LM
in float64 with rows of very different padding and -100 counts, one step's gradient and logged components
with grad_accum 1 = 3 = 7 and 2 simulated ranks (each rank's slice run by the job's own data-parallel
weighting, gradients summed as the all_reduce does) = 1 process, to 1e-10."""

from __future__ import annotations

import dataclasses
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kdcore.jobs.config import JobConfig
from kdcore.jobs.data_parallel import DataParallelJob, DistEnv
from kdcore.jobs.job import _Job
from kdcore.jobs.performance import split_batch
from kdcore.jobs.prepare import prepare_run
from kdcore.jobs.reporting import Reporter
from kdcore.jobs.resolve import resolve_pair
from kdcore.jobs.step_weights import objective_unit, unit_weights
from kdcore.pair import Pair

# ---- the weights function against numpy ------------------------------------------------------------------


def _numpy_weights(idx, parts, targets, mask, unit):
    t, m = targets.numpy().astype(np.int64), None if mask is None else mask.numpy()
    if unit == "samples":
        keep = np.ones((t.shape[0], 1), dtype=bool)
    else:
        keep = (t != -100) if unit == "tokens" else np.ones_like(t, dtype=bool)
        keep = keep if m is None else keep & (m != 0)
    total = float(keep[idx.numpy()].sum())
    return [float(keep[p.numpy()].sum()) / total for p in parts]


@pytest.mark.parametrize("unit", ["tokens", "positions", "samples"])
@pytest.mark.parametrize("with_mask", [True, False])
def test_unit_weights_match_numpy_on_random_masks(unit, with_mask):
    rng = np.random.default_rng(7)
    for _ in range(20):
        n, length = int(rng.integers(4, 30)), int(rng.integers(1, 12))
        targets = torch.from_numpy(rng.integers(0, 50, (n, length)))
        targets[torch.from_numpy(rng.random((n, length)) < rng.random())] = -100
        mask = torch.from_numpy((rng.random((n, length)) < 0.7).astype(np.int64)) if with_mask else None
        idx = torch.from_numpy(rng.permutation(n)[: int(rng.integers(2, n + 1))])
        cuts = np.sort(rng.choice(np.arange(1, len(idx)), size=min(2, len(idx) - 1), replace=False))
        parts = list(torch.tensor_split(idx, cuts.tolist()))
        try:
            want = _numpy_weights(idx, parts, targets, mask, unit)
        except ZeroDivisionError:
            with pytest.raises(ValueError, match="nothing to learn from"):
                unit_weights(idx, parts, targets, mask, unit)
            continue
        got = unit_weights(idx, parts, targets, mask, unit)
        assert got == pytest.approx(want, abs=1e-15) and sum(got) == pytest.approx(1.0, abs=1e-12)


def test_samples_are_the_old_shares_and_bad_input_is_refused():
    idx = torch.arange(10)
    targets = torch.zeros(10, dtype=torch.long)  # classification: [N] class ids
    parts = split_batch(idx, 3)
    assert unit_weights(idx, parts, targets, None, "samples") == [p.shape[0] / idx.shape[0] for p in parts]
    with pytest.raises(ValueError, match="token targets"):
        unit_weights(idx, parts, targets, None, "tokens")
    with pytest.raises(ValueError, match="must be one of"):
        unit_weights(idx, parts, targets, None, "rows")
    with pytest.raises(ValueError, match="shaped like the targets"):
        unit_weights(idx, parts, torch.zeros(10, 4, dtype=torch.long), torch.ones(10, 3), "tokens")


def _t(name, **params):
    return SimpleNamespace(name=name, params=params)


def test_each_objective_takes_the_unit_its_loss_averages_over():
    assert objective_unit("classification", [_t("kd")], 1.0) == "samples"
    assert objective_unit("causal_lm", [_t("token")], 0.0) == "tokens"
    assert objective_unit("causal_lm", [_t("ce")], 0.0) == "tokens"
    assert objective_unit("causal_lm", [_t("seqkd")], 0.0) == "tokens"
    assert objective_unit("causal_lm", [_t("hybrid", reduction="sequence")], 0.0) == "samples"
    assert objective_unit("causal_lm", [_t("hybrid_kd", reduction="token")], 0.0) == "tokens"
    assert objective_unit("causal_lm", [_t("attn_kl")], 0.0) == "positions"
    assert objective_unit("causal_lm", [_t("attn_kl")], 1.0) == "tokens"  # mixed: the token mean's unit
    assert objective_unit("causal_lm", [], 1.0) == "tokens"  # CE alone


# ---- one step of a causal LM in float64 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_job():
    """A tinylang job in float64 (its own model copies), with 7 rows of very different padding and -100 counts."""
    pair = resolve_pair("tinylang")
    own = Pair("tinylang", pair.teacher.clone(), pair.student.clone(), dataset=pair.dataset)
    sizes = dict(batch_size=7, train_size=14, val_size=4, epochs=1, checkpoints=0, probe_size=4, seed=3)
    cfg = JobConfig(pair="tinylang", objective="token", teacher_cache=False, lm_chunked=False, **sizes)
    prep = prepare_run(cfg, own)
    job = _Job(cfg, prep, Reporter(None, None, None, None, total_steps=prep.total_steps, epochs=1), resume=False)
    job.student.model.double().eval()  # no dropout: the micro-batches see the same network
    job.teacher.model.double()
    y, length = job.train_y.clone(), job.train_y.shape[1]
    mask = torch.ones_like(y)
    mask[0, 3:] = 0  # padding after 3 tokens
    mask[3, -3:] = 0
    mask[6, 5:] = 0
    y[mask == 0] = -100
    y[0, 2:] = -100
    y[2, : length - 2] = -100  # a long masked prompt: 2 positions kept
    y[3, : length // 2] = -100
    y[4, :] = -100  # nothing to predict: its micro-batch (grad_accum 7) adds nothing
    job.train_y, job.train_mask = y, mask
    job._optimise = lambda: 0.0  # keep the weights: every call takes the same step
    return job


def _step(job, idx, grad_accum):
    job.cfg = dataclasses.replace(job.cfg, grad_accum=grad_accum)
    values, _ = job._train_step(idx)
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in job.params]
    return values, grads


def _assert_same(a, b, tol=1e-10):
    (va, ga), (vb, gb) = a, b
    assert va.keys() == vb.keys()
    assert [va[k] for k in va] == pytest.approx([vb[k] for k in va], rel=1e-6)  # logged in float32 by the job
    assert all(g.dtype == torch.float64 for g in ga)
    assert max(float((x - y).abs().max()) for x, y in zip(ga, gb, strict=True)) < tol


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("ce_weight", [0.0, 1.0])
def test_grad_accum_gives_the_whole_batch_gradient_on_padded_prompt_masked_rows(
    lm_job, monkeypatch, chunked, ce_weight
):
    monkeypatch.setattr(lm_job, "chunked", chunked)
    monkeypatch.setattr(lm_job, "ce_weight", ce_weight)
    tol = 1e-10 if ce_weight == 0 or chunked else 1e-7  # label_loss's CE on full logits runs in float32
    idx = torch.arange(7)
    whole = _step(lm_job, idx, 1)
    assert whole[1][0].abs().max() > 1e-6  # a real gradient
    _assert_same(_step(lm_job, idx, 3), whole, tol)  # micro-batches of 3, 2, 2 rows
    _assert_same(_step(lm_job, idx, 7), whole, tol)  # one row each, row 4 without a kept position


def test_sample_weights_would_not_be_exact(lm_job, monkeypatch):
    import kdcore.jobs.job as job_module

    idx = torch.arange(7)
    whole = _step(lm_job, idx, 1)
    monkeypatch.setattr(job_module, "objective_unit", lambda task, terms, ce: "samples")
    with pytest.raises(AssertionError):
        _assert_same(_step(lm_job, idx, 3), whole, tol=1e-6)


@pytest.mark.parametrize("rows", [[0, 1, 2, 3, 4, 5, 6], [0, 1, 4]])  # [0, 1, 4]: rank 1's slice keeps nothing
def test_two_ranks_sum_to_one_process(lm_job, monkeypatch, rows):
    monkeypatch.setattr(lm_job, "ce_weight", 0.0)  # the CE runs in float32 (label_loss): 1e-10 needs float64
    idx = torch.tensor(rows)
    whole = _step(lm_job, idx, 1)
    monkeypatch.setattr(lm_job, "_own_rows", types.MethodType(DataParallelJob._own_rows, lm_job))
    ranks = []
    for rank in (0, 1):
        lm_job.env = DistEnv(rank, 2, rank)
        ranks.append(_step(lm_job, idx, 2))
    summed = (
        {k: ranks[0][0][k] + ranks[1][0][k] for k in ranks[0][0]},
        [a + b for a, b in zip(ranks[0][1], ranks[1][1], strict=True)],
    )
    _assert_same(summed, whole)


# ---- 2 gloo ranks against 1 process on padded text ---------------------------------------------------------

# documents of 2 to 40 words, one row each (mode "truncate", 16 tokens): rows of very different padding
PADDED = "\n\n".join(" ".join(f"w{i * 7 + j}" for j in range(1 + (i * 11) % 40)) for i in range(40))


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_on_padded_text(tmp_path):
    from kdcore.jobs import RunStore, run_job
    from tests.helpers.ddp_ranks import two_ranks
    from tests.helpers.hf_pairs import llama_pair_with_corpus

    teacher, student, data = llama_pair_with_corpus(tmp_path / "pair", PADDED)
    cfg = dict(teacher=str(teacher), student=str(student), data=str(data))
    cfg.update(data_options={"context_length": 16, "mode": "truncate"}, objective="token", lm_chunked=False)
    cfg.update(epochs=1, train_size=21, batch_size=7, val_size=4, checkpoints=0, optimizer="sgd", lr=0.5, seed=0)
    store = RunStore()
    one = run_job(JobConfig(**cfg), store=store)
    two = two_ranks(tmp_path, cfg)
    assert two["state"] == "completed" and two["metrics"]["steps"] == one.step == 3
    ours, theirs = store.metrics(two["run_id"], "step"), store.metrics(one.run_id, "step")
    # float32 rounding order only (~1e-7); slices weighted by samples were 3e-4 apart here
    np.testing.assert_allclose(ours["loss"].to_numpy(), theirs["loss"].to_numpy(), rtol=1e-6)
    assert two["metrics"]["final_val_loss"] == pytest.approx(one.metrics["final_val_loss"], rel=1e-6)


def test_attn_kl_alone_is_weighted_by_its_query_rows(lm_job, monkeypatch):
    terms = JobConfig(pair="tinylang", objective="attn_kl").resolved_terms()
    monkeypatch.setattr(lm_job, "terms", terms)
    monkeypatch.setattr(lm_job, "need_attn", True)
    monkeypatch.setattr(lm_job, "ce_weight", 0.0)
    idx = torch.arange(7)
    whole = _step(lm_job, idx, 1)
    assert any(k.startswith("attn_kl/") for k in whole[0])
    _assert_same(_step(lm_job, idx, 3), whole)  # "tokens" or "samples" weights are > 1e-6 off here
