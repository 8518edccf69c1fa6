"""kdcore.losses._kl._tempered_kl: the KD term's KL(softmax(z_t / T) ‖ softmax(z_s / T)) per row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcore.losses._kl import _tempered_kl


def _np_kl(zs: np.ndarray, zt: np.ndarray, T: float) -> np.ndarray:
    """Plain float64 reference; a -inf teacher logit has p = 0 and adds 0."""

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z / T
        m = z.max(axis=-1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))

    log_p, log_q = log_softmax(zt), log_softmax(zs)
    p = np.exp(log_p)
    terms = np.where(p > 0, p * (np.where(p > 0, log_p, 0.0) - log_q), 0.0)
    return terms.sum(axis=-1)


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
def test_tempered_kl_matches_numpy_per_row(T):
    rng = np.random.default_rng(7)
    zs, zt = rng.normal(size=(2, 5, 7)) * 3, rng.normal(size=(2, 5, 7)) * 3  # [..., C]
    zt[0, 1, 3] = -np.inf  # a masked teacher class adds exactly 0
    got = _tempered_kl(torch.tensor(zs), torch.tensor(zt), T)  # [2, 5]
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got.numpy(), _np_kl(zs, zt, T), rtol=1e-12, atol=1e-12)


def test_tempered_kl_takes_a_tensor_temperature_and_is_zero_for_equal_logits():
    z = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    T = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(_tempered_kl(z, z, T), torch.zeros(4, dtype=torch.float64), atol=1e-15)
    kl = _tempered_kl(z, z.flip(-1), T).sum()
    (g,) = torch.autograd.grad(kl, T)  # CTKD differentiates through a learned T
    assert torch.isfinite(g) and g.item() != 0.0
