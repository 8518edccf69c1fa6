"""kdcore.divergences against METHODS.md §6: test vectors, identities, an independent float64 numpy
reference, gradients, masking, chunking, low-precision inputs, -inf entries and validation."""

import math

import numpy as np
import pytest
import torch

import kdcore._divergence_chunks as chunks
from kdcore._divergence_kernels import akl_head_weight
from kdcore.divergences import KINDS, divergence_loss, token_divergence

PARAMS = {"jsd": {"beta": 0.3}, "skew_fkl": {"alpha": 0.2}, "skew_rkl": {"alpha": 0.2}, "akl": {"mu": 0.3}}


# ---- independent float64 numpy reference, written from METHODS.md §6 -------------------------------


def np_softmax(z, temperature):
    z = np.asarray(z, dtype=np.float64) / temperature
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def np_kl(a, b):
    """KL(a ‖ b) with 0·log 0 = 0 (entries where a is 0 add nothing)."""
    keep = a > 0
    return float(np.sum(a[keep] * (np.log(a[keep]) - np.log(b[keep]))))


def np_akl_weight(p, q, mu):
    order = np.argsort(-p, kind="stable")  # descending, ties to the lower index
    head = np.cumsum(p[order]) <= mu
    head[0] = True
    gap = np.abs(p - q)[order]
    g_head, g_tail = gap[head].sum(), gap[~head].sum()
    return 0.5 if g_head + g_tail == 0 else g_head / (g_head + g_tail)


def np_divergence_row(kind, s, t, *, temperature=1.0, beta=0.5, alpha=0.1, mu=0.5):
    q, p = np_softmax(s, temperature), np_softmax(t, temperature)
    if kind == "fkl":
        return np_kl(p, q)
    if kind == "rkl":
        return np_kl(q, p)
    if kind == "jsd":
        m = beta * p + (1 - beta) * q
        return beta * np_kl(p, m) + (1 - beta) * np_kl(q, m)
    if kind == "tvd":
        return 0.5 * np.abs(p - q).sum()
    if kind == "skew_fkl":
        return np_kl(p, alpha * p + (1 - alpha) * q)
    if kind == "skew_rkl":
        return np_kl(q, alpha * q + (1 - alpha) * p)
    if kind == "akl":
        w = np_akl_weight(p, q, mu)
        return w * np_kl(p, q) + (1 - w) * np_kl(q, p)
    if kind == "uld":
        n = max(p.size, q.size)
        ps = np.zeros(n)
        qs = np.zeros(n)
        ps[: p.size] = np.sort(p)[::-1]
        qs[: q.size] = np.sort(q)[::-1]
        return float(np.abs(ps - qs).sum())
    raise KeyError(kind)


def np_divergence(kind, student, teacher, **params):
    """[..., V] arrays -> [...] float64, one row at a time."""
    s = np.asarray(student, dtype=np.float64)
    t = np.asarray(teacher, dtype=np.float64)
    lead = s.shape[:-1]
    s2, t2 = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    out = np.array([np_divergence_row(kind, a, b, **params) for a, b in zip(s2, t2)])
    return out.reshape(lead)


# ---- test vectors ---------------------------------------------------------------------------------
VECTOR_CASES = [
    ("fkl", "token_fkl", {}),
    ("rkl", "token_rkl", {}),
    ("jsd", "token_jsd_beta0.5", {}),
    ("jsd", "token_jsd_beta0.9", {"beta": 0.9}),
    ("tvd", "token_tvd", {}),
    ("skew_fkl", "token_skew_fkl_alpha0.1", {"alpha": 0.1}),
    ("skew_rkl", "token_skew_rkl_alpha0.1", {"alpha": 0.1}),
    ("akl", "token_akl_mu0.5", {"mu": 0.5}),
    ("uld", "token_uld", {}),
]


def test_vector_cases_cover_every_kind():
    assert {kind for kind, _, _ in VECTOR_CASES} == set(KINDS)


@pytest.mark.parametrize("kind,key,params", VECTOR_CASES)
def test_matches_test_vectors(vectors, kind, key, params):
    s = torch.tensor(vectors["inputs"]["student_logits"])
    t = torch.tensor(vectors["inputs"]["teacher_logits"])
    got = token_divergence(s, t, kind, **params)
    assert got.shape == (3,) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), vectors["values"][key], rtol=2e-6, atol=1e-7)
    # float64 inputs are computed in float64
    s64 = torch.tensor(vectors["inputs"]["student_logits"], dtype=torch.float64)
    t64 = torch.tensor(vectors["inputs"]["teacher_logits"], dtype=torch.float64)
    got64 = token_divergence(s64, t64, kind, **params)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), vectors["values"][key], rtol=1e-12, atol=1e-14)


# ---- the independent reference on random inputs -----------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,temperature", [((7,), 1.0), ((5, 11), 0.5), ((2, 3, 13), 2.5), ((1, 4, 2, 6), 1.7)])
def test_matches_numpy_reference(kind, shape, temperature):
    s = torch.randn(shape) * 3
    t = torch.randn(shape) * 3
    params = PARAMS.get(kind, {})
    want = np_divergence(kind, s.numpy(), t.numpy(), temperature=temperature, **params)
    got = token_divergence(s, t, kind, temperature=temperature, **params)
    assert tuple(got.shape) == shape[:-1]
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6)
    got64 = token_divergence(s.double(), t.double(), kind, temperature=temperature, **params)
    np.testing.assert_allclose(got64.numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("vs,vt", [(9, 14), (14, 9)])
def test_uld_across_vocabularies_matches_reference(vs, vt):
    s, t = torch.randn(4, vs) * 2, torch.randn(4, vt) * 2
    want = np_divergence("uld", s.numpy(), t.numpy(), temperature=1.3)
    got = token_divergence(s, t, "uld", temperature=1.3)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6)


# ---- identities -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_zero_at_equality_and_nonnegative(kind, temperature):
    z = torch.randn(6, 20) * 4
    same = token_divergence(z, z.clone(), kind, temperature=temperature, **PARAMS.get(kind, {}))
    assert same.abs().max() < 1e-6
    other = token_divergence(torch.randn(6, 20) * 4, z, kind, temperature=temperature, **PARAMS.get(kind, {}))
    assert (other >= 0).all() and (other > 1e-4).all()


def test_jsd_symmetric_at_half_and_bounded_by_ln2():
    s, t = torch.randn(8, 30) * 3, torch.randn(8, 30) * 3
    a = token_divergence(s, t, "jsd", beta=0.5)
    torch.testing.assert_close(a, token_divergence(t, s, "jsd", beta=0.5), rtol=1e-6, atol=1e-7)
    # general beta: swapping student and teacher swaps beta and 1 - beta
    torch.testing.assert_close(
        token_divergence(s, t, "jsd", beta=0.2), token_divergence(t, s, "jsd", beta=0.8), rtol=1e-5, atol=1e-7
    )
    # disjoint supports reach the bound ln 2 and never exceed it
    far_s = torch.full((2, 6), -60.0)
    far_t = torch.full((2, 6), -60.0)
    far_s[:, 0] = 60.0
    far_t[:, 1] = 60.0
    far = token_divergence(far_s, far_t, "jsd", beta=0.5)
    assert (far <= math.log(2) + 1e-6).all() and (far > math.log(2) - 1e-5).all()
    assert (a <= math.log(2)).all()


def test_skew_with_alpha_zero_is_the_plain_kl():
    s, t = torch.randn(5, 17) * 2, torch.randn(5, 17) * 2
    torch.testing.assert_close(token_divergence(s, t, "skew_fkl", alpha=0.0), token_divergence(s, t, "fkl"))
    torch.testing.assert_close(token_divergence(s, t, "skew_rkl", alpha=0.0), token_divergence(s, t, "rkl"))
    # and skewing strictly shrinks it
    assert (token_divergence(s, t, "skew_fkl", alpha=0.5) < token_divergence(s, t, "fkl")).all()


def test_tvd_and_uld_are_bounded():
    s, t = torch.randn(6, 9) * 10, torch.randn(6, 9) * 10
    assert (token_divergence(s, t, "tvd") <= 1 + 1e-6).all()
    assert (token_divergence(s, t, "uld") <= 2 + 1e-6).all()
    # uld ignores which token holds which probability: permuting the student's vocabulary changes nothing
    perm = torch.randperm(9)
    torch.testing.assert_close(token_divergence(s[:, perm], t, "uld"), token_divergence(s, t, "uld"))


# ---- AKL's head/tail rule -----------------------------------------------------------------------------
def _akl_expected(p, q, head):
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    gap = np.abs(p - q)
    w = gap[head].sum() / gap.sum()
    return w * np_kl(p, q) + (1 - w) * np_kl(q, p)


@pytest.mark.parametrize(
    "mu,head",
    [
        (0.5, [1]),  # 0.4 then 0.6: the token that crosses mu goes to the tail (not DSKD's rule)
        (0.65, [1, 0]),  # tie between ids 0, 2, 3 at 0.2: the lower index joins the head
        (0.3, [1]),  # the first entry is in the head even above mu
    ],
)
def test_akl_head_rule(mu, head):
    p = [0.2, 0.4, 0.2, 0.2]
    q = [0.1, 0.3, 0.25, 0.35]
    got = token_divergence(
        torch.tensor(q, dtype=torch.float64).log(), torch.tensor(p, dtype=torch.float64).log(), "akl", mu=mu
    )
    assert got.item() == pytest.approx(_akl_expected(p, q, head), rel=1e-12)


def test_akl_weight_is_half_when_both_gaps_vanish_and_carries_no_student_gradient():
    p = torch.softmax(torch.randn(3, 8), -1)
    assert torch.equal(akl_head_weight(p, p.clone(), 0.5), torch.full((3,), 0.5))
    s = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 8, dtype=torch.float64)
    token_divergence(s, t, "akl", mu=0.4).sum().backward()
    ps, qs = torch.softmax(t, -1), torch.softmax(s.detach(), -1)
    w = akl_head_weight(ps, qs, 0.4)  # [3], held constant
    s2 = s.detach().clone().requires_grad_()
    mix = w * token_divergence(s2, t, "fkl") + (1 - w) * token_divergence(s2, t, "rkl")
    mix.sum().backward()
    torch.testing.assert_close(s.grad, s2.grad, rtol=1e-10, atol=1e-12)


# ---- gradients --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fkl", "rkl", "jsd", "tvd", "skew_fkl", "skew_rkl", "uld"])
def test_gradcheck_float64(kind):
    s = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    params = PARAMS.get(kind, {})
    assert torch.autograd.gradcheck(lambda a, b: token_divergence(a, b, kind, temperature=1.5, **params), (s, t))
    # through the chunked, checkpointed path as well
    assert torch.autograd.gradcheck(lambda a, b: token_divergence(a, b, kind, chunk_size=2, **params), (s, t))


# ---- masking ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_masked_positions_never_count(kind):
    s, t = torch.randn(2, 5, 12) * 2, torch.randn(2, 5, 12) * 2
    labels = torch.randint(0, 12, (2, 5))
    labels[0, 1] = labels[1, 3] = labels[1, 4] = -100
    kept = labels != -100
    want = token_divergence(s, t, kind)[kept].mean()
    # extreme and even invalid values at the masked positions change nothing
    s_bad, t_bad = s.clone(), t.clone()
    s_bad[0, 1] = 1e30
    s_bad[1, 3, :] = float("nan")
    t_bad[1, 3, :] = -float("inf")
    t_bad[1, 4, 0] = 1e30
    s_bad.requires_grad_()
    got = divergence_loss(s_bad, t_bad, kind, labels=labels)
    torch.testing.assert_close(got, want)
    got.backward()
    assert torch.isfinite(s_bad.grad).all()
    assert (s_bad.grad[~kept] == 0).all() and (s_bad.grad[kept] != 0).any()
    # the same through an attention mask (0/1 integers), a bool mask, and both together
    torch.testing.assert_close(divergence_loss(s, t, kind, mask=kept.long()), want)
    torch.testing.assert_close(divergence_loss(s, t, kind, mask=kept), want)
    attn = torch.ones(2, 5, dtype=torch.long)
    attn[0, 4] = 0
    both = kept & attn.bool()
    torch.testing.assert_close(
        divergence_loss(s, t, kind, mask=attn, labels=labels), token_divergence(s, t, kind)[both].mean()
    )


def test_loss_without_mask_is_the_mean_and_params_pass_through():
    s, t = torch.randn(3, 4, 10), torch.randn(3, 4, 10)
    torch.testing.assert_close(
        divergence_loss(s, t, "jsd", beta=0.7, temperature=2.0),
        token_divergence(s, t, "jsd", beta=0.7, temperature=2.0).mean(),
    )


# ---- chunking ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_unchunked_values_and_gradients(kind):
    params = PARAMS.get(kind, {})
    s0, t0 = torch.randn(2, 5, 40) * 3, torch.randn(2, 5, 40) * 3
    labels = torch.randint(0, 40, (2, 5))
    labels[0, 2] = labels[1, 0] = -100

    def run(chunk_size, masked):
        s, t = s0.clone().requires_grad_(), t0.clone().requires_grad_()
        if masked:
            v = divergence_loss(s, t, kind, labels=labels, chunk_size=chunk_size, temperature=1.5, **params)
        else:
            v = token_divergence(s, t, kind, chunk_size=chunk_size, temperature=1.5, **params)
        (v * torch.arange(1, v.numel() + 1).reshape(v.shape)).sum().backward()
        return v.detach(), s.grad, t.grad

    for masked in (False, True):
        whole = run(None, masked)
        for chunk_size in (1, 3, 7):
            for a, b in zip(whole, run(chunk_size, masked)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float32 SIMD tails differ


def test_automatic_chunk_and_bounded_backward_memory(monkeypatch):
    """With a gradient and several chunks, autograd keeps no [positions, V] intermediate."""
    s0, t0 = torch.randn(64, 500), torch.randn(64, 500)

    def saved_bytes(chunk_size):
        s = s0.clone().requires_grad_()
        outside = []

        def pack(x):  # bytes of saved tensors that are not views of the inputs
            if x.untyped_storage().data_ptr() not in (s.untyped_storage().data_ptr(), t0.untyped_storage().data_ptr()):
                outside.append(x.numel() * x.element_size())
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            v = token_divergence(s, t0, "jsd", chunk_size=chunk_size)
        v.sum().backward()
        return sum(outside), v.detach(), s.grad

    full, v_full, g_full = saved_bytes(None)
    monkeypatch.setattr(chunks, "AUTO_CHUNK_ELEMENTS", 8 * 500)  # auto-pick 8 rows
    assert chunks.auto_chunk_rows(500) == 8
    small, v_chunk, g_chunk = saved_bytes(None)
    assert full >= 4 * s0.numel() * 4  # unchunked: several full-size float32 intermediates
    assert small <= 64 * 8  # chunked: at most per-position scalars
    torch.testing.assert_close(v_chunk, v_full, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g_chunk, g_full, rtol=1e-6, atol=1e-8)


# ---- low precision and -inf -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_low_precision_inputs_are_computed_in_float32(dtype, kind):
    s = (torch.randn(4, 3, 50) * 3).to(dtype)
    t = (torch.randn(4, 3, 50) * 3).to(dtype)
    params = PARAMS.get(kind, {})
    got = token_divergence(s, t, kind, temperature=0.7, **params)
    assert got.dtype == torch.float32
    want = np_divergence(kind, s.float().numpy(), t.float().numpy(), temperature=0.7, **params)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6)
    s.requires_grad_()
    divergence_loss(s, t, kind, **params).backward()
    assert s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()


@pytest.mark.parametrize("kind", KINDS)
def test_neg_inf_entries_shared_by_both_add_nothing(kind):
    s, t = torch.randn(6, 10) * 2, torch.randn(6, 10) * 2
    dead = torch.tensor([1, 4, 7])
    live = torch.tensor([i for i in range(10) if i not in dead.tolist()])
    s_m, t_m = s.clone(), t.clone()
    s_m[:, dead] = -float("inf")
    t_m[:, dead] = -float("inf")
    s_m.requires_grad_()
    got = token_divergence(s_m, t_m, kind, temperature=0.8, **PARAMS.get(kind, {}))
    want = token_divergence(s[:, live], t[:, live], kind, temperature=0.8, **PARAMS.get(kind, {}))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    got.sum().backward()
    assert torch.isfinite(s_m.grad).all() and (s_m.grad[:, dead] == 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_neg_inf_in_teacher_only_gives_no_nan(kind):
    s, t = torch.randn(4, 8), torch.randn(4, 8)
    t[:, :3] = -float("inf")
    s.requires_grad_()
    got = token_divergence(s, t, kind, **PARAMS.get(kind, {}))
    assert not torch.isnan(got).any()
    got.sum().backward()
    assert torch.isfinite(s.grad).all()
    if kind in ("fkl", "jsd", "tvd", "skew_fkl", "skew_rkl", "uld"):  # finite in exact arithmetic too
        want = np_divergence(kind, s.detach().numpy(), t.numpy(), **PARAMS.get(kind, {}))
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=2e-5, atol=2e-6)
    else:  # the student puts mass where the teacher has none: KL(q ‖ p) is infinite
        assert (got > 1e30).all()


# ---- vocabulary alignment ---------------------------------------------------------------------------
def test_vocabulary_mismatch_message_and_truncate_option():
    s, t = torch.randn(2, 3, 12), torch.randn(2, 3, 10)
    with pytest.raises(ValueError) as err:
        token_divergence(s, t, "fkl")
    msg = str(err.value)
    assert "12" in msg and "10" in msg and "uld" in msg and "align='truncate'" in msg
    torch.testing.assert_close(token_divergence(s, t, "fkl", align="truncate"), token_divergence(s[..., :10], t, "fkl"))
    torch.testing.assert_close(
        divergence_loss(t, s, "rkl", align="truncate"), token_divergence(t, s[..., :10], "rkl").mean()
    )
    with pytest.raises(ValueError, match="'align'"):
        token_divergence(s, t, "fkl", align="pad")
