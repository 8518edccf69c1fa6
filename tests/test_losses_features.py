"""Feature and attention losses (METHODS.md §7) against an independent float64 numpy reference,
plus projector, masking, head averaging, gradcheck and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.losses import (
    attention_kl_loss,
    attention_map,
    attention_mse_loss,
    attention_transfer_loss,
    feature_cosine_loss,
    feature_l2_loss,
    make_projector,
)


def _np(x):
    return x.detach().double().numpy()


# ---- numpy reference ----------------------------------------------------------------------------


def np_l2(fs, ft):
    B = fs.shape[0]
    return np.mean(((ft - fs) ** 2).reshape(B, -1).sum(1))


def np_cos(fs, ft):
    a, b = fs.reshape(len(fs), -1), ft.reshape(len(ft), -1)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-8)
    return np.mean(1 - cos)


def np_resize_bilinear(m, out_h, out_w):
    """Bilinear resize of [B, H, W] maps, half-pixel centres (PyTorch's align_corners=False)."""

    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = src - i0
        M = np.zeros((n_out, n_in))
        M[np.arange(n_out), i0] += 1 - w
        M[np.arange(n_out), i1] += w
        return M

    Mh, Mw = weights(m.shape[1], out_h), weights(m.shape[2], out_w)
    return np.einsum("oh,bhw,pw->bop", Mh, m, Mw)


def np_at_map(f, p, size=None):
    m = (np.abs(f) ** p).mean(1)  # [B, H, W]
    if size is not None and m.shape[1:] != size:
        m = np_resize_bilinear(m, *size)
    v = m.reshape(len(m), -1)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def np_attn_kl(a_s, a_t, keep):
    """Mean over batch, heads, kept rows of Σ_j t log(t / s), 0·log 0 = 0."""
    if a_s.shape[1] != a_t.shape[1]:
        a_s, a_t = a_s.mean(1, keepdims=True), a_t.mean(1, keepdims=True)
    total, n = 0.0, 0
    B, H, L, _ = a_t.shape
    for b in range(B):
        for h in range(H):
            for i in range(L):
                if keep[b, i]:
                    t, s = a_t[b, h, i], a_s[b, h, i]
                    nz = t > 0
                    total += float((t[nz] * np.log(t[nz] / s[nz])).sum())
                    n += 1
    return total / n


def np_attn_mse(a_s, a_t, keep):
    if a_s.shape[1] != a_t.shape[1]:
        a_s, a_t = a_s.mean(1, keepdims=True), a_t.mean(1, keepdims=True)
    sq = ((a_s - a_t) ** 2).mean(-1)  # [B, H, L]
    return sq[np.broadcast_to(keep[:, None, :], sq.shape)].mean()


def _attn(B, H, L, causal=False, dtype=torch.float32):
    scores = torch.randn(B, H, L, L, dtype=torch.float64) * 2
    if causal:
        scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1).to(dtype)


# ---- feature losses -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 16), (3, 5, 8), (2, 6, 4, 4)])
def test_feature_losses_match_numpy(shape):
    fs, ft = torch.randn(shape), torch.randn(shape)
    assert feature_l2_loss(fs, ft).item() == pytest.approx(np_l2(_np(fs), _np(ft)), rel=1e-5)
    assert feature_cosine_loss(fs, ft).item() == pytest.approx(np_cos(_np(fs), _np(ft)), rel=1e-5)


@pytest.mark.parametrize(
    "s_shape,t_shape,kind",
    [
        ((4, 8), (4, 16), nn.Linear),
        ((3, 5, 8), (3, 5, 12), nn.Linear),
        ((2, 3, 4, 4), (2, 6, 4, 4), nn.Conv2d),
        ((4, 16), (4, 16), nn.Identity),
        ((2, 6, 4, 4), (2, 6, 4, 4), nn.Identity),
    ],
)
def test_projector_kinds_and_loss_with_projector(s_shape, t_shape, kind):
    g = make_projector(s_shape, t_shape)
    assert type(g) is kind
    fs, ft = torch.randn(s_shape), torch.randn(t_shape)
    if kind is nn.Identity:
        proj = _np(fs)
    else:
        W = _np(g.weight).reshape(g.weight.shape[0], g.weight.shape[1])  # [out, in]
        proj = np.einsum("oc,bchw->bohw", W, _np(fs)) if kind is nn.Conv2d else _np(fs) @ W.T
    assert feature_l2_loss(fs, ft, projector=g).item() == pytest.approx(np_l2(proj, _np(ft)), rel=1e-5)
    assert feature_cosine_loss(fs, ft, projector=g).item() == pytest.approx(np_cos(proj, _np(ft)), rel=1e-5)
    if kind is not nn.Identity:  # the projector learns with the student
        feature_l2_loss(fs, ft, projector=g).backward()
        assert g.weight.grad is not None and torch.isfinite(g.weight.grad).all() and g.weight.grad.abs().sum() > 0


def test_cosine_is_scale_invariant_and_zero_safe():
    fs, ft = torch.randn(3, 10), torch.randn(3, 10)
    torch.testing.assert_close(feature_cosine_loss(5 * fs, ft), feature_cosine_loss(fs, ft))
    assert feature_cosine_loss(fs, 2 * fs).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_cosine_loss(torch.zeros(2, 4), torch.randn(2, 4)).item() == pytest.approx(1.0)


# ---- attention transfer -------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_attention_map_matches_numpy(p):
    f = torch.randn(3, 4, 5, 6)
    a = attention_map(f, p=p)
    assert a.shape == (3, 30)
    np.testing.assert_allclose(_np(a), np_at_map(_np(f), p), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    assert torch.all(attention_map(torch.zeros(2, 3, 4, 4)) == 0)


@pytest.mark.parametrize("s_hw,t_hw", [((6, 6), (6, 6)), ((8, 8), (4, 4)), ((4, 4), (8, 8)), ((5, 7), (3, 4))])
@pytest.mark.parametrize("p", [1, 2])
def test_attention_transfer_matches_numpy(s_hw, t_hw, p):
    fs, ft = torch.randn(2, 3, *s_hw), torch.randn(2, 5, *t_hw)  # channel counts may differ
    want = np.mean((np_at_map(_np(fs), p, size=t_hw) - np_at_map(_np(ft), p)) ** 2)
    assert attention_transfer_loss(fs, ft, p=p).item() == pytest.approx(want, rel=1e-5)


# ---- transformer attention ----------------------------------------------------------------------


@pytest.mark.parametrize("B,Hs,Ht,L", [(2, 4, 4, 5), (3, 2, 6, 7), (1, 1, 1, 3)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_losses_match_numpy(B, Hs, Ht, L, causal, masked):
    a_s, a_t = _attn(B, Hs, L, causal), _attn(B, Ht, L, causal)
    keep = torch.rand(B, L) < 0.6 if masked else torch.ones(B, L, dtype=torch.bool)
    keep[:, 0] = True
    mask = keep if masked else None
    assert attention_kl_loss(a_s, a_t, mask=mask).item() == pytest.approx(
        np_attn_kl(_np(a_s), _np(a_t), keep.numpy()), rel=1e-4, abs=1e-7
    )
    assert attention_mse_loss(a_s, a_t, mask=mask).item() == pytest.approx(
        np_attn_mse(_np(a_s), _np(a_t), keep.numpy()), rel=1e-4, abs=1e-9
    )


def test_attention_kl_causal_zeros_are_nan_free():
    a_t = _attn(2, 3, 6, causal=True)
    a_s = _attn(2, 3, 6, causal=True).requires_grad_()
    assert (a_t == 0).any()
    loss = attention_kl_loss(a_s, a_t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a_s.grad).all()
    assert attention_kl_loss(a_t, a_t).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_mask_ignores_garbage_rows():
    a_s, a_t = _attn(2, 2, 4), _attn(2, 2, 4)
    keep = torch.tensor([[True, True, False, False], [True, False, True, False]])
    junk_s = a_s.clone()
    junk_s[~keep[:, None, :].expand(2, 2, 4)] = 0.0  # dropped rows that are not distributions at all
    torch.testing.assert_close(attention_kl_loss(junk_s, a_t, mask=keep), attention_kl_loss(a_s, a_t, mask=keep))


def test_differing_heads_compare_head_averages():
    a_s, a_t = _attn(2, 2, 5), _attn(2, 8, 5)
    torch.testing.assert_close(
        attention_kl_loss(a_s, a_t), attention_kl_loss(a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True))
    )
    torch.testing.assert_close(
        attention_mse_loss(a_s, a_t), attention_mse_loss(a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True))
    )


def test_gradcheck_float64():
    torch.manual_seed(2)
    fs = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    ft = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: attention_transfer_loss(a, b), (fs, ft))
    xs = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    xt = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(feature_cosine_loss, (xs, xt))
    assert torch.autograd.gradcheck(feature_l2_loss, (xs, xt))
    # through the causal zeros: student scores -> masked softmax -> KL
    future = torch.ones(3, 3, dtype=torch.bool).triu(1)
    scores = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    a_t = _attn(1, 2, 3, causal=True, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: attention_kl_loss(torch.softmax(z.masked_fill(future, float("-inf")), -1), a_t), (scores,)
    )


def test_bf16_computed_in_float32():
    fs, ft = torch.randn(2, 3, 4, 4).bfloat16(), torch.randn(2, 5, 4, 4).bfloat16()
    out = attention_transfer_loss(fs, ft)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, attention_transfer_loss(fs.float(), ft.float()))
    a_s, a_t = _attn(2, 2, 4, dtype=torch.bfloat16), _attn(2, 2, 4, dtype=torch.bfloat16)
    out = attention_kl_loss(a_s, a_t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, attention_kl_loss(a_s.float(), a_t.float()))


# ---- argument checks -----------------------------------------------------------------------------

_A = _attn(2, 2, 4)


@pytest.mark.parametrize(
    "call,pattern",
    [
        (
            lambda: feature_l2_loss(torch.randn(4, 8), torch.randn(4, 16)),
            r"same shape.*\(4, 8\).*\(4, 16\).*make_projector",
        ),
        (lambda: feature_l2_loss(torch.randn(4, 8), torch.randn(3, 8)), r"same batch size.*4.*3"),
        (
            lambda: feature_cosine_loss(torch.randn(4, 8), torch.full((4, 8), float("nan"))),
            r"'teacher_features'.*finite",
        ),
        (lambda: feature_l2_loss(torch.zeros(0, 8), torch.zeros(0, 8)), r"'student_features'.*empty"),
        (lambda: feature_l2_loss(torch.randn(4, 8), torch.randn(4, 8), projector="linear"), r"'projector'"),
        (lambda: make_projector((2, 3, 4, 4), (2, 6, 8, 8)), r"spatial sizes.*\(4, 4\).*\(8, 8\)"),
        (lambda: make_projector((2, 3), (2, 6, 8, 8)), r"same number of dimensions"),
        (lambda: make_projector((8,), (16,)), r"'student_shape'.*with the batch dimension"),
        (lambda: attention_map(torch.randn(2, 3, 4)), r"'fmap'.*4 dimensions"),
        (lambda: attention_map(torch.randn(2, 3, 4, 4), p=0), r"'p'.*> 0"),
        (lambda: attention_transfer_loss(torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4)), r"same batch size"),
        (lambda: attention_kl_loss(_A, torch.randn(2, 2, 4, 4)), r"'teacher_attn'.*probabilities"),
        (lambda: attention_kl_loss(_A * 2, _A), r"'student_attn'.*sum to 1.*Samples \[0, 1\]"),
        (lambda: attention_kl_loss(_A, _attn(2, 2, 5)), r"same query and key positions"),
        (lambda: attention_kl_loss(_A, _A, mask=torch.zeros(2, 4, dtype=torch.bool)), r"'mask'.*keeps no query row"),
        (lambda: attention_kl_loss(_A, _A, mask=torch.ones(2, 5, dtype=torch.bool)), r"'mask'.*\[2, 4\].*\(2, 5\)"),
        (lambda: attention_mse_loss(_A, _A.masked_fill(_A < 0.1, float("-inf"))), r"'teacher_attn'.*finite"),
    ],
)
def test_bad_arguments_raise(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
