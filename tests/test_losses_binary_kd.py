"""Per-label binary KD (`bkd`): against an independent float64 numpy computation on seeded random inputs,
its identities, the method-table entry, and `kd` refused on a multi-label pair with a pointer to `bkd`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcore.jobs import JobConfig, prepare_run
from kdcore.losses import binary_kd_components, binary_kd_loss
from kdcore.methods import get_method
from kdcore.validation import InvalidParameterError

B, C = 7, 5


def _rand(seed: int, *shape: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def _multi_hot(seed: int) -> torch.Tensor:
    return (torch.rand(B, C, generator=torch.Generator().manual_seed(seed)) < 0.4).double()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _reference(s: np.ndarray, t: np.ndarray, y: np.ndarray | None, T: float, lam: float) -> tuple:
    """Per-sample (kl, bce) and the loss, straight from the definitions in float64."""
    p, q = _sigmoid(t / T), _sigmoid(s / T)
    kl = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).mean(-1)  # [B]
    if y is None:
        return kl, None, T * T * kl.mean()
    q1 = _sigmoid(s)
    bce = -(y * np.log(q1) + (1 - y) * np.log(1 - q1)).mean(-1)  # [B]
    return kl, bce, ((1 - lam) * bce + lam * T * T * kl).mean()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_binary_kd_matches_float64_numpy(seed, T):
    s, t, y = _rand(seed, B, C), _rand(seed + 100, B, C), _multi_hot(seed)
    lam = [0.0, 0.3, 0.9, 1.0][seed]
    kl, bce, loss = _reference(s.numpy(), t.numpy(), y.numpy(), T, lam)
    parts = binary_kd_components(s, t, y, temperature=T)
    np.testing.assert_allclose(parts["kl"].numpy(), kl, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(parts["bce"].numpy(), bce, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(binary_kd_loss(s, t, y, temperature=T, lam=lam)), loss, rtol=1e-9)
    _, _, unlabelled = _reference(s.numpy(), t.numpy(), None, T, lam)
    np.testing.assert_allclose(float(binary_kd_loss(s, t, temperature=T)), unlabelled, rtol=1e-9)


def test_identities_zero_at_the_teacher_and_float32_in_float32_out():
    t = _rand(1, B, C)
    assert float(binary_kd_components(t, t)["kl"].abs().max()) < 1e-12  # KL(p ‖ p) = 0
    s32, t32 = _rand(2, B, C).float(), _rand(3, B, C).float()
    out = binary_kd_loss(s32.to(torch.bfloat16), t32.to(torch.bfloat16), _multi_hot(0) > 0, temperature=2.0)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    # huge logits stay finite (the cross-entropy is taken from the logits)
    big = binary_kd_loss(_rand(4, B, C, scale=300.0), _rand(5, B, C, scale=300.0), temperature=1.0)
    assert torch.isfinite(big)


def test_gradient_matches_finite_differences():
    s = _rand(6, 3, 4).requires_grad_(True)
    t, y = _rand(7, 3, 4), (torch.rand(3, 4, generator=torch.Generator().manual_seed(8)) < 0.5).double()
    assert torch.autograd.gradcheck(lambda z: binary_kd_loss(z, t, y, temperature=2.0, lam=0.7), (s,))


def test_bad_labels_and_parameters_are_named():
    s, t = _rand(1, B, C), _rand(2, B, C)
    with pytest.raises(InvalidParameterError, match=r"'labels'.*shape \[7, 5\].*Got shape \(7,\)"):
        binary_kd_loss(s, t, torch.zeros(B, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match=r"only 0/1.*0.5"):
        binary_kd_loss(s, t, torch.full((B, C), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="'lam'"):
        binary_kd_loss(s, t, _multi_hot(0), lam=1.5)
    with pytest.raises(ValueError, match="'temperature'"):
        binary_kd_components(s, t, temperature=0.0)


def test_the_method_entry_calls_the_tested_loss():
    m = get_method("binary_kd")
    assert m.name == "bkd" and m.tasks == ("multilabel",)
    assert m.functions()["loss"] is binary_kd_loss
    assert get_method("bkd").defaults() == {"temperature": 4.0, "lam": 0.9}


def test_kd_on_a_multilabel_pair_is_refused_with_a_pointer_to_bkd(data_dir):
    with pytest.raises(ValueError, match=r"(?s)objective 'kd'.*multilabel.*compete.*'bkd'"):
        prepare_run(JobConfig(pair="shapes_multilabel", objective="kd", max_steps=1))
    prep = prepare_run(JobConfig(pair="shapes_multilabel", objective="bkd", max_steps=1))
    assert prep.task == "multilabel"
