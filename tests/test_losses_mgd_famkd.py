"""MGD (§14.1) and FAM-KD (§14.4) against independent float64 numpy computations on seeded random
inputs, with the identities their sections list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.losses.famkd import FAMModule, fam_kd_loss, fam_warmup, highpass_keep, highpass_radius
from kdcore.losses.mgd import MGDHead, mgd_alpha, mgd_loss, mgd_mask
from kdcore.validation import InvalidParameterError

# ---- independent numpy references --------------------------------------------------------------------


def _np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Cross-correlation, stride 1, 'same' zero padding: x [N, I, H, W], w [O, I, k, k] -> [N, O, H, W]."""
    k = w.shape[-1]
    p = k // 2
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((n, w.shape[0], h, wd))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy : dy + h, dx : dx + wd]  # [N, I, H, W]
            out += np.einsum("nihw,oi->nohw", patch, w[:, :, dy, dx])
    return out + (0 if b is None else b[None, :, None, None])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _np_head(head: MGDHead, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    a = x if isinstance(head.align, nn.Identity) else _np_conv(x, _np(head.align.weight), _np(head.align.bias))
    c1, c2 = head.generator[0], head.generator[2]
    hdn = np.maximum(_np_conv(a * m, _np(c1.weight), _np(c1.bias)), 0.0)
    return _np_conv(hdn, _np(c2.weight), _np(c2.bias))


# ---- MGD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["channel", "spatial"])
def test_mgd_matches_float64_reference_with_alignment_before_masking(mask):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 7, 5, 6, generator=g)
    head = MGDHead(4, 7)
    m = mgd_mask((3, 7, 5, 6), 0.4, mask, rng=torch.Generator().manual_seed(2))
    got = mgd_loss(s, t, head.generator, head.align, alpha=0.3, mask=mask, mask_tensor=m)
    want = 0.3 * ((_np_head(head, _np(s), _np(m)) - _np(t)) ** 2).sum() / 3
    assert got.item() == pytest.approx(want, rel=1e-5)
    drawn = mgd_loss(
        s, t, head.generator, head.align, alpha=0.3, lambda_mask=0.4, mask=mask, rng=torch.Generator().manual_seed(2)
    )
    assert drawn.item() == pytest.approx(got.item(), rel=1e-6)  # the same seeded draw


def test_mgd_ratio_zero_and_identity_generator_equals_feature_l2_sum_form():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 6, 3, 3, generator=g), torch.randn(4, 6, 3, 3, generator=g)
    got = mgd_loss(s, t, nn.Identity(), alpha=1.0, lambda_mask=0.0)
    want = ((_np(s) - _np(t)) ** 2).reshape(4, -1).sum(axis=1).mean()
    assert got.item() == pytest.approx(want, rel=1e-6)
    from kdcore.losses import feature_l2_loss

    assert got.item() == pytest.approx(feature_l2_loss(s, t).item(), rel=1e-6)


def test_mgd_identity_centre_generator_on_nonnegative_student():
    g = torch.Generator().manual_seed(4)
    s, t = torch.rand(2, 5, 4, 4, generator=g), torch.randn(2, 5, 4, 4, generator=g)
    head = MGDHead(5, 5)
    with torch.no_grad():
        for conv in (head.generator[0], head.generator[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(5)
    m = mgd_mask((2, 5, 4, 4), 0.5, "spatial", rng=torch.Generator().manual_seed(5))
    got = mgd_loss(s, t, head.generator, alpha=0.7, mask="spatial", mask_tensor=m)
    S, T, M = _np(s), _np(t), np.broadcast_to(_np(m), (2, 5, 4, 4))
    want = 0.7 / 2 * (((S - T) ** 2)[M == 1].sum() + (T**2)[M == 0].sum())
    assert got.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("lam", [0.15, 0.65])
def test_mgd_mask_keeps_one_minus_lambda(lam):
    m = mgd_mask((400, 64, 1, 1), lam, "channel", rng=torch.Generator().manual_seed(6))
    assert m.shape == (400, 64, 1, 1) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(m.mean().item() - (1 - lam)) < 0.02
    assert mgd_mask((2, 3, 4, 5), lam, "spatial").shape == (2, 1, 4, 5)


def test_mgd_alpha_keeps_the_authors_per_element_weight():
    assert mgd_alpha(7e-5, (64, 4, 4)) == pytest.approx(7e-5 * 512 * 49 / 1024)
    assert mgd_alpha(7e-5, (8, 64, 4, 4)) == pytest.approx(1.715e-3, rel=1e-3)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(s=(2, 3, 4, 4), t=(2, 3, 5, 4)), "share N, H and W"),
        (dict(s=(2, 3, 4, 4), t=(2, 5, 4, 4)), "align"),
        (dict(s=(2, 3, 4), t=(2, 3, 4)), "4 dimensions"),
        (dict(lambda_mask=1.5), "lambda_mask"),
        (dict(lambda_mask=-0.1), "lambda_mask"),
        (dict(alpha=-1.0), "alpha"),
        (dict(mask="pixel"), "mask"),
        (dict(mask_tensor=torch.ones(2, 1, 4, 4)), "shape"),
        (dict(mask_tensor=torch.full((2, 3, 1, 1), 0.5)), "only 0 and 1"),
        (dict(s=(0, 3, 4, 4), t=(0, 3, 4, 4)), "empty"),
        (dict(nan=True), "finite"),
    ],
)
def test_mgd_refuses_bad_input(kw, match):
    s, t = torch.randn(*kw.pop("s", (2, 3, 4, 4))), torch.randn(*kw.pop("t", (2, 3, 4, 4)))
    if kw.pop("nan", False):
        s[0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidParameterError, match=match):
        mgd_loss(s, t, nn.Identity(), **kw)


# ---- FAM-KD ---------------------------------------------------------------------------------------


def _code_removed(n: int, r: int) -> np.ndarray:
    """The authors' shift / zero centre / unshift along one axis: roll_n moves the first ⌈n/2⌉ entries to
    the end (fftshift), [cy−r, cy+r) is zeroed (cy = ⌊n/2⌋), then the first ⌊n/2⌋ go to the end."""
    idx = np.arange(n)
    shifted = np.concatenate([idx[(n + 1) // 2 :], idx[: (n + 1) // 2]])
    cy = n // 2
    return np.sort(shifted[cy - r : cy + r])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 21, 32, 33])
@pytest.mark.parametrize("cuton", [0.1, 0.25, 0.5, 1.0])
def test_fam_highpass_index_set_matches_numpy_fft_frequencies_on_odd_and_even_sizes(n, cuton):
    r = int(cuton * (n // 2))
    assert highpass_radius(n, cuton) == r
    freq = np.rint(np.fft.fftfreq(n) * n).astype(int)  # the signed frequency of each FFT index
    low = np.flatnonzero((freq >= -r) & (freq <= r - 1))  # {−r..r−1} mod n
    assert low.tolist() == _code_removed(n, r).tolist()
    keep = highpass_keep(n, 6, cuton).numpy()
    rw = int(cuton * 3)
    freq_w = np.rint(np.fft.fftfreq(6) * 6).astype(int)
    low_w = (freq_w >= -rw) & (freq_w <= rw - 1)
    want = ~(np.isin(np.arange(n), low)[:, None] & low_w[None, :])
    assert (keep == want).all() and (~keep).sum() == 4 * r * rw


def _np_fam(m: FAMModule, x: np.ndarray) -> np.ndarray:
    k = _np(m.k_real) + 1j * _np(m.k_imag)  # [C_s, C_t, H, W]
    xf = np.fft.fft2(x, norm="ortho")
    y = np.zeros((x.shape[0], k.shape[1], *x.shape[2:]), dtype=complex)
    for o in range(k.shape[1]):  # explicit per-frequency channel mixing
        for i in range(k.shape[0]):
            y[:, o] += xf[:, i] * k[i, o]
    y *= m.keep.numpy()
    glob = np.fft.ifft2(y, norm="ortho").real
    return m.gamma1.item() * glob + m.gamma2.item() * _np_conv(x, _np(m.local.weight), _np(m.local.bias))


@pytest.mark.parametrize(("h", "w", "cuton"), [(8, 8, 0.5), (7, 6, 0.5), (5, 9, 0.1)])
def test_fam_module_and_loss_match_float64_reference(h, w, cuton):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    x, t = torch.randn(3, 4, h, w, generator=g), torch.rand(3, 5, h, w, generator=g)
    m = FAMModule(4, 5, h, w, cuton=cuton)
    with torch.no_grad():
        m.gamma1.fill_(0.8)
        m.gamma2.fill_(0.3)
    out = _np_fam(m, _np(x))
    np.testing.assert_allclose(_np(m(x)), out, rtol=1e-4, atol=1e-5)
    mu, var = out.mean(axis=(0, 2, 3), keepdims=True), out.var(axis=(0, 2, 3), keepdims=True)
    want = 0.5 * 0.25 * (np.maximum((out - mu) / np.sqrt(var + 1e-5), 0) - _np(t)) ** 2
    got = fam_kd_loss([x], [t], [m], weight=0.5, epoch=5, warmup_epochs=20)
    assert got.item() == pytest.approx(want.mean(), rel=1e-4)


def test_fam_identities_round_trip_zero_filter_and_constant_map():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 8, 8, generator=g)
    m = FAMModule(3, 3, 8, 8, cuton=0.0)
    with torch.no_grad():
        m.k_real.zero_()
        m.k_imag.zero_()
        m.k_real[:, :, :, :] = torch.eye(3)[:, :, None, None]
        m.gamma1.fill_(1.0)
        m.gamma2.fill_(0.0)
    torch.testing.assert_close(m(x), x, atol=1e-5, rtol=1e-5)  # identity filter, c = 0: ortho round trip
    assert m.removed == 0
    hp = FAMModule(3, 3, 8, 8, cuton=0.5)
    hp.load_state_dict(m.state_dict())
    assert hp.removed == 16  # the 4×4 low block of an 8×8 map
    const = torch.full((2, 3, 8, 8), 2.5)
    torch.testing.assert_close(hp(const), torch.zeros_like(const), atol=1e-5, rtol=0)
    z = FAMModule(3, 4, 8, 8)
    with torch.no_grad():
        z.k_real.zero_()
        z.k_imag.zero_()
    torch.testing.assert_close(z(x), 0.5 * z.local(x))  # zero filter leaves the local branch


def test_fam_resizes_the_student_nearest_and_ramps_the_weight():
    m = FAMModule(2, 3, 8, 8)
    x = torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(m.resize(x), x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    assert [fam_warmup(e, 20) for e in (1, 10, 20, 40)] == [0.05, 0.5, 1.0, 1.0]
    assert fam_warmup(None, 20) == 1.0 and fam_warmup(3, 0) == 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: FAMModule(2, 3, 8, 8, cuton=1.5), "cuton"),
        (lambda: FAMModule(2, 3, 8, 8, cuton=-0.1), "cuton"),
        (lambda: fam_kd_loss([torch.randn(2, 2, 8, 8)], [], [FAMModule(2, 3, 8, 8)]), "one length"),
        (lambda: fam_kd_loss([torch.randn(2, 2, 8, 8)], [torch.randn(3, 3, 8, 8)], [FAMModule(2, 3, 8, 8)]), "batch"),
        (lambda: fam_kd_loss([torch.randn(2, 2, 8, 8)], [torch.randn(2, 3, 4, 4)], [FAMModule(2, 3, 8, 8)]), "built"),
        (lambda: fam_kd_loss([torch.randn(2, 5, 8, 8)], [torch.randn(2, 3, 8, 8)], [FAMModule(2, 3, 8, 8)]), "built"),
        (
            lambda: fam_kd_loss(
                [torch.full((2, 2, 8, 8), float("nan"))], [torch.randn(2, 3, 8, 8)], [FAMModule(2, 3, 8, 8)]
            ),
            "finite",
        ),
    ],
)
def test_fam_refuses_bad_input(call, match):
    with pytest.raises(InvalidParameterError, match=match):
        call()
