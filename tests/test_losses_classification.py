"""Classification losses (METHODS.md §1, 3, 4, 5, 12): spec vectors, identities, an independent
float64 numpy reference, extreme logit gaps, -inf logits, gradcheck, bf16 and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdcore.losses import (
    cakd_components,
    cakd_loss,
    dkd_components,
    dkd_loss,
    kd_components,
    kd_loss,
    normkd_components,
    normkd_loss,
    softmax_t,
    strong_set,
)
from kdcore.losses.kd import label_smoothing_loss, label_smoothing_targets  # the label-smoothing method's own module

# ---- independent float64 numpy reference, written from METHODS.md ------------------------------


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q):
    """Σ p (log p − log q) per row, 0·log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def np_std(z):
    return z.std(axis=-1, ddof=1, keepdims=True)


def np_kd(zs, zt, y, T, lam, standardize=False):
    ce = -np.log(np_softmax(zs)[np.arange(len(y)), y])
    if standardize:
        zs = (zs - zs.mean(-1, keepdims=True)) / (np_std(zs) + 1e-7)
        zt = (zt - zt.mean(-1, keepdims=True)) / (np_std(zt) + 1e-7)
    kl = np_kl(np_softmax(zt / T), np_softmax(zs / T))
    return ce, kl, np.mean((1 - lam) * ce + lam * T * T * kl)


def np_split(zs, zt, S, T):
    """BCD, SCD, WCD, p_S, p_W, KL by the textbook quotient formulas (fine for moderate logits)."""
    p, q = np_softmax(zt / T), np_softmax(zs / T)
    out = {k: [] for k in ("bcd", "scd", "wcd", "p_strong", "p_weak", "kl")}
    for i in range(len(p)):
        s, w = S[i], ~S[i]
        pS, qS, pW, qW = p[i][s].sum(), q[i][s].sum(), p[i][w].sum(), q[i][w].sum()
        out["bcd"].append(np_kl(np.array([pS, pW]), np.array([qS, qW])))
        out["scd"].append(np_kl(p[i][s] / pS, q[i][s] / qS))
        out["wcd"].append(np_kl(p[i][w] / pW, q[i][w] / qW) if w.sum() > 0 else 0.0)
        out["p_strong"].append(pS)
        out["p_weak"].append(pW)
        out["kl"].append(np_kl(p[i], q[i]))
    return {k: np.array(v) for k, v in out.items()}


def np_strong(zt, rule, T=1.0, k=None, tau=None):
    B, C = zt.shape
    S = np.zeros((B, C), dtype=bool)
    for i in range(B):
        order = sorted(range(C), key=lambda c: (-zt[i, c], c))  # descending, ties to the lower index
        if rule == "topk":
            S[i, order[:k]] = True
        else:
            p = np_softmax(zt[i] / T)
            total, n = 0.0, 0
            for c in order:
                total += p[c]
                n += 1
                if total >= tau:
                    break
            S[i, order[:n]] = True
    return S


def np_lse(x):
    m = x.max()
    return m + math.log(np.exp(x - m).sum())


def np_set_kl_logspace(zt, zs, keep):
    """KL of distributions renormalised inside ``keep``, from log-softmax over the kept classes."""
    lt = zt[keep] - np_lse(zt[keep])
    ls = zs[keep] - np_lse(zs[keep])
    return float((np.exp(lt) * (lt - ls)).sum())


SHAPES = [(1, 2), (3, 5), (7, 10), (4, 100)]
TEMPS = [0.5, 1.0, 2.0, 4.0, 10.0]


def _random_logits(B, C, scale, dtype=torch.float32):
    s = (torch.randn(B, C, dtype=torch.float64) * scale).to(dtype)
    t = (torch.randn(B, C, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, C, (B,))
    return s, t, y


def _np(x):
    return x.detach().double().numpy()


# ---- spec vectors -------------------------------------------------------------------------------


@pytest.fixture
def vec(vectors):
    i = vectors["inputs"]
    return (
        torch.tensor(i["student_logits"]),
        torch.tensor(i["teacher_logits"]),
        torch.tensor(i["labels"]),
        vectors["values"],
    )


@pytest.mark.parametrize("T", [1, 4])
def test_vectors_kd(vec, T):
    s, t, y, v = vec
    assert kd_components(s, t, y, temperature=T)["kl"].mean().item() == pytest.approx(v[f"kd_kl_term_T{T}"], rel=1e-5)
    assert kd_loss(s, t, y, temperature=T, lam=0.9).item() == pytest.approx(v[f"kd_loss_T{T}_lam0.9"], rel=1e-5)


@pytest.mark.parametrize("T", [1, 4])
def test_vectors_dkd(vec, T):
    s, t, y, v = vec
    parts = dkd_components(s, t, y, temperature=T)
    for key, want in v[f"dkd_T{T}"].items():
        np.testing.assert_allclose(_np(parts[key]), want, rtol=1e-5, atol=1e-7)
    assert dkd_loss(s, t, y, temperature=T, alpha=1, beta=8).item() == pytest.approx(
        v[f"dkd_loss_T{T}_a1_b8"], rel=1e-5
    )


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("rule,kw,key", [("topk", {"k": 2}, "cakd_top2"), ("mass", {"tau": 0.9}, "cakd_mass0.9")])
def test_vectors_cakd(vec, T, rule, kw, key):
    s, t, _, v = vec
    S = strong_set(t, rule=rule, temperature=T, **kw)
    parts = cakd_components(s, t, S, temperature=T)
    for name, want in v[f"{key}_T{T}"].items():
        np.testing.assert_allclose(_np(parts[name]), want, rtol=1e-5, atol=1e-6)


def test_vectors_cakd_loss_and_normkd(vec):
    s, t, _, v = vec
    S = strong_set(t, rule="topk", k=2, temperature=4)
    assert cakd_loss(s, t, S, temperature=4, alpha=2, beta=4).item() == pytest.approx(
        v["cakd_loss_top2_T4_a2_b4"], rel=1e-5
    )
    assert normkd_loss(s, t, t_norm=1.5).item() == pytest.approx(v["normkd_loss_Tnorm1.5"], rel=1e-5)


# ---- identities on random inputs ----------------------------------------------------------------


@pytest.mark.parametrize("B,C", SHAPES)
@pytest.mark.parametrize("T", TEMPS)
def test_dkd_identity(B, C, T):
    s, t, y = _random_logits(B, C, scale=3.0)
    d = dkd_components(s, t, y, temperature=T)
    torch.testing.assert_close(d["kl"], d["tckd"] + (1 - d["p_target"]) * d["nckd"], rtol=1e-4, atol=1e-6)
    # the KL is the same KL as KD's
    torch.testing.assert_close(d["kl"], kd_components(s, t, temperature=T)["kl"])


@pytest.mark.parametrize("B,C", [(3, 5), (7, 10), (4, 100)])
@pytest.mark.parametrize("T", TEMPS)
@pytest.mark.parametrize("rule", ["target", "topk", "mass", "labels"])
def test_cakd_identity_every_rule(B, C, T, rule):
    s, t, y = _random_logits(B, C, scale=3.0)
    kw = {
        "target": {"labels": y},
        "topk": {"k": 3},
        "mass": {"tau": 0.7},
        "labels": {"labels": (torch.rand(B, C) < 0.3).index_put((torch.arange(B), y), torch.tensor(True))},
    }[rule]
    S = strong_set(t, rule=rule, temperature=T, **kw)
    c = cakd_components(s, t, S, temperature=T)
    torch.testing.assert_close(
        c["kl"], c["bcd"] + c["p_strong"] * c["scd"] + c["p_weak"] * c["wcd"], rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(c["p_strong"] + c["p_weak"], torch.ones(B), rtol=0, atol=1e-5)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_cakd_with_target_set_is_dkd(T):
    s, t, y = _random_logits(6, 8, scale=2.0)
    c = cakd_components(s, t, strong_set(t, rule="target", labels=y), temperature=T)
    d = dkd_components(s, t, y, temperature=T)
    torch.testing.assert_close(c["bcd"], d["tckd"])
    torch.testing.assert_close(c["wcd"], d["nckd"])
    assert torch.all(c["scd"] == 0)  # S holds one class
    torch.testing.assert_close(
        cakd_loss(s, t, strong_set(t, rule="target", labels=y), temperature=T, alpha=3, beta=8),
        dkd_loss(s, t, y, temperature=T, alpha=1, beta=8),
    )


def test_cakd_edge_sets():
    s, t, _ = _random_logits(4, 6, scale=2.0)
    every = torch.ones(4, 6, dtype=torch.bool)
    c = cakd_components(s, t, every, temperature=2.0)
    assert torch.all(c["bcd"].abs() < 1e-6) and torch.all(c["wcd"] == 0)
    torch.testing.assert_close(c["scd"], c["kl"])
    one_weak = strong_set(t, rule="topk", k=5)  # W holds a single class: WCD = 0
    assert torch.all(cakd_components(s, t, one_weak)["wcd"].abs() < 1e-7)


# ---- independent numpy reference ----------------------------------------------------------------


@pytest.mark.parametrize("B,C", SHAPES)
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("standardize", [False, True])
def test_kd_matches_numpy(B, C, T, standardize):
    s, t, y = _random_logits(B, C, scale=2.0)
    lam = 0.7
    ce, kl, loss = np_kd(_np(s), _np(t), y.numpy(), T, lam, standardize)
    parts = kd_components(s, t, y, temperature=T, standardize=standardize)
    np.testing.assert_allclose(_np(parts["ce"]), ce, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(parts["kl"]), kl, rtol=1e-4, atol=1e-6)
    assert kd_loss(s, t, y, temperature=T, lam=lam, standardize=standardize).item() == pytest.approx(
        loss, rel=1e-4, abs=1e-6
    )
    # without labels: T²·mean(KL), λ not applied
    assert kd_loss(s, t, temperature=T, lam=lam, standardize=standardize).item() == pytest.approx(
        T * T * kl.mean(), rel=1e-4, abs=1e-6
    )
    np.testing.assert_allclose(_np(softmax_t(t, T)), np_softmax(_np(t) / T), rtol=1e-5, atol=1e-7)


def test_standardize_uses_bessel_std():
    # With 3 classes ddof=0 and ddof=1 differ a lot: the loss must follow ddof=1 (torch.std).
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[3.0, 1.0, -2.0]])
    _, kl1, _ = np_kd(_np(s), _np(t), np.array([0]), 2.0, 1.0, standardize=True)
    got = kd_components(s, t, temperature=2.0, standardize=True)["kl"].item()
    assert got == pytest.approx(kl1[0], rel=1e-5)
    zs0 = (_np(s) - _np(s).mean()) / (_np(s).std() + 1e-7)  # ddof = 0
    zt0 = (_np(t) - _np(t).mean()) / (_np(t).std() + 1e-7)
    assert abs(got - np_kl(np_softmax(zt0 / 2), np_softmax(zs0 / 2))[0]) > 0.05 * got


@pytest.mark.parametrize("B,C", SHAPES)
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
def test_dkd_matches_numpy(B, C, T):
    s, t, y = _random_logits(B, C, scale=2.0)
    S = np.zeros((B, C), dtype=bool)
    S[np.arange(B), y.numpy()] = True
    ref = np_split(_np(s), _np(t), S, T)
    d = dkd_components(s, t, y, temperature=T)
    for mine, theirs in (("tckd", "bcd"), ("nckd", "wcd"), ("p_target", "p_strong"), ("kl", "kl")):
        np.testing.assert_allclose(_np(d[mine]), ref[theirs], rtol=1e-4, atol=1e-6)
    want = T * T * np.mean(1.5 * ref["bcd"] + 6 * ref["wcd"])
    assert dkd_loss(s, t, y, temperature=T, alpha=1.5, beta=6).item() == pytest.approx(want, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("B,C", [(3, 5), (7, 10), (4, 100)])
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
@pytest.mark.parametrize(
    "rule,kw",
    [("topk", {"k": 1}), ("topk", {"k": 3}), ("mass", {"tau": 0.5}), ("mass", {"tau": 0.95}), ("mass", {"tau": 1.0})],
)
def test_strong_set_and_cakd_match_numpy(B, C, T, rule, kw):
    s, t, _ = _random_logits(B, C, scale=2.0)
    S_ref = np_strong(_np(t), rule, T=T, **kw)
    S = strong_set(t, rule=rule, temperature=T, **kw)
    assert S.dtype == torch.bool and S.shape == (B, C)
    np.testing.assert_array_equal(S.numpy(), S_ref)
    ref = np_split(_np(s), _np(t), S_ref, T)
    c = cakd_components(s, t, S, temperature=T)
    for key in ref:
        np.testing.assert_allclose(_np(c[key]), ref[key], rtol=1e-4, atol=1e-6)
    want = T * T * np.mean(ref["bcd"] + 0.5 * ref["scd"] + 2.0 * ref["wcd"])
    assert cakd_loss(s, t, S, temperature=T, alpha=0.5, beta=2.0).item() == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_strong_set_rules_details():
    t = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    # ties go to the lower index
    assert strong_set(t, rule="topk", k=1).tolist() == [[False, True, False, False], [True, False, False, False]]
    assert strong_set(t, rule="topk", k=2).tolist() == [[False, True, True, False], [True, True, False, False]]
    # mass: fewest top classes reaching tau, at least one; uniform row needs 2 of 4 for tau = 0.5
    assert strong_set(t, rule="mass", tau=0.5)[1].tolist() == [True, True, False, False]
    assert strong_set(t, rule="mass", tau=1e-9).sum(-1).tolist() == [1, 1]
    assert strong_set(t, rule="mass", tau=1.0).sum(-1).tolist() == [4, 4]
    # the split follows the temperature: at high T the teacher is flatter and needs more classes
    z = torch.tensor([[4.0, 2.0, 1.0, 0.0, -1.0]])
    assert (
        strong_set(z, rule="mass", tau=0.9, temperature=1.0).sum()
        < strong_set(z, rule="mass", tau=0.9, temperature=8.0).sum()
    )
    y = torch.tensor([2, 0])
    assert strong_set(t, rule="target", labels=y).tolist() == F.one_hot(y, 4).bool().tolist()
    mh = torch.tensor([[0, 1, 0, 1], [1, 1, 1, 0]])
    assert strong_set(t, rule="labels", labels=mh).tolist() == mh.bool().tolist()
    assert not strong_set(t.requires_grad_(), rule="topk", k=2).requires_grad


@pytest.mark.parametrize("B,C", [(1, 2), (3, 5), (6, 20)])
@pytest.mark.parametrize("t_norm", [1.0, 2.0])
def test_normkd_matches_numpy(B, C, t_norm):
    s, t, _ = _random_logits(B, C, scale=2.0)
    zs, zt = _np(s), _np(t)
    Tt, Ts = t_norm * np_std(zt), t_norm * np_std(zs)
    kl = np_kl(np_softmax(zt / Tt), np_softmax(zs / Ts))
    parts = normkd_components(s, t, t_norm=t_norm)
    np.testing.assert_allclose(_np(parts["t_teacher"]), Tt[:, 0], rtol=1e-5)
    np.testing.assert_allclose(_np(parts["t_student"]), Ts[:, 0], rtol=1e-5)
    np.testing.assert_allclose(_np(parts["kl"]), kl, rtol=1e-4, atol=1e-7)
    assert normkd_loss(s, t, t_norm=t_norm).item() == pytest.approx(np.mean(kl * Tt[:, 0] ** 2), rel=1e-4, abs=1e-7)


# ---- label smoothing (§12) -----------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_targets_and_loss(eps):
    B, C = 5, 7
    s, _, y = _random_logits(B, C, scale=2.0)
    tgt = label_smoothing_targets(y, C, eps=eps)
    ref = np.full((B, C), eps / C)
    ref[np.arange(B), y.numpy()] += 1 - eps
    np.testing.assert_allclose(tgt.numpy(), ref, rtol=1e-6)
    want = np.mean(-(ref * np.log(np_softmax(_np(s)))).sum(-1))
    assert label_smoothing_loss(s, y, eps=eps).item() == pytest.approx(want, rel=1e-5)
    torch.testing.assert_close(label_smoothing_loss(s, y, eps=eps), F.cross_entropy(s, y, label_smoothing=eps))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_is_kd_from_smoothed_teacher(eps):
    """§12: LS = KD at T = 1, λ = 1, from the teacher with logits log(targets), plus H(targets)."""
    B, C = 6, 5
    y = torch.randint(0, C, (B,))
    tgt = label_smoothing_targets(y, C, eps=eps).double()
    teacher = torch.log(tgt)  # -inf on non-labels when eps = 0
    entropy = -torch.where(tgt > 0, tgt * torch.log(tgt), torch.zeros_like(tgt)).sum(-1).mean()
    s1 = torch.randn(B, C, dtype=torch.float64, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_(True)
    ls = label_smoothing_loss(s1, y, eps=eps)
    kd = kd_loss(s2, teacher, y, temperature=1.0, lam=1.0)
    torch.testing.assert_close(ls - kd, entropy, rtol=0, atol=1e-6)  # targets are float32 (API)
    ls.backward()
    kd.backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=0, atol=1e-7)
    assert torch.isfinite(s2.grad).all()


# ---- extreme gaps and -inf logits ----------------------------------------------------------------


@pytest.mark.parametrize("T", [1.0, 4.0])
@pytest.mark.parametrize("gap_over_T", [95.0, 1500.0])
def test_nckd_exact_at_large_target_gap(T, gap_over_T):
    """Gaps beyond 90/T (float32 mass underflow) and 1000/T (mdistiller's −1000 trick) stay exact."""
    base_t = torch.tensor([[0.0, 1.0, -2.0, 0.5, 2.0]])
    base_s = torch.tensor([[0.0, -1.0, 1.0, 0.3, 0.0]])
    y = torch.tensor([0])
    t, s = base_t.clone(), base_s.clone()
    t[0, 0] = base_t[0, 1:].max() + gap_over_T * T  # the teacher is sure of the target
    s[0, 0] = base_s[0, 1:].max() + gap_over_T * T
    got = dkd_components(s, t, y, temperature=T)["nckd"].item()
    keep = np.array([False, True, True, True, True])
    want = np_set_kl_logspace(_np(t)[0] / T, _np(s)[0] / T, keep)
    assert want > 0.1
    assert got == pytest.approx(want, rel=1e-5)
    # NCKD does not depend on the target logit at all
    assert got == pytest.approx(dkd_components(base_s, base_t, y, temperature=T)["nckd"].item(), rel=1e-5)
    # ...whereas the quotient p_i / Σp has underflowed here: the test discriminates
    p = torch.softmax(t / T, dim=-1)[0, 1:]
    assert p.sum().item() < 1e-30


@pytest.mark.parametrize("gap", [95.0, 1500.0])
def test_cakd_tiny_weak_mass(gap):
    """p_W summed over W (never 1 − p_S) and WCD in log space when the weak mass underflows."""
    t = torch.tensor([[gap, gap - 0.5, 0.0, 1.0, -1.0, 0.5]])
    s = torch.tensor([[gap - 1.0, gap, 0.5, -0.5, 0.0, 0.2]])
    S = strong_set(t, rule="topk", k=2)
    assert S.tolist() == [[True, True, False, False, False, False]]
    c = cakd_components(s, t, S)
    assert all(torch.isfinite(v).all() for v in c.values())
    want_wcd = np_set_kl_logspace(_np(t)[0], _np(s)[0], ~S[0].numpy())
    assert c["wcd"].item() == pytest.approx(want_wcd, rel=1e-5)
    want_scd = np_set_kl_logspace(_np(t)[0], _np(s)[0], S[0].numpy())
    assert c["scd"].item() == pytest.approx(want_scd, rel=1e-5)
    assert c["p_weak"].item() == pytest.approx(math.exp(np_lse(_np(t)[0, 2:]) - np_lse(_np(t)[0])), rel=1e-3, abs=1e-44)
    torch.testing.assert_close(
        c["kl"], c["bcd"] + c["p_strong"] * c["scd"] + c["p_weak"] * c["wcd"], rtol=1e-4, atol=1e-6
    )


def test_neg_inf_logits_add_zero():
    """A class at -inf in both teacher and student is a class that does not exist; no NaN anywhere."""
    s, t, y = _random_logits(4, 5, scale=2.0)
    ninf = torch.full((4, 1), float("-inf"))
    s6, t6 = torch.cat([s, ninf], 1).requires_grad_(), torch.cat([t, ninf], 1)
    S5 = strong_set(t, rule="topk", k=2)
    S6 = torch.cat([S5, torch.zeros(4, 1, dtype=torch.bool)], 1)
    for T in (1.0, 4.0):
        for a, b in (
            (kd_components(s6, t6, y, temperature=T), kd_components(s, t, y, temperature=T)),
            (dkd_components(s6, t6, y, temperature=T), dkd_components(s, t, y, temperature=T)),
            (cakd_components(s6, t6, S6, temperature=T), cakd_components(s, t, S5, temperature=T)),
        ):
            for key in b:
                torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    loss = (
        kd_loss(s6, t6, y) + dkd_loss(s6, t6, y) + cakd_loss(s6, t6, S6) + label_smoothing_loss(s6[:, :5], y, eps=0.1)
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s6.grad).all()
    # teacher-only -inf: the class has p = 0 and adds 0 (finite loss, finite gradient)
    t_masked = t.clone()
    t_masked[:, 3] = float("-inf")
    s_leaf = s.clone().requires_grad_()
    out = kd_loss(s_leaf, t_masked, y) + dkd_loss(s_leaf, t_masked, torch.zeros(4, dtype=torch.long))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(s_leaf.grad).all()


def test_teacher_all_mass_on_target():
    """A teacher with every non-target logit at -inf: NCKD has nothing to match and is 0."""
    t = torch.tensor([[0.0, float("-inf"), float("-inf")]])
    s = torch.tensor([[1.0, 0.0, 2.0]], requires_grad=True)
    d = dkd_components(s, t, torch.tensor([0]))
    assert d["nckd"].item() == 0 and d["p_target"].item() == 1.0
    assert d["kl"].item() == pytest.approx(d["tckd"].item(), rel=1e-6)
    dkd_loss(s, t, torch.tensor([0])).backward()
    assert torch.isfinite(s.grad).all()


# ---- dtypes and gradients ------------------------------------------------------------------------


def test_gradcheck_float64():
    torch.manual_seed(1)
    s = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 4])
    S = strong_set(t, rule="topk", k=2)
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, b, y, temperature=2.0, lam=0.6), (s, t))
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, b, temperature=3.0, standardize=True), (s, t))
    assert torch.autograd.gradcheck(lambda a, b: dkd_loss(a, b, y, temperature=2.0), (s, t))
    assert torch.autograd.gradcheck(lambda a, b: cakd_loss(a, b, S, temperature=2.0, alpha=0.5, beta=2.0), (s, t))
    assert torch.autograd.gradcheck(lambda a, b: normkd_loss(a, b, t_norm=1.5), (s, t))
    assert torch.autograd.gradcheck(lambda a: label_smoothing_loss(a, y, eps=0.2), (s,))


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_computed_in_float32(half):
    s, t, y = _random_logits(4, 6, scale=2.0)
    s_h, t_h = s.to(half).requires_grad_(), t.to(half)
    s_f, t_f = s_h.detach().float(), t_h.float()
    S = strong_set(t_h, rule="mass", tau=0.8)
    cases = [
        (lambda a, b: kd_loss(a, b, y, standardize=True)),
        (lambda a, b: dkd_loss(a, b, y)),
        (lambda a, b: cakd_loss(a, b, S)),
        (lambda a, b: normkd_loss(a, b)),
        (lambda a, b: label_smoothing_loss(a, y, eps=0.1)),
    ]
    for fn in cases:
        low, full = fn(s_h, t_h), fn(s_f, t_f)
        assert low.dtype == torch.float32
        torch.testing.assert_close(low, full, rtol=1e-6, atol=1e-7)
        low.backward()
        assert s_h.grad.dtype == half and torch.isfinite(s_h.grad.float()).all()
        s_h.grad = None
    assert softmax_t(t_h, 2.0).dtype == torch.float32
    comps = dkd_components(s_h, t_h, y)
    assert all(v.dtype == torch.float32 and v.shape == (4,) for v in comps.values())


# ---- argument checks -----------------------------------------------------------------------------

_S = torch.randn(3, 5)
_T = torch.randn(3, 5)
_Y = torch.tensor([0, 1, 4])
_NAN = _S.clone().index_put_((torch.tensor([1]), torch.tensor([2])), torch.tensor(float("nan")))
_INF = _T.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("inf")))
_EMPTY_ROW = torch.tensor([[True, False, False, False, False], [False] * 5, [True] * 5])


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: kd_loss(_S, _T, _Y, temperature=0), r"'temperature'.*> 0.*Got 0"),
        (lambda: kd_loss(_S, _T, _Y, temperature=-1.0), r"'temperature'.*Got -1"),
        (lambda: kd_loss(_S, _T, _Y, temperature=float("nan")), r"'temperature'"),
        (lambda: softmax_t(_T, 0.0), r"'temperature' parameter of softmax_t"),
        (lambda: kd_loss(_S, _T, _Y, lam=1.5), r"'lam'.*\[0.0, 1.0\].*Got 1.5"),
        (lambda: kd_loss(_S, _T, _Y, lam=-0.1), r"'lam'"),
        (lambda: kd_loss(_S, _T, _Y, standardize="yes"), r"'standardize'"),
        (lambda: dkd_loss(_S, _T, _Y, alpha=-1), r"'alpha'.*>= 0.*Got -1"),
        (lambda: dkd_loss(_S, _T, _Y, beta=float("inf")), r"'beta'"),
        (lambda: cakd_loss(_S, _T, _EMPTY_ROW[[0, 2, 2]], alpha=-0.5), r"'alpha'"),
        (lambda: cakd_loss(_S, _T, _EMPTY_ROW[[0, 2, 2]], beta=-2), r"'beta'"),
        (lambda: kd_loss(_S, torch.randn(3, 6), _Y), r"student has 5, the teacher has 6"),
        (lambda: dkd_loss(_S, torch.randn(4, 5), _Y), r"same leading.*\(3, 5\).*\(4, 5\)"),
        (lambda: kd_loss(_S, _T, torch.tensor([0, 1, 5])), r"'labels'.*\[0, 4\].*0 to 5"),
        (lambda: dkd_loss(_S, _T, torch.tensor([0, -1, 2])), r"'labels'.*-1"),
        (lambda: dkd_loss(_S, _T, torch.tensor([0.0, 1.0, 2.0])), r"'labels'.*integer"),
        (lambda: dkd_loss(_S, _T, torch.tensor([0, 1])), r"'labels'.*shape \[3\]"),
        (lambda: kd_loss(_NAN, _T, _Y), r"'student_logits'.*NaN"),
        (lambda: dkd_loss(_S, _INF, _Y), r"'teacher_logits'.*\+inf"),
        (
            lambda: normkd_loss(_S, _T.clone().index_put_((torch.tensor([0]),), torch.tensor(float("-inf")))),
            r"'teacher_logits'",
        ),
        (lambda: kd_loss(torch.zeros(0, 5), torch.zeros(0, 5)), r"'student_logits'.*empty"),
        (lambda: cakd_components(_S, _T, _EMPTY_ROW), r"'strong'.*at least one.*Rows \[1\]"),
        (lambda: cakd_components(_S, _T, _EMPTY_ROW[:, :4]), r"'strong'.*shape \[3, 5\].*\(3, 4\)"),
        (lambda: strong_set(_T, rule="labels", labels=_EMPTY_ROW.long()), r"'labels'.*Rows \[1\]"),
        (lambda: strong_set(_T, rule="labels", labels=torch.full((3, 5), 2)), r"'labels'.*0/1"),
        (lambda: strong_set(_T, rule="labels", labels=_Y), r"'labels'.*\[3, 5\].*rule='target'"),
        (lambda: strong_set(_T, rule="topk", k=0), r"'k'.*\[1, 5\].*Got 0"),
        (lambda: strong_set(_T, rule="topk", k=6), r"'k'.*Got 6"),
        (lambda: strong_set(_T, rule="topk", k=2.5), r"'k'.*integer"),
        (lambda: strong_set(_T, rule="topk"), r"needs 'k'"),
        (lambda: strong_set(_T, rule="mass", tau=0.0), r"'tau'.*\(0.0, 1.0\].*Got 0.0"),
        (lambda: strong_set(_T, rule="mass", tau=1.2), r"'tau'.*Got 1.2"),
        (lambda: strong_set(_T, rule="mass"), r"needs 'tau'"),
        (lambda: strong_set(_T, rule="target"), r"needs 'labels'"),
        (lambda: strong_set(_T, rule="nearest"), r"'rule'.*'target', 'topk', 'mass', 'labels'.*'nearest'"),
        (lambda: strong_set(_T, rule="topk", k=2, temperature=0), r"'temperature'"),
        (lambda: normkd_loss(_S, _T, t_norm=0), r"'t_norm'"),
        (lambda: normkd_loss(_S, torch.ones(3, 5)), r"'teacher_logits'.*rows \[0, 1, 2\].*all equal"),
        (lambda: normkd_loss(torch.randn(3, 1), torch.randn(3, 1)), r"at least 2 classes"),
        (lambda: label_smoothing_loss(_S, _Y, eps=1.5), r"'eps'.*Got 1.5"),
        (lambda: label_smoothing_targets(_Y, 0, eps=0.1), r"'num_classes'"),
        (lambda: label_smoothing_targets(_Y, 4, eps=0.1), r"'labels'.*\[0, 3\]"),
        (lambda: kd_loss(_S.numpy(), _T, _Y), r"'student_logits'.*torch.Tensor.*ndarray"),
        (lambda: kd_loss(_S[0], _T[0]), r"'student_logits'.*2 dimensions"),
    ],
)
def test_bad_arguments_raise(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
