"""methods/13 §13.3 in the runner: CTKD's learned temperature (gradient sign in a real run step),
the teacher-difficulty curriculum (order, pool sizes, batches drawn only from the pool), DKD's warm-up
and the loss schedules, each end to end on digits; bad input refused before anything runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.config import ConfigError
from kdcore.jobs.job import _Job
from kdcore.jobs.prepare import prepare_run
from kdcore.jobs.reporting import Reporter
from kdcore.jobs.resolve import resolve_pair
from kdcore.losses import ctkd_step
from kdcore.methods.curricula import CTKD_KEY

TINY = {"train_size": 96, "val_size": 32, "batch_size": 32, "checkpoints": 0}


@pytest.fixture(scope="module")
def digits():
    return resolve_pair("digits")


def _job(cfg: JobConfig, pair) -> _Job:
    prep = prepare_run(cfg, pair)
    return _Job(
        cfg, prep, Reporter(None, None, None, None, total_steps=prep.total_steps, epochs=cfg.epochs), resume=False
    )


def _steps(events: list[dict]) -> list[dict]:
    return [ev["metrics"] for ev in events if ev["event"] == "step"]


# ---- CTKD ------------------------------------------------------------------------------------------------


def test_ctkd_step_moves_the_temperature_up_the_loss_and_the_student_down(digits):
    cfg = JobConfig(
        pair="digits", objective="ctkd", optimizer="sgd", momentum=0.0, lr=0.5, epochs=1, params={"loops": 1}, **TINY
    )
    job = _job(cfg, digits)
    job.epoch = 1  # λ_1 = 1 with loops = 1
    module = job.projectors[CTKD_KEY]
    idx = torch.arange(32)
    x, y = job.train_x[idx], job.train_y[idx]
    with torch.no_grad():
        t_logits = job.teacher.model(x)
    s0 = {k: v.clone() for k, v in job.student.model.state_dict().items()}
    theta0 = float(module.theta.detach())

    def loss(theta: float, state: dict) -> tuple[float, float]:
        job.student.model.load_state_dict(state)
        with torch.no_grad():
            out = ctkd_step(job.student.model(x).double(), t_logits.double(), y, theta, 1, loops=1)
        return float(out["loss"].detach()), float(out["dloss_dtheta"])

    l00, g0 = loss(theta0, s0)
    job.student.model.load_state_dict(s0)
    _, extras = job._train_step(idx)
    s1, theta1 = {k: v.clone() for k, v in job.student.model.state_dict().items()}, float(module.theta.detach())
    assert theta1 - theta0 == pytest.approx(0.5 * 1.0 * g0, rel=1e-4)  # θ ← θ + lr·λ·∂L/∂θ (reversed)
    assert loss(theta1, s0)[0] > l00  # the temperature's step increases the loss
    assert loss(theta0, s1)[0] < l00  # the student's step decreases it
    assert extras["sched_temperature"] == pytest.approx(1 + 20 / (1 + math.exp(-theta0)), rel=1e-6)
    assert extras["sched_ctkd_lambda"] == 1.0


@pytest.mark.parametrize("decay", [True, False])
def test_ctkd_theta_gets_the_weight_decay_only_when_asked(digits, decay):
    params = {"loops": 1, "temp_weight_decay": decay}
    cfg = JobConfig(
        pair="digits",
        objective="ctkd",
        optimizer="sgd",
        momentum=0.0,
        lr=0.5,
        weight_decay=0.2,
        epochs=1,
        params=params,
        **TINY,
    )
    job = _job(cfg, digits)
    job.epoch = 1
    idx = torch.arange(32)
    x, y = job.train_x[idx], job.train_y[idx]
    theta0 = float(job.projectors[CTKD_KEY].theta.detach())
    with torch.no_grad():
        g = float(ctkd_step(job.student.model(x), job.teacher.model(x), y, theta0, 1, loops=1)["dloss_dtheta"])
    job._train_step(idx)
    wd = 0.2 if decay else 0.0
    expected = theta0 - 0.5 * (-1.0 * g + wd * theta0)  # SGD through the reversal (λ = 1), plus weight decay
    assert float(job.projectors[CTKD_KEY].theta.detach()) == pytest.approx(expected, rel=1e-4)


def test_ctkd_logs_the_learned_temperature_every_step_and_its_lambda_per_epoch(digits):
    events: list[dict] = []
    cfg = JobConfig(pair="digits", objective="ctkd", epochs=2, **TINY)
    result = run_job(cfg, pair=digits, use_store=False, callback=events.append)
    steps = _steps(events)
    assert result.state == "completed" and len(steps) == 6
    temps = [s["sched_temperature"] for s in steps]
    assert temps[0] == pytest.approx(1 + 20 / (1 + math.exp(-1.0)), rel=1e-6)  # θ = 1 at the start
    assert len(set(temps)) == 6 and all(1 < t < 21 for t in temps)  # learned: it moves at every step
    lam = [0.5 * (1 - math.cos(math.pi * e / 10)) for e in (1, 1, 1, 2, 2, 2)]
    assert [s["sched_ctkd_lambda"] for s in steps] == pytest.approx(lam, abs=1e-12)


# ---- curriculum --------------------------------------------------------------------------------------------


def _numpy_order(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """§13.3b: d = −log softmax(z)[y] in float64, stable ascending, then class-balanced by rank."""
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    order = np.argsort(-logp[np.arange(len(labels)), labels], kind="stable")
    ranks, seen = [], {}
    for c in labels[order]:
        ranks.append(seen.get(c, 0))
        seen[c] = ranks[-1] + 1
    return order[np.argsort(np.array(ranks), kind="stable")]


def test_curriculum_draws_every_batch_from_the_paced_pool(digits, monkeypatch):
    drawn: list[tuple[int, int, list[int]]] = []
    pools: list = []
    original = _Job._train_step

    def spy(self, idx):
        pools.append(self.pool)
        drawn.append((self.step, self.epoch, idx.tolist()))
        return original(self, idx)

    monkeypatch.setattr(_Job, "_train_step", spy)
    params = {"start": 0.1, "inc": 2.0, "step": 2}
    cfg = JobConfig(pair="digits", objective="curriculum", epochs=3, params=params, **{**TINY, "batch_size": 16})
    events: list[dict] = []
    assert run_job(cfg, pair=digits, use_store=False, callback=events.append).state == "completed"
    prep = prepare_run(cfg, digits)
    x, y = prep.train.inputs, prep.train.targets
    with torch.no_grad():
        t_logits = digits.teacher.model(x).numpy()
    order = _numpy_order(t_logits, y.numpy())
    np.testing.assert_array_equal(pools[0].order.numpy(), order)
    n, logged = len(order), [s["sched_pool"] for s in _steps(events)]
    sizes = {}
    for (t, epoch, idx), size_logged in zip(drawn, logged):
        size = min(n, math.ceil(n * min(0.1 * 2.0 ** (t // 2), 1.0)))  # ⌈N·g(t)⌉
        assert size_logged == size and len(idx) == min(16, size) and len(set(idx)) == len(idx)
        assert set(idx) <= set(order[:size].tolist())  # only from the pool
        sizes.setdefault(epoch, []).append(size)
    assert sizes == {1: [10, 10, 20, 20, 39, 39], 2: [77, 77, 96, 96, 96, 96], 3: [96] * 6}


def test_curriculum_controls_reverse_or_shuffle_the_order(digits):
    from kdcore.jobs.curriculum_pool import PacedPool

    g = torch.Generator().manual_seed(3)
    logits, labels = torch.randn(40, 4, generator=g), torch.randint(0, 4, (40,), generator=g)
    base = {"start": 0.5, "inc": 2.0, "step": 1, "balance": False}
    easy = PacedPool.build(logits, labels, {**base, "order": "easy"}, seed=0).order
    anti = PacedPool.build(logits, labels, {**base, "order": "anti"}, seed=0).order
    rand = PacedPool.build(logits, labels, {**base, "order": "random"}, seed=0).order
    difficulty = -torch.log_softmax(logits.double(), -1)[torch.arange(40), labels]
    assert bool((difficulty[easy].diff() >= 0).all()) and torch.equal(anti, easy.flip(0))
    assert sorted(rand.tolist()) == list(range(40)) and not torch.equal(rand, easy)


# ---- warm-up and schedules end to end ------------------------------------------------------------------


def test_dkd_warmup_weighs_the_dkd_term_not_the_ce(digits):
    from kdcore.jobs.objectives import compute_loss
    from kdcore.methods import StepTensors

    cfg = JobConfig(pair="digits", objective="dkd", params={"warmup": 4}).validate()
    plain = JobConfig(pair="digits", objective="dkd").validate()
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g), torch.randint(0, 10, (8,), generator=g)
    for epoch in (1, 2, 4, 9):
        b = StepTensors("classification", s, t, y, epoch=epoch)
        total, comps = compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), b)
        ref_total, ref = compute_loss(plain.resolved_terms(), plain.resolved_ce_weight(), b)
        w = min(epoch / 4, 1.0)
        kd = float(ref_total - ref["ce"])
        assert float(total) == pytest.approx(float(ref["ce"]) + w * kd, rel=1e-6)


def test_every_method_and_schedule_runs_end_to_end_and_logs_to_the_store(digits, data_dir):
    store = RunStore()
    jobs = [
        JobConfig(pair="digits", objective="ctkd", epochs=1, **TINY),
        JobConfig(pair="digits", objective="curriculum", epochs=1, params={"step": 1}, **TINY),
        JobConfig(
            pair="digits",
            objective="dkd",
            epochs=2,
            params={"warmup": 2},
            schedules={
                "temperature": {"kind": "cosine", "start": 8.0, "end": 2.0},
                "weight:dkd": {"kind": "warmup", "start": 0.0, "end": 1.0, "length": 2, "unit": "epoch"},
            },
            **TINY,
        ),
    ]
    for cfg in jobs:
        result = run_job(cfg, pair=digits, store=store)
        assert result.state == "completed", result.error
        steps = store.metrics(result.run_id, "step")
        assert len(steps) == 3 * cfg.epochs and np.isfinite(steps["loss"]).all()
    temps = steps["sched_temperature"].to_numpy()
    np.testing.assert_allclose(temps, 2 + 3 * (1 + np.cos(np.pi * np.arange(6) / 5)), rtol=1e-6)
    np.testing.assert_allclose(steps["sched_weight:dkd"], [0.5] * 3 + [1.0] * 3)
    assert JobConfig.from_dict(store.get_run(result.run_id)["config"]).schedules == jobs[-1].schedules


# ---- bad input ------------------------------------------------------------------------------------------


def test_bad_input_is_refused_before_anything_runs(data_dir):
    store = RunStore()
    bad = [
        (JobConfig(pair="digits", schedules={"temperature": {"kind": "wobble"}}), ConfigError, "kind must be one of"),
        (JobConfig(pair="digits", schedules={"lam": {"start": 2.0}}), ConfigError, r"in \[0, 1\]; got 2.0"),
        (JobConfig(pair="shapes_multilabel", objective="curriculum"), ValueError, "a multi-label pair has several"),
        (JobConfig(pair="tinylang", objective="curriculum"), ValueError, "a language-model pair has none"),
    ]
    for cfg, error, message in bad:
        with pytest.raises(error, match=message):
            run_job(cfg, store=store)
    assert len(store.list_runs()) == 0
