"""The MGD and FAM-KD views (analyses/feature_heads.py): their data against float64 numpy, the figure
data, and the α·L_MGD / CE ratio read from a run's step metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import feature_heads as fh
from kdcore.losses.famkd import FAMModule
from kdcore.losses.mgd import MGDHead, mgd_mask
from kdcore.validation import InvalidParameterError
from tests.test_losses_mgd_famkd import _np, _np_head


def _feats(cs=3, ct=5, h=4, w=4, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, cs, h, w, generator=g), torch.randn(n, ct, h, w, generator=g), torch.randn(n, 6, generator=g)


@pytest.mark.parametrize("mask", ["channel", "spatial"])
def test_mgd_view_matches_numpy_and_the_figure_shows_it(mask):
    s, t, logits = _feats()
    y = torch.tensor([0, 3, 5])
    torch.manual_seed(4)
    head = MGDHead(3, 5)
    v = fh.mgd_view(
        s, t, logits, y, head, alpha=0.01, scale_alpha=False, lambda_mask=0.5, mask=mask, sample=1, channel=2, seed=7
    )
    m = _np(mgd_mask((3, 5, 4, 4), 0.5, mask, rng=torch.Generator().manual_seed(7)))
    gen = _np_head(head, _np(s), m)
    a = (
        np.einsum("nihw,oi->nohw", _np(s), _np(head.align.weight)[:, :, 0, 0])
        + _np(head.align.bias)[None, :, None, None]
    )
    np.testing.assert_allclose(v.masked, (a * m)[1, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v.generated, gen[1, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v.teacher, _np(t)[1, 2])
    want = 0.01 * ((gen - _np(t)) ** 2).sum() / 3
    z = _np(logits) - _np(logits).max(1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(3), y.numpy()].mean()
    assert v.mgd == pytest.approx(want, rel=1e-5) and v.ce == pytest.approx(ce, rel=1e-5)
    assert v.ratio == pytest.approx(want / ce, rel=1e-5)
    fig = fh.mgd_figure(v)
    zs = [np.asarray(tr.z) for tr in fig.data]
    assert len(zs) == 3 and all(tr.type == "heatmap" for tr in fig.data)
    for got, ref in zip(zs, (v.masked, v.generated, v.teacher)):
        np.testing.assert_allclose(got, ref)
    assert f"{v.ratio:.3g}" in fig.layout.title.text and mask in fig.layout.title.text


def test_mgd_view_defaults_rescale_alpha_and_refuse_bad_indices():
    s, t, logits = _feats(ct=64)
    v = fh.mgd_view(s, t, logits, torch.tensor([0, 1, 2]))
    assert v.alpha == pytest.approx(7e-5 * 25088 / (64 * 16))
    with pytest.raises(InvalidParameterError, match="channel"):
        fh.mgd_view(s, t, logits, torch.tensor([0, 1, 2]), channel=64)


def test_component_ratio_reads_the_first_epoch():
    steps = pd.DataFrame(
        {
            "step": [1, 2, 3],
            "epoch": [1, 1, 2],
            "mgd/conv2": [1.0, 3.0, 2.0],
            "mgd/conv1": [1.0, 1.0, 0.0],
            "ce": [2.0, 2.0, 4.0],
        }
    )
    r = fh.component_ratio(steps)
    assert r["epoch"].tolist() == [1, 2]
    assert r["ratio"].tolist() == pytest.approx([(1.0 + 2.0) / 2, 0.5])
    with pytest.raises(InvalidParameterError, match="famkd"):
        fh.component_ratio(steps, prefix="famkd/")


@pytest.mark.parametrize(("h", "cuton", "removed"), [(8, 0.5, 16), (8, 0.1, 0), (7, 0.5, 4)])
def test_fam_view_spectra_match_numpy_and_the_figure_counts_the_removed(h, cuton, removed):
    s, t, _ = _feats(cs=2, ct=4, h=h, w=h)
    s = s[:, :, ::2, ::2]  # the student's smaller map is resized (nearest) to the teacher's grid
    v = fh.fam_view(s, t, cuton=cuton)
    amp = lambda x: np.fft.fftshift(np.abs(np.fft.fft2(x, norm="ortho")).mean(axis=(0, 1)))  # noqa: E731
    np.testing.assert_allclose(v.spectra["teacher"], amp(_np(t)), rtol=1e-10)
    resized = np.repeat(np.repeat(_np(s), 2, axis=2), 2, axis=3)[:, :, :h, :h] if h % 2 == 0 else None
    if resized is not None:
        np.testing.assert_allclose(v.spectra["student (resized)"], amp(resized), rtol=1e-6)
    assert v.removed == removed == int((~v.keep).sum()) and v.total == h * h
    assert v.freqs_h.tolist() == sorted(v.freqs_h.tolist()) and 0 in v.freqs_h.tolist()
    dc = v.freqs_h.tolist().index(0)
    assert v.keep[dc, dc] == (removed == 0)  # the removed block holds DC
    if removed:
        # Re() gives the branch the spectrum (Y(k) + conj Y(−k))/2: dark where k and −k are both removed;
        # the block {−r..r−1} is asymmetric, so its row/column −r shows the mirrored kept frequency +r
        filtered = v.spectra["filtered branch (high-passed)"]
        idx = np.arange(h)
        keep = np.fft.ifftshift(v.keep)
        both = np.fft.fftshift(~keep & ~keep[(-idx) % h][:, (-idx) % h])
        assert both.sum() == (2 * (removed**0.5 / 2) - 1) ** 2  # {−(r−1)..r−1} on both axes
        assert np.abs(filtered[both]).max() < 1e-6 < np.abs(filtered[~v.keep & ~both]).min()
    fig = fh.fam_figure(v)
    assert len(fig.data) == 4 and len(fig.layout.shapes) == (4 if removed else 0)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), np.log10(v.spectra["teacher"] + 1e-12))
    assert f"removed {removed} of {h * h} frequencies" in fig.layout.title.text


def test_fresh_heads_are_seeded_and_leave_the_global_generator_alone():
    s, t, logits = _feats()
    y = torch.tensor([0, 3, 5])
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = fh.mgd_view(s, t, logits, y, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(5)  # the fresh head equals one built right after seeding the generator with `seed`
    head = MGDHead(3, 5)
    b = fh.mgd_view(s, t, logits, y, head, seed=5)
    np.testing.assert_array_equal(a.generated, b.generated)
    torch.manual_seed(123)
    f1 = fh.fam_view(s, t, seed=2)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(2)
    f2 = fh.fam_view(s, t, FAMModule(3, 5, 4, 4, cuton=0.1))
    assert f1.spectra.keys() == f2.spectra.keys()
    for k in f1.spectra:
        np.testing.assert_array_equal(f1.spectra[k], f2.spectra[k])
