"""GKD, MiniLLM and DistiLLM (methods/15 §15.3–15.5) against float64 numpy references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from kdcore.divergences import divergence_loss
from kdcore.losses import gkd_loss, minillm_loss
from kdcore.onpolicy import DistiLLMSchedule, GKDConfig, MiniLLMConfig, ReplayBuffer, gkd_step_source
from kdcore.validation import InvalidParameterError


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_div(zs: np.ndarray, zt: np.ndarray, kind: str, beta: float = 0.5, T: float = 1.0) -> np.ndarray:
    q, p = _softmax(zs / T), _softmax(zt / T)
    kl = lambda a, b: (a * (np.log(a) - np.log(b))).sum(-1)  # noqa: E731
    if kind == "fkl":
        return kl(p, q)
    if kind == "rkl":
        return kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


def _batch(seed: int = 0, b: int = 3, length: int = 7, v: int = 6, prompts=(2, 3, 1), ends=(7, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, length, v, generator=g, dtype=torch.float64)
    t = torch.randn(b, length, v, generator=g, dtype=torch.float64) * 2
    ids = torch.randint(0, v, (b, length), generator=g)
    labels = ids.clone()
    for i, (p, e) in enumerate(zip(prompts, ends)):
        labels[i, :p] = -100
        labels[i, e:] = -100
    return s, t, ids, labels


def _np_keep(labels: torch.Tensor) -> np.ndarray:
    return (labels[:, 1:] != -100).numpy()


@pytest.mark.parametrize("kind,beta", [("fkl", 0.5), ("rkl", 0.5), ("jsd", 0.5), ("jsd", 0.9)])
@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_gkd_loss_matches_numpy(kind: str, beta: float, reduction: str) -> None:
    s, t, _, labels = _batch(1)
    T = 1.7
    per = _np_div(s[:, :-1].numpy(), t[:, :-1].numpy(), kind, beta, T)
    keep = _np_keep(labels)
    if reduction == "token":
        want = per[keep].mean()
    else:
        want = np.mean([per[i][keep[i]].mean() for i in range(len(per))])
    got = gkd_loss(s, t, labels, divergence=kind, beta=beta, temperature=T, reduction=reduction)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_gkd_reductions_agree_only_for_equal_lengths() -> None:
    s, t, _, labels = _batch(2)
    a, b = (gkd_loss(s, t, labels, reduction=r).item() for r in ("token", "sequence"))
    assert abs(a - b) > 1e-6
    s, t, _, labels = _batch(2, prompts=(2, 2, 2), ends=(6, 6, 6))
    a, b = (gkd_loss(s, t, labels, reduction=r).item() for r in ("token", "sequence"))
    assert a == pytest.approx(b, rel=1e-12)


def test_gkd_lambda0_fkl_is_supervised_token_kd_and_masked_logits_change_nothing() -> None:
    s, t, _, labels = _batch(3)
    want = divergence_loss(s[:, :-1], t[:, :-1], "fkl", labels=labels[:, 1:])
    assert gkd_loss(s, t, labels, divergence="fkl").item() == pytest.approx(want.item(), rel=1e-12)
    s2 = s.clone()
    s2[0, 0] = float("nan")  # column 0 of row 0 is prompt: never a kept shifted position
    s2[:, -1] = 1e6  # the last position predicts nothing
    assert gkd_loss(s2, t, labels, divergence="fkl").item() == pytest.approx(want.item(), rel=1e-12)


def test_gkd_jsd_limits_and_bounds() -> None:
    s, t, _, labels = _batch(4)
    fkl, rkl = (gkd_loss(s, t, labels, divergence=k).item() for k in ("fkl", "rkl"))
    lo = gkd_loss(s, t, labels, divergence="jsd", beta=1e-8).item() / 1e-8
    hi = gkd_loss(s, t, labels, divergence="jsd", beta=1 - 1e-6).item() / 1e-6
    assert lo == pytest.approx(fkl, rel=1e-4)
    assert hi == pytest.approx(rkl, rel=1e-3)
    assert 0.0 <= gkd_loss(s, t, labels).item() <= math.log(2)


def test_gkd_refusals() -> None:
    s, t, _, labels = _batch(5)
    with pytest.raises(InvalidParameterError, match="fkl"):
        gkd_loss(s, t, labels, divergence="jsd", beta=0.0)
    with pytest.raises(InvalidParameterError, match="divergence"):
        gkd_loss(s, t, labels, divergence="tvd")
    with pytest.raises(InvalidParameterError, match="keep no position"):
        gkd_loss(s, t, torch.full_like(labels, -100))
    with pytest.raises(InvalidParameterError, match="vocabulary"):
        gkd_loss(s, t[..., :-1], labels)
    for bad in (dict(lmbda=1.5), dict(beta=1.0), dict(max_new_tokens=0), dict(top_p=0.0), dict(top_k=-1)):
        with pytest.raises(InvalidParameterError):
            GKDConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="mix_alpha"):
        MiniLLMConfig(mix_alpha=1.0)


def test_gkd_step_source_fraction() -> None:
    rng = np.random.default_rng(0)
    u = rng.random(4000)
    assert {gkd_step_source(x, 0.0) for x in u} == {"data"}
    assert {gkd_step_source(x, 1.0) for x in u} == {"student"}
    assert {gkd_step_source(x, 0.0, seq_kd=True) for x in u} == {"teacher"}
    share = np.mean([gkd_step_source(x, 0.3) == "student" for x in u])
    assert abs(share - 0.3) < 0.03


# ---- MiniLLM -----------------------------------------------------------------------------------------


def _np_minillm(s, t, ids, labels, logq0, alpha, length_norm=True):
    """float64 loops over rows and positions, straight from the formula."""
    q, p = _softmax(s[:, :-1]), _softmax(t[:, :-1])
    keep = _np_keep(labels)
    y = ids[:, 1:]
    n = keep.sum()
    total = 0.0
    for i in range(len(ids)):
        kept = np.flatnonzero(keep[i])
        r = {j: np.log(p[i, j, y[i, j]]) - logq0[i, j] for j in kept}
        for j in kept:
            after = [r[k] for k in kept if k > j]
            rbar = (np.mean(after) if length_norm else np.sum(after)) if after else 0.0
            q0 = np.exp(logq0[i, j])
            w = q0 / (alpha * p[i, j, y[i, j]] + (1 - alpha) * q0)
            kl = (q[i, j] * (np.log(q[i, j]) - np.log(p[i, j]))).sum()
            total += w * (kl - rbar * np.log(q[i, j, y[i, j]]))
    return total / n


@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("length_norm", [True, False])
def test_minillm_value_matches_numpy(alpha: float, length_norm: bool) -> None:
    s, t, ids, labels = _batch(6)
    g = torch.Generator().manual_seed(9)
    logq0 = torch.log_softmax(torch.randn(s.shape, generator=g, dtype=torch.float64), -1)
    taken = logq0.gather(-1, ids[..., None])[..., 0]  # [B, L] column j: log q°(ids[j])
    sample = taken  # log q° of the token at column j
    out = minillm_loss(s, t, ids, labels, sample_logprobs=sample, mix_alpha=alpha, length_norm=length_norm)
    want = _np_minillm(s.numpy(), t.numpy(), ids.numpy(), labels, sample[:, 1:].numpy(), alpha, length_norm)
    assert out["loss"].item() == pytest.approx(want, rel=1e-10)
    assert (out["single_step"] + out["long"]).item() == pytest.approx(out["loss"].item(), rel=1e-12)
    if alpha == 0.0:
        assert torch.equal(out["w"][_np_keep(labels)], torch.ones(int(_np_keep(labels).sum()), dtype=s.dtype))


def test_minillm_gradient_is_the_per_position_formula_and_zero_at_masked_positions() -> None:
    s, t, ids, labels = _batch(7)
    s.requires_grad_(True)
    out = minillm_loss(s, t, ids, labels, mix_alpha=0.2)
    (grad,) = torch.autograd.grad(out["loss"], s)
    keep = _np_keep(labels)
    n = keep.sum()
    q, p = _softmax(s.detach()[:, :-1].numpy()), _softmax(t[:, :-1].numpy())
    want = np.zeros(s.shape)
    for i, j in zip(*np.nonzero(keep)):
        kl = (q[i, j] * (np.log(q[i, j]) - np.log(p[i, j]))).sum()
        e = np.eye(s.shape[-1])[ids[i, j + 1]]
        w, rbar = out["w"][i, j].item(), out["rnorm"][i, j].item()
        want[i, j] = w * (q[i, j] * (np.log(q[i, j]) - np.log(p[i, j]) - kl) - rbar * (e - q[i, j])) / n
    np.testing.assert_allclose(grad.numpy(), want, atol=1e-12)


def test_minillm_one_kept_position_is_token_rkl() -> None:
    s, t, ids, labels = _batch(8, prompts=(5, 4, 6), ends=(6, 5, 7))
    out = minillm_loss(s, t, ids, labels, mix_alpha=0.0)
    want = gkd_loss(s, t, labels, divergence="rkl")
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-12)
    assert out["long"].item() == 0.0


def test_minillm_refusals() -> None:
    s, t, ids, labels = _batch(9)
    with pytest.raises(InvalidParameterError, match="mix_alpha"):
        minillm_loss(s, t, ids, labels, mix_alpha=1.0)
    with pytest.raises(InvalidParameterError, match="tokens"):
        minillm_loss(s, t, ids[:, :-1], labels)
    with pytest.raises(InvalidParameterError, match="range"):
        minillm_loss(s, t, ids + 100, labels)
    with pytest.raises(InvalidParameterError, match="finite"):
        minillm_loss(s, t, ids, labels, sample_logprobs=torch.full(ids.shape, float("nan"), dtype=s.dtype))


# ---- the enumerable toy: V = 3, three generated tokens ------------------------------------------------
V, STEPS, BOS = 3, 3, 3  # token ids 0..2; BOS (id 3) is the one-token prompt


def _toy_logits(theta: torch.Tensor, seq: tuple[int, ...]) -> torch.Tensor:
    """Student logits [1, STEPS + 1, V] on [BOS, y1, y2, y3]: position j reads theta[j, previous token]."""
    prev = (BOS, *seq[:-1])
    rows = [theta[j, prev[j]] for j in range(STEPS)]
    return torch.stack([*rows, torch.zeros(V, dtype=theta.dtype)])[None]


def _teacher_np(seq_prefix: tuple[int, ...], table: np.ndarray) -> np.ndarray:
    return table[len(seq_prefix), hash(seq_prefix) % 5]


def test_minillm_unnormalised_is_the_exact_sequence_rkl_gradient() -> None:
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(STEPS, V + 1, V))  # 36 parameters
    tlog = rng.normal(size=(STEPS, 5, V)) * 1.5  # the teacher depends on the whole prefix
    seqs = list(itertools.product(range(V), repeat=STEPS))

    def seq_rkl(theta: np.ndarray) -> float:
        total = 0.0
        for y in seqs:
            prev = (BOS, *y[:-1])
            lq = sum(np.log(_softmax(theta[j, prev[j]])[y[j]]) for j in range(STEPS))
            lp = sum(np.log(_softmax(_teacher_np(y[:j], tlog))[y[j]]) for j in range(STEPS))
            total += np.exp(lq) * (lq - lp)
        return total

    eps = 1e-6
    exact = np.zeros_like(theta0)
    for idx in np.ndindex(theta0.shape):
        d = np.zeros_like(theta0)
        d[idx] = eps
        exact[idx] = (seq_rkl(theta0 + d) - seq_rkl(theta0 - d)) / (2 * eps)

    def surrogate(length_norm: bool) -> np.ndarray:
        theta = torch.tensor(theta0, requires_grad=True)
        total = torch.zeros((), dtype=torch.float64)
        for y in seqs:
            s = _toy_logits(theta, y)
            t = torch.tensor(np.stack([_teacher_np(y[:j], tlog) for j in range(STEPS)] + [np.zeros(V)]))[None]
            ids = torch.tensor([[BOS % V, *y]])  # column 0 is never a target
            labels = ids.clone()
            labels[0, 0] = -100
            qy = torch.exp(torch.log_softmax(s[0, :-1].detach(), -1).gather(-1, ids[0, 1:, None]).sum())
            out = minillm_loss(s, t, ids, labels, mix_alpha=0.0, length_norm=length_norm)
            total = total + qy * STEPS * out["loss"]  # weights q(y)·N
        (g,) = torch.autograd.grad(total, theta)
        return g.numpy()

    np.testing.assert_allclose(surrogate(False), exact, atol=1e-6)
    assert np.abs(surrogate(True) - exact).max() > 1e-3  # length normalisation changes the objective


# ---- DistiLLM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "losses,phis",
    [
        ([2.0, 2.05, 2.12, 2.15, 2.3, 2.1], [0.0, 0.1, 0.1, 0.2, 0.2]),
        ([2.0, 2.06, 2.12], [0.0, 0.1]),
        ([3.0, 2.5, 2.0, 1.5], [0.0, 0.0, 0.0]),
    ],
)
def test_distillm_phi_follows_validation_losses(losses: list[float], phis: list[float]) -> None:
    sched = DistiLLMSchedule(10)
    assert sched.update(losses[0]) == 0.0
    assert [sched.update(v) for v in losses[1:]] == pytest.approx(phis, abs=1e-12)


def test_distillm_phi_monotone_capped_and_falling_loss_is_all_data() -> None:
    sched = DistiLLMSchedule(20, seed=3)
    got = [sched.update(1.0 + k) for k in range(15)]
    assert got == sorted(got) and got[-1] == 1.0
    flat = DistiLLMSchedule(20, seed=3)
    for v in (3.0, 2.0, 1.0):
        flat.update(v)
    assert {flat.source(t, 0) for t in range(1, 21)} == {"data"}


def test_distillm_branch_probabilities_on_a_grid() -> None:
    sched = DistiLLMSchedule(10, init_phi=0.6, capacity=8)
    u = (np.arange(20_000) + 0.5) / 20_000
    for t in (1, 4, 10):
        full = [sched.branch(x, t, 8) for x in u]
        frac = {k: full.count(k) / len(u) for k in ("generate", "replay", "data")}
        assert frac["generate"] == pytest.approx(0.6 * (1 - t / 10), abs=1e-4)
        assert frac["replay"] == pytest.approx(0.6 * t / 10, abs=1e-4)
        assert frac["data"] == pytest.approx(0.4, abs=1e-4)
        notfull = [sched.branch(x, t, 7) for x in u]
        assert notfull.count("generate") / len(u) == pytest.approx(0.6, abs=1e-4)
        assert "replay" not in notfull
    c = DistiLLMSchedule(10, init_phi=0.6, replay_ratio="constant")
    assert c.rho(3) == pytest.approx(0.3)
    with pytest.raises(InvalidParameterError, match="step"):
        sched.rho(11)


def test_distillm_state_round_trip_and_refusals() -> None:
    a = DistiLLMSchedule(50, init_phi=0.5, seed=1)
    a.update(1.0)
    [a.source(t, 0) for t in range(1, 6)]
    b = DistiLLMSchedule(50, seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.source(t, 3) for t in range(6, 30)] == [b.source(t, 3) for t in range(6, 30)]
    for bad in (dict(init_phi=1.5), dict(step=0.0), dict(loss_eps=-1.0), dict(replay_ratio="x"), dict(capacity=0)):
        with pytest.raises(InvalidParameterError):
            DistiLLMSchedule(5, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="total_steps"):
        DistiLLMSchedule(0)
    with pytest.raises(InvalidParameterError, match="finite"):
        a.update(float("nan"))


def test_replay_buffer_fifo_and_seeded_sampling() -> None:
    buf = ReplayBuffer(capacity=5)
    buf.push({"ids": torch.arange(12).view(4, 3)})
    buf.push({"ids": torch.arange(12, 18).view(2, 3)})
    assert len(buf) == 5 and buf.items[0]["ids"][0].item() == 3  # the oldest row dropped
    x = buf.sample(3, np.random.default_rng(0))["ids"]
    y = buf.sample(3, np.random.default_rng(0))["ids"]
    assert torch.equal(x, y) and len({tuple(r.tolist()) for r in x}) == 3
    with pytest.raises(InvalidParameterError, match="batch_size"):
        buf.sample(6, np.random.default_rng(0))
