"""The training-strategy losses of methods/13 (§13.1–13.5): each against an independent float64 numpy
computation on seeded random inputs, the identities each section states, and bad input named plainly."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import kdcore.losses as L
from kdcore.losses import (
    ban_ensemble,
    ban_loss,
    byot_losses,
    clkd_components,
    clkd_loss,
    ctkd_lambda,
    ctkd_step,
    ctkd_theta_step,
    curriculum_order,
    cwtm_loss,
    dgkd_choose_dropped,
    dgkd_loss,
    education_kd_loss,
    grade_of_epoch,
    grade_partition,
    kd_loss,
    pacing,
    pool_size,
    takd_path,
    tfkd_reg_loss,
    tfkd_self_loss,
    virtual_teacher,
    warmup_weight,
)
from kdcore.validation import InvalidParameterError

N, C = 6, 5


def _rand(seed: int, *shape: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def _labels(seed: int, n: int = N, c: int = C) -> torch.Tensor:
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


def log_softmax_np(z: np.ndarray, T: float = 1.0) -> np.ndarray:
    x = z / T
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kl_np(zt: np.ndarray, zs: np.ndarray, T: float = 1.0) -> np.ndarray:
    lp, lq = log_softmax_np(zt, T), log_softmax_np(zs, T)
    return (np.exp(lp) * (lp - lq)).sum(-1)  # [N]


def ce_np(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -log_softmax_np(z)[np.arange(len(y)), y]  # [N]


def close(a, b, tol: float = 1e-9) -> None:
    np.testing.assert_allclose(
        np.asarray(a.detach() if isinstance(a, torch.Tensor) else a, dtype=float),
        np.asarray(b, dtype=float),
        rtol=tol,
        atol=tol,
    )


# ---- public names (API.md: the §13 Signature lines) ------------------------------------------------------

SIGNATURES = {
    "clkd_loss": ["student_logits", "teacher_logits", "labels", "ce_weight", "mu", "beta", "nu", "cov_divisor"],
    "takd_path": ["sizes"],
    "dgkd_loss": ["student_logits", "guide_logits", "labels", "temperature", "lam", "dropped"],
    "dgkd_choose_dropped": ["rng", "n_guides", "drop_num"],
    "ctkd_step": [
        "student_logits",
        "teacher_logits",
        "labels",
        "theta",
        "epoch",
        "gamma",
        "alpha",
        "t_start",
        "t_range",
        "loops",
    ],
    "curriculum_order": ["teacher_logits", "labels", "balance"],
    "pacing": ["t", "start", "inc", "step"],
    "pool_size": ["t", "n"],
    "warmup_weight": ["epoch", "warmup"],
    "ban_loss": ["student_logits", "teacher_logits", "labels", "label_weight"],
    "cwtm_loss": ["student_logits", "teacher_logits", "labels"],
    "ban_ensemble": ["logits"],
    "byot_losses": ["exit_logits", "labels", "adapted_feats", "deep_feat", "temperature", "alpha", "lam"],
    "virtual_teacher": ["labels", "num_classes", "a", "temperature", "soften"],
    "tfkd_reg_loss": ["student_logits", "labels", "a", "temperature", "alpha", "multiplier"],
    "tfkd_self_loss": ["student_logits", "teacher_logits", "labels", "temperature", "alpha"],
    "grade_partition": ["num_classes", "ratios"],
    "grade_of_epoch": ["epoch", "boundaries"],
    "education_kd_loss": ["student_logits", "teacher_logits", "labels", "grade_slice", "temperature", "ce_weight"],
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_names_are_exported_with_their_parameters(name):
    params = list(inspect.signature(getattr(L, name)).parameters)
    assert params[: len(SIGNATURES[name])] == SIGNATURES[name]
    assert name in L.__all__


def test_spec_defaults():
    d = {k: v.default for k, v in inspect.signature(clkd_loss).parameters.items()}
    assert (d["ce_weight"], d["mu"], d["beta"], d["nu"], d["cov_divisor"]) == (0.1, 0.5, 2.0, 0.4, None)
    d = {k: v.default for k, v in inspect.signature(ctkd_step).parameters.items()}
    assert (d["gamma"], d["alpha"], d["t_start"], d["t_range"], d["loops"]) == (0.1, 0.9, 1, 20, 10)
    d = {k: v.default for k, v in inspect.signature(byot_losses).parameters.items()}
    assert (d["temperature"], d["alpha"], d["lam"]) == (3.0, 0.3, 0.03)
    d = {k: v.default for k, v in inspect.signature(dgkd_loss).parameters.items()}
    assert (d["temperature"], d["lam"], d["dropped"]) == (5.0, 1.0, ())


# ---- §13.1 CLKD -------------------------------------------------------------------------------------------


def _clkd_np(zs: np.ndarray, zt: np.ndarray, y: np.ndarray, div: float | None = None) -> dict[str, float]:
    n, c = zs.shape

    def unit(z, axis):
        return z / np.maximum(np.sqrt((z**2).sum(axis, keepdims=True)), 1e-12)

    def cov(z):
        zc = z - z.mean(0)
        return zc.T @ zc / (n - 1 if div is None else div)

    return {
        "ins": ((unit(zs, 1) - unit(zt, 1)) ** 2).sum() / (n * c),
        "cla": ((unit(zs, 0) - unit(zt, 0)) ** 2).sum() / (n * c),
        "cc": ((cov(zs) - cov(zt)) ** 2).sum() / c**2,
        "ce": ce_np(zs, y).mean(),
    }


@pytest.mark.parametrize("div", [None, 3.0])
def test_clkd_matches_numpy_and_is_the_weighted_sum_of_its_terms(div):
    s, t, y = _rand(0, N, C), _rand(1, N, C), _labels(2)
    want = _clkd_np(_np(s), _np(t), y.numpy(), div)
    out = clkd_loss(s, t, y, ce_weight=0.2, mu=0.7, beta=1.5, nu=0.3, cov_divisor=div)
    for k in ("ins", "cla", "cc", "ce"):
        close(out[k], want[k])
    close(out["loss"], 0.2 * want["ce"] + 0.7 * (want["ins"] + 1.5 * want["cla"]) + 0.3 * want["cc"])
    parts = clkd_components(s, t, y, cov_divisor=div)
    close(out["loss"], 0.2 * parts["ce"] + 0.7 * (parts["ins"] + 1.5 * parts["cla"]) + 0.3 * parts["cc"])


def test_clkd_identities():
    s, t, y = _rand(3, N, C), _rand(4, N, C), _labels(5)
    parts = clkd_components(s, t, y)
    cos = torch.nn.functional.cosine_similarity(s, t, dim=1)
    close(parts["ins"], 2.0 / (N * C) * (1 - cos).sum())
    transposed = clkd_components(s.T.contiguous(), t.T.contiguous(), _labels(6, C, N))
    close(parts["cla"], transposed["ins"])
    row, col = _rand(7, N, 1).abs() + 0.1, _rand(8, 1, C).abs() + 0.1
    close(clkd_components(s * row, t, y)["ins"], parts["ins"])
    close(clkd_components(s, t / row, y)["ins"], parts["ins"])
    close(clkd_components(s * col, t, y)["cla"], parts["cla"])
    shift = _rand(9, 1, C)
    close(clkd_components(s + shift, t, y)["cc"], parts["cc"])
    close(clkd_components(t + shift, t, y)["cc"], 0.0)
    same = clkd_components(t, t, y)
    assert all(float(same[k]) == pytest.approx(0.0, abs=1e-12) for k in ("ins", "cla", "cc"))
    assert all(float(parts[k]) >= 0 for k in ("ins", "cla", "cc")) and float(parts["ins"]) <= 4.0 / C
    close(clkd_components(-t, t, y)["ins"], 4.0 / C)  # opposite rows: the bound


def test_clkd_cov_divisor_only_rescales_cc():
    s, t, y = _rand(10, N, C), _rand(11, N, C), _labels(12)
    close(clkd_components(s, t, y, cov_divisor=C - 1)["cc"], clkd_components(s, t, y)["cc"] * ((N - 1) / (C - 1)) ** 2)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda s, t, y: clkd_loss(s[:1], t[:1], y[:1]), "at least 2 samples"),
        (lambda s, t, y: clkd_loss(s, t[:, :3], y), "class counts of clkd_loss differ"),
        (lambda s, t, y: clkd_loss(s.index_fill(1, torch.tensor([0]), float("nan")), t, y), "must be finite"),
        (lambda s, t, y: clkd_loss(s, t, y + C), r"class indices in \[0, 4\]"),
        (lambda s, t, y: clkd_loss(s, t, y, nu=-1.0), "'nu' parameter of clkd_loss must be a float >= 0"),
        (lambda s, t, y: clkd_loss(s, t, y, cov_divisor=0), "'cov_divisor' parameter of clkd_loss must be a float > 0"),
    ],
)
def test_clkd_bad_input(call, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        call(_rand(0, N, C), _rand(1, N, C), _labels(2))


def test_clkd_float32_inputs_get_finite_gradients():
    s = _rand(13, N, C).float().requires_grad_()
    clkd_loss(s, _rand(14, N, C).float(), _labels(15))["loss"].backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ---- §13.2 TAKD and DGKD ---------------------------------------------------------------------------------


def test_takd_path_is_the_chain_of_consecutive_stages():
    sizes = [110, 56, 32, 20, 8]
    path = takd_path(sizes)
    assert path == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert path[0][0] == 0 and path[-1][1] == len(sizes) - 1
    assert all(sizes[a] > sizes[b] and b == a + 1 for a, b in path)
    assert takd_path([2.5, 1]) == [(0, 1)]  # a 2-model path is plain KD


@pytest.mark.parametrize(
    "sizes, needle",
    [
        ([10], "at least 2 sizes"),
        ([10, 10, 4], "strictly decreasing"),
        ([4, 8], "size 8.0 at position 1"),
        ([10, -1], "positive numbers"),
        ("108", "list of model sizes"),
    ],
)
def test_takd_path_refuses_chains_that_do_not_shrink(sizes, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        takd_path(sizes)


def test_dgkd_matches_numpy():
    s, y = _rand(20, N, C), _labels(21)
    guides = [_rand(22 + i, N, C) for i in range(3)]
    T, lam = 3.0, 0.7
    got = dgkd_loss(s, guides, y, temperature=T, lam=lam, dropped=(1,))
    kd = sum(kl_np(_np(g), _np(s), T).mean() for i, g in enumerate(guides) if i != 1)
    close(got, (1 - lam) * ce_np(_np(s), y.numpy()).mean() + lam * T * T * kd)


def test_dgkd_identities():
    s, y, g1, g2 = _rand(30, N, C), _labels(31), _rand(32, N, C), _rand(33, N, C)
    close(dgkd_loss(s, [g1], y, temperature=4.0, lam=0.6), kd_loss(s, g1, y, temperature=4.0, lam=0.6))
    close(
        dgkd_loss(s, [g1, g2], y, temperature=4.0, lam=0.6, dropped=(0,)), kd_loss(s, g2, y, temperature=4.0, lam=0.6)
    )
    close(dgkd_loss(s, [g1, g1], None), 2 * dgkd_loss(s, [g1], None))


def test_dgkd_choose_dropped_is_seeded_uniform_and_leaves_a_guide():
    draws = [dgkd_choose_dropped(torch.Generator().manual_seed(k), 4, 2) for k in range(200)]
    assert draws[:5] == [dgkd_choose_dropped(torch.Generator().manual_seed(k), 4, 2) for k in range(5)]
    assert all(len(d) == 2 and len(set(d)) == 2 and list(d) == sorted(d) and set(d) <= set(range(4)) for d in draws)
    counts = np.bincount([i for d in draws for i in d], minlength=4)
    assert counts.min() > 60  # 100 each expected
    assert dgkd_choose_dropped(np.random.default_rng(0), 3, 0) == ()
    assert len(dgkd_choose_dropped(np.random.default_rng(0), 3, 2)) == 2


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda s, g, y: dgkd_loss(s, [], y), "non-empty list"),
        (lambda s, g, y: dgkd_loss(s, [g, g], y, dropped=(0, 1)), "proper subset"),
        (lambda s, g, y: dgkd_loss(s, [g], y, dropped=(3,)), r"guide indices in \[0, 0\]"),
        (lambda s, g, y: dgkd_loss(s, [g[:, :2]], y), "class counts"),
        (
            lambda s, g, y: dgkd_loss(s, [g], y, temperature=0),
            "'temperature' parameter of dgkd_loss must be a float > 0",
        ),
        (
            lambda s, g, y: dgkd_loss(s, [g], y, lam=1.5),
            r"'lam' parameter of dgkd_loss must be a float in \[0.0, 1.0\]",
        ),
        (lambda s, g, y: dgkd_loss(s, [g], None, lam=0.5), "needs labels"),
        (lambda s, g, y: dgkd_choose_dropped(torch.Generator(), 2, 2), r"'drop_num' .* integer in \[0, 1\]"),
        (lambda s, g, y: dgkd_choose_dropped(torch.Generator(), 0), "'n_guides'"),
        (lambda s, g, y: dgkd_choose_dropped(0, 3), "torch.Generator or a numpy.random.Generator"),
    ],
)
def test_dgkd_bad_input(call, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        call(_rand(0, N, C), _rand(1, N, C), _labels(2))


# ---- §13.3a CTKD --------------------------------------------------------------------------------------------


def test_ctkd_lambda_schedule():
    assert ctkd_lambda(1) == pytest.approx(0.5 * (1 - math.cos(math.pi / 10)))
    assert ctkd_lambda(1) == pytest.approx(0.0245, abs=5e-5)
    assert ctkd_lambda(5) == pytest.approx(0.5) and ctkd_lambda(10) == ctkd_lambda(40) == pytest.approx(1.0)
    values = [ctkd_lambda(e) for e in range(1, 15)]
    assert values == sorted(values)


def test_ctkd_step_is_kd_at_the_learned_temperature():
    s, t, y = _rand(40, N, C), _rand(41, N, C), _labels(42)
    out = ctkd_step(s, t, y, theta=1.0, epoch=3)
    T = 1 + 20 / (1 + math.exp(-1.0))
    assert float(out["T"]) == pytest.approx(T) and T == pytest.approx(15.62, abs=0.01)
    assert out["lambda"] == pytest.approx(ctkd_lambda(3))
    close(out["loss"], kd_loss(s, t, y, temperature=T, lam=0.9))
    out = ctkd_step(s, t, y, theta=-0.5, epoch=1, gamma=0.3, alpha=2.0, t_start=2.0, t_range=5.0)
    T = 2 + 5 / (1 + math.exp(0.5))
    close(out["loss"], 0.3 * ce_np(_np(s), y.numpy()).mean() + 2.0 * T * T * kl_np(_np(t), _np(s), T).mean())


def test_ctkd_dloss_dtheta_matches_the_analytic_derivative_and_finite_differences():
    s, t, y = _rand(43, N, C), _rand(44, N, C), _labels(45)
    theta, alpha = 0.3, 0.9
    got = float(ctkd_step(s, t, y, theta=theta, epoch=2)["dloss_dtheta"])
    sig = 1 / (1 + math.exp(-theta))
    T, a, b = 1 + 20 * sig, _np(t), _np(s)
    lp, lq = log_softmax_np(a, T), log_softmax_np(b, T)
    p, q = np.exp(lp), np.exp(lq)
    kl = (p * (lp - lq)).sum(-1).mean()
    da = (-(p * (a - (p * a).sum(-1, keepdims=True)) * (lp - lq)).sum(-1) + (p * b).sum(-1) - (q * b).sum(-1)).mean()
    d_dT = 2 * T * kl + da  # ∂(T²·KL)/∂T, the spec's formula
    close(got, alpha * d_dT * 20 * sig * (1 - sig), 1e-8)
    h = 1e-5
    fd = (
        ctkd_step(s, t, y, theta=theta + h, epoch=2)["loss"].item()
        - ctkd_step(s, t, y, theta=theta - h, epoch=2)["loss"].item()
    ) / (2 * h)
    close(got, fd, 1e-6)
    with torch.no_grad():
        close(ctkd_step(s, t, y, theta=theta, epoch=2)["dloss_dtheta"], got)


def test_ctkd_gradient_reversal_on_a_trainable_theta():
    s = _rand(46, N, C).requires_grad_()
    t, y = _rand(47, N, C), _labels(48)
    theta = torch.nn.Parameter(torch.tensor(0.2, dtype=torch.float64))
    out = ctkd_step(s, t, y, theta=theta, epoch=5)
    out["loss"].backward()
    close(theta.grad, -0.5 * out["dloss_dtheta"])  # −λ_e·∂L/∂θ, λ_5 = 0.5
    s2 = s.detach().clone().requires_grad_()
    kd_loss(s2, t, y, temperature=float(out["T"]), lam=0.9).backward()
    close(s.grad, s2.grad)  # the student descends L


def test_ctkd_reversed_step_ascends_the_loss_and_lambda_zero_leaves_theta():
    s, t, y = _rand(49, N, C), _rand(50, N, C), _labels(51)
    theta = 0.4
    out = ctkd_step(s, t, y, theta=theta, epoch=10)
    new = ctkd_theta_step(theta, float(out["dloss_dtheta"]), out["lambda"], lr=0.05)
    assert ctkd_step(s, t, y, theta=new, epoch=10)["loss"].item() > out["loss"].item()
    assert ctkd_theta_step(theta, float(out["dloss_dtheta"]), 0.0, lr=0.05) == theta
    assert ctkd_theta_step(theta, 0.0, 0.0, lr=0.05, weight_decay=5e-4) < theta  # decays toward 0


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(t_range=0), "'t_range' parameter of ctkd_step must be a float > 0"),
        (dict(loops=0), "'loops' parameter of ctkd_step must be an integer >= 1"),
        (dict(epoch=0), "'epoch' parameter of ctkd_step must be an integer >= 1"),
        (dict(theta=float("nan")), "'theta' argument of ctkd_step must be a finite float"),
        (dict(gamma=-0.1), "'gamma' parameter of ctkd_step must be a float >= 0"),
    ],
)
def test_ctkd_bad_input(kw, needle):
    args = {"theta": 1.0, "epoch": 1, **kw}
    with pytest.raises(InvalidParameterError, match=needle):
        ctkd_step(_rand(0, N, C), _rand(1, N, C), _labels(2), **args)
    with pytest.raises(InvalidParameterError, match="class counts"):
        ctkd_step(_rand(0, N, C), _rand(1, N, 3), _labels(2), theta=1.0, epoch=1)


# ---- §13.3b curriculum and §13.3c warm-up --------------------------------------------------------------


def _balanced_order_np(d: np.ndarray, y: np.ndarray) -> list[int]:
    order = list(np.argsort(d, kind="stable"))
    per_class = {c: [i for i in order if y[i] == c] for c in sorted(set(y.tolist()))}
    out, r = [], 0
    while any(r < len(v) for v in per_class.values()):
        group = [v[r] for v in per_class.values() if r < len(v)]
        out += sorted(group, key=order.index)
        r += 1
    return out


def test_curriculum_order_matches_numpy_and_balances_every_prefix():
    n, c = 30, 3
    t, y = _rand(60, n, c), torch.arange(n) % c
    d = -log_softmax_np(_np(t))[np.arange(n), y.numpy()]
    assert curriculum_order(t, y, balance=False).tolist() == list(np.argsort(d, kind="stable"))
    order = curriculum_order(t, y)
    assert order.tolist() == _balanced_order_np(d, y.numpy())
    assert sorted(order.tolist()) == list(range(n))
    for k in range(1, n + 1):
        counts = np.bincount(y[order[:k]].numpy(), minlength=c)
        assert counts.max() - counts.min() <= 1


def test_curriculum_order_breaks_ties_toward_the_lower_index():
    t, y = torch.zeros(5, 3), torch.tensor([0, 1, 0, 2, 1])
    assert curriculum_order(t, y, balance=False).tolist() == [0, 1, 2, 3, 4]
    assert curriculum_order(t, y).tolist() == [0, 1, 3, 2, 4]


def test_pacing_values_monotonicity_and_pools():
    g = [pacing(t) for t in range(0, 1001)]
    assert g == sorted(g) and g[599] < 1.0 and g[600] == 1.0 and g[1000] == 1.0
    for t in (0, 99, 100, 250, 512):
        assert pacing(t) == pytest.approx(min(0.04 * 1.9 ** (t // 100), 1.0))
    assert pacing(7, start=0.5, inc=2.0, step=3) == 1.0 and pacing(2, start=0.5, inc=2.0, step=3) == 0.5
    assert all(pacing(t, start=1.0) == 1.0 for t in range(0, 300, 7))  # start = 1: ordinary training
    sizes = [pool_size(t, 1000) for t in range(0, 800, 50)]
    assert sizes == sorted(sizes) and sizes[0] == 40 and sizes[-1] == 1000
    assert pool_size(100, 10) == math.ceil(10 * 0.04 * 1.9) and pool_size(0, 1000, start=1.0) == 1000


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(start=0.0), r"'start' parameter of pacing must be a float in \(0.0, 1.0\]"),
        (dict(start=1.5), "'start'"),
        (dict(inc=1.0), "'inc' parameter of pacing"),
        (dict(step=0), "'step' parameter of pacing must be an integer >= 1"),
        (dict(t=-1), "'t' parameter of pacing must be an integer >= 0"),
    ],
)
def test_pacing_bad_input(kw, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        pacing(**{"t": 0, **kw})


def test_curriculum_bad_input():
    with pytest.raises(InvalidParameterError, match=r"class indices in \[0, 2\]"):
        curriculum_order(_rand(0, 4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(InvalidParameterError, match="'balance' parameter"):
        curriculum_order(_rand(0, 4, 3), torch.tensor([0, 1, 2, 0]), balance="yes")
    with pytest.raises(InvalidParameterError, match="'n' parameter of pool_size"):
        pool_size(0, 0)


def test_warmup_weight():
    assert warmup_weight(1) == pytest.approx(0.05) and warmup_weight(20) == 1.0 and warmup_weight(33) == 1.0
    assert [warmup_weight(e, warmup=4) for e in range(1, 6)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(InvalidParameterError, match="'warmup' parameter of warmup_weight must be a float > 0"):
        warmup_weight(1, warmup=0)
    with pytest.raises(InvalidParameterError, match="'epoch' parameter of warmup_weight must be an integer >= 1"):
        warmup_weight(0)


# ---- §13.4a Born-Again Networks ----------------------------------------------------------------------------


def test_ban_is_kd_at_t1_without_labels_and_adds_a_weighted_ce():
    s, t, y = _rand(70, N, C), _rand(71, N, C), _labels(72)
    close(ban_loss(s, t), kd_loss(s, t, None, temperature=1.0))
    close(ban_loss(s, t), kl_np(_np(t), _np(s)).mean())
    close(ban_loss(s, t, y, label_weight=1.0), kl_np(_np(t), _np(s)).mean() + ce_np(_np(s), y.numpy()).mean())
    close(ban_loss(s, t, y, label_weight=0.0), ban_loss(s, t))


def test_cwtm_matches_numpy_and_is_mean_ce_with_equal_teacher_maxima():
    s, t, y = _rand(73, N, C), _rand(74, N, C), _labels(75)
    top = np.exp(log_softmax_np(_np(t))).max(-1)
    close(cwtm_loss(s, t, y), (top / top.sum() * ce_np(_np(s), y.numpy())).sum())
    row = _rand(76, 1, C)
    permuted = torch.cat([row[:, torch.randperm(C, generator=torch.Generator().manual_seed(k))] for k in range(N)])
    close(cwtm_loss(s, permuted, y), ce_np(_np(s), y.numpy()).mean())


def test_ban_ensemble_is_the_mean_of_the_softmaxes():
    gens = [_rand(77 + k, N, C) for k in range(3)]
    want = np.mean([np.exp(log_softmax_np(_np(z))) for z in gens], axis=0)
    close(ban_ensemble(gens), want)
    close(ban_ensemble(gens).sum(-1), np.ones(N))


def test_ban_bad_input():
    s, t = _rand(0, N, C), _rand(1, N, C)
    with pytest.raises(InvalidParameterError, match="label_weight=1.0 but labels=None"):
        ban_loss(s, t, label_weight=1.0)
    with pytest.raises(InvalidParameterError, match="'label_weight' parameter of ban_loss must be a float >= 0"):
        ban_loss(s, t, _labels(2), label_weight=-1)
    with pytest.raises(InvalidParameterError, match="non-empty list"):
        ban_ensemble([])
    with pytest.raises(InvalidParameterError, match="class counts"):
        ban_ensemble([s, t[:, :2]])


# ---- §13.4b Be Your Own Teacher ----------------------------------------------------------------------------


def _byot_np(exits, y, feats, deep, T, alpha, lam, feature="l2", t_sq=False):
    zk = exits[-1]
    out = []
    for k, z in enumerate(exits[:-1]):
        loss = (1 - alpha) * ce_np(z, y).mean() + alpha * (T * T if t_sq else 1) * kl_np(zk, z, T).mean()
        if feats is not None:
            diff = feats[k] - deep
            loss += lam * (np.sqrt((diff**2).sum()) if feature == "l2" else (diff**2).sum(1).mean())
        out.append(loss)
    return out + [ce_np(zk, y).mean()]


@pytest.mark.parametrize("feature, t_sq", [("l2", False), ("squared", True)])
def test_byot_matches_numpy(feature, t_sq):
    exits, y = [_rand(80 + k, N, C) for k in range(3)], _labels(83)
    feats, deep = [_rand(84 + k, N, 4) for k in range(2)], _rand(86, N, 4)
    per_exit, total = byot_losses(
        exits, y, feats, deep, temperature=2.0, alpha=0.4, lam=0.1, t_squared=t_sq, feature=feature
    )
    want = _byot_np(
        [_np(z) for z in exits], y.numpy(), [_np(f) for f in feats], _np(deep), 2.0, 0.4, 0.1, feature, t_sq
    )
    close(torch.stack(per_exit), want)
    close(total, sum(want))
    per_exit, _ = byot_losses(exits, y, feats, deep, feature_exits=(1,))
    close(per_exit[0], _byot_np([_np(z) for z in exits], y.numpy(), None, None, 3.0, 0.3, 0.03)[0])


def test_byot_identities_and_the_stopped_teacher():
    deep, y = _rand(87, N, C), _labels(88)
    per_exit, _ = byot_losses([deep, deep.clone(), deep.clone()], y, alpha=0.3)
    ce = ce_np(_np(deep), y.numpy()).mean()
    close(torch.stack(per_exit[:2]), [0.7 * ce, 0.7 * ce])
    z0 = _rand(89, N, C)
    per_exit, _ = byot_losses([z0, deep], y, temperature=3.0, alpha=0.3)
    p = np.exp(log_softmax_np(_np(deep), 3.0))
    soft_ce = 0.7 * ce_np(_np(z0), y.numpy()).mean() - 0.3 * (p * log_softmax_np(_np(z0), 3.0)).sum(-1).mean()
    close(soft_ce - per_exit[0], 0.3 * (-(p * np.log(p)).sum(-1)).mean())  # soft-CE − KL = α·H(p_T)
    zk = deep.clone().requires_grad_()
    byot_losses([z0, zk], y)[1].backward()
    ref = deep.clone().requires_grad_()
    torch.nn.functional.cross_entropy(ref, y).backward()
    close(zk.grad, ref.grad)  # the teacher learns only from CE


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda z, y, f: byot_losses([z], y), "at least 2"),
        (lambda z, y, f: byot_losses([z[:, :3], z], y), "class counts"),
        (
            lambda z, y, f: byot_losses([z, z], y, alpha=1.5),
            r"'alpha' parameter of byot_losses must be a float in \[0.0, 1.0\]",
        ),
        (lambda z, y, f: byot_losses([z, z], y, temperature=0), "'temperature' parameter of byot_losses"),
        (lambda z, y, f: byot_losses([z, z], y, [f[:, :2]], f), "must have the shape of deep_feat"),
        (lambda z, y, f: byot_losses([z, z], y, [f], None), "or neither"),
        (lambda z, y, f: byot_losses([z, z], y, feature="l1"), "'feature' parameter"),
        (lambda z, y, f: byot_losses([z, z], y, [f], f, feature_exits=(2,)), "'feature_exits'"),
    ],
)
def test_byot_bad_input(call, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        call(_rand(0, N, C), _labels(1), _rand(2, N, 4))


# ---- §13.4c Teacher-free KD --------------------------------------------------------------------------------


def _virtual_np(y, c, a, T, soften="probs"):
    p = np.full((len(y), c), (1 - a) / (c - 1))
    p[np.arange(len(y)), y] = a
    x = p / T if soften == "probs" else np.log(p) / T
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_virtual_teacher_matches_numpy_and_its_closed_forms():
    y = _labels(90)
    close(virtual_teacher(y, C, a=0.9, temperature=2.0), _virtual_np(y.numpy(), C, 0.9, 2.0), 1e-6)
    close(
        virtual_teacher(y, C, a=0.9, temperature=2.0, soften="log_probs"),
        _virtual_np(y.numpy(), C, 0.9, 2.0, "log_probs"),
        1e-6,
    )
    c, a, T = 100, 0.99, 20.0
    b = (1 - a) / (c - 1)
    target = virtual_teacher(torch.tensor([3]), c, a=a, temperature=T)[0, 3]
    close(target, math.exp(a / T) / (math.exp(a / T) + (c - 1) * math.exp(b / T)), 1e-6)
    assert float(target) == pytest.approx(0.0105, abs=1e-4)
    close(virtual_teacher(y, C, temperature=1e6), np.full((N, C), 1 / C), 1e-6)
    p1 = virtual_teacher(y, C, a=0.8, temperature=1.0, soften="log_probs")
    close(p1, _virtual_np(y.numpy(), C, 0.8, 1.0, "log_probs"), 1e-6)
    close(p1[torch.arange(N), y], np.full(N, 0.8), 1e-6)  # T = 1 returns p^d


def test_tfkd_reg_matches_numpy_and_is_label_smoothing_toward_the_virtual_teacher():
    s, y = _rand(91, N, C), _labels(92)
    a, T, alpha, m = 0.95, 4.0, 0.3, 2.0
    p = _virtual_np(y.numpy(), C, a, T)
    log_q = log_softmax_np(_np(s))
    kl = (p * (np.log(p) - log_q)).sum(-1)
    ce = ce_np(_np(s), y.numpy())
    close(
        tfkd_reg_loss(s, y, a=a, temperature=T, alpha=alpha, multiplier=m),
        ((1 - alpha) * ce + alpha * m / C * kl).mean(),
        1e-6,
    )
    smoothed = (1 - alpha) * np.eye(C)[y.numpy()] + alpha * p  # m = C
    want = -(smoothed * log_q).sum(-1).mean() + alpha * (p * np.log(p)).sum(-1).mean()
    close(tfkd_reg_loss(s, y, a=a, temperature=T, alpha=alpha), want, 1e-6)


def test_tfkd_self_is_kd_scaled_by_m_over_c():
    s, t, y = _rand(93, N, C), _rand(94, N, C), _labels(95)
    close(tfkd_self_loss(s, t, y, temperature=3.0, alpha=0.6), kd_loss(s, t, y, temperature=3.0, lam=0.6))
    want = (0.05 * ce_np(_np(s), y.numpy()) + 0.95 * (50 / C) * 36 * kl_np(_np(t), _np(s), 6.0)).mean()
    close(tfkd_self_loss(s, t, y, multiplier=50), want)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda s, y: virtual_teacher(torch.tensor([0]), 1), r"'num_classes' .* integer in \[2, "),
        (
            lambda s, y: virtual_teacher(y, C, a=0.0),
            r"'a' parameter of virtual_teacher must be a float in \(0.0, 1.0\]",
        ),
        (lambda s, y: virtual_teacher(y, C, a=1.1), "'a' parameter"),
        (lambda s, y: virtual_teacher(y, C, temperature=0), "'temperature' parameter of virtual_teacher"),
        (lambda s, y: virtual_teacher(y, C, soften="logits"), "'soften' parameter"),
        (lambda s, y: tfkd_reg_loss(s, y, alpha=2.0), "'alpha' parameter of tfkd_reg_loss"),
        (lambda s, y: tfkd_reg_loss(s, y, multiplier=0), "'multiplier' parameter of tfkd_reg_loss"),
        (lambda s, y: tfkd_reg_loss(s[:, :1], y * 0), "at least 2 classes"),
        (lambda s, y: tfkd_self_loss(s, s[:, :2], y), "class counts"),
    ],
)
def test_tfkd_bad_input(call, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        call(_rand(0, N, C), _labels(1))


# ---- §13.5 Education distillation ---------------------------------------------------------------------------


def test_grades():
    assert grade_partition(100) == [(0, 33), (33, 66), (66, 100)]
    assert grade_partition(10, (1, 2)) == [(0, 3), (3, 10)]
    assert grade_partition(7, (2, 1, 1)) == [(0, 3), (3, 4), (4, 7)]
    assert grade_partition(5, (1,)) == [(0, 5)]
    assert [grade_of_epoch(e) for e in (1, 149, 150, 179, 180, 240)] == [1, 1, 2, 2, 3, 3]
    assert grade_of_epoch(3, boundaries=()) == 1


def _education_np(zs, zt, y, m, n, T, w):
    return (w * ce_np(zs, y) + (1 - w) * T * T * kl_np(zt, zs[:, m:n], T)).mean()


def test_education_kd_matches_numpy_and_its_identities():
    s, t = _rand(100, N, 9), _rand(101, N, 4)
    y = torch.tensor([3, 4, 5, 6, 3, 6])
    close(
        education_kd_loss(s, t, y, (3, 7), temperature=2.0, ce_weight=0.4),
        _education_np(_np(s), _np(t), y.numpy(), 3, 7, 2.0, 0.4),
    )
    full, yf = _rand(102, N, C), _labels(103)
    close(
        education_kd_loss(s[:, :C], full, yf, (0, C), temperature=3.0, ce_weight=0.3),
        kd_loss(s[:, :C], full, yf, temperature=3.0, lam=0.7),
    )
    changed = s.clone()
    changed[:, :3] += 5.0
    changed[:, 7:] -= 2.0
    close(education_kd_loss(changed, t, y, (3, 7), ce_weight=0.0), education_kd_loss(s, t, y, (3, 7), ce_weight=0.0))
    p = np.exp(log_softmax_np(_np(t), 4.0))
    soft_ce = (
        0.3 * ce_np(_np(s), y.numpy()).mean() - 0.7 * 16 * (p * log_softmax_np(_np(s)[:, 3:7], 4.0)).sum(-1).mean()
    )
    close(soft_ce - education_kd_loss(s, t, y, (3, 7)), 0.7 * 16 * (-(p * np.log(p)).sum(-1)).mean())


@pytest.mark.parametrize(
    "call, needle",
    [
        (
            lambda s, t, y: education_kd_loss(s, t, torch.tensor([3, 4, 5, 6, 3, 8]), (3, 7)),
            r"grade's classes \[3, 7\)",
        ),
        (lambda s, t, y: education_kd_loss(s, t[:, :3], y, (3, 7)), "must predict the grade's 4 classes"),
        (lambda s, t, y: education_kd_loss(s, t, y, (6, 10)), "inside the student's head of 9 classes"),
        (
            lambda s, t, y: education_kd_loss(s, t, y, (3, 7), temperature=0),
            "'temperature' parameter of education_kd_loss",
        ),
        (lambda s, t, y: education_kd_loss(s, t, y, (3, 7), ce_weight=1.2), "'ce_weight' parameter"),
        (lambda s, t, y: education_kd_loss(s, t[:2], y, (3, 7)), "same batch size"),
        (lambda s, t, y: grade_partition(2, (1, 1, 1)), r"grade\(s\) \[1, 2\] without a class \(sizes \[0, 0, 2\]\)"),
        (lambda s, t, y: grade_partition(10, (1, 0)), "positive numbers"),
        (lambda s, t, y: grade_of_epoch(10, (180, 150)), "strictly increasing"),
        (lambda s, t, y: grade_of_epoch(0), "'epoch' parameter of grade_of_epoch must be an integer >= 1"),
    ],
)
def test_education_bad_input(call, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        call(_rand(0, N, 9), _rand(1, N, 4), torch.tensor([3, 4, 5, 6, 3, 6]))
