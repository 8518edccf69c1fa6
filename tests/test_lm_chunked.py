"""kdcore.lm_chunked: divergences from hidden states + heads equal divergence_loss on the logits,
for every kind, chunk size and mask, in value and student gradients; no [B·L, V] tensor is ever built."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from kdcore.divergences import KINDS, divergence_loss
from kdcore.lm_chunked import hidden_divergence_loss, hidden_token_losses

B, L, HS, HT, V = 3, 7, 5, 6, 11  # 21 positions


def _inputs(seed: int, dtype=torch.float64, vt: int = V):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(B, L, HS, generator=g, dtype=dtype).requires_grad_()
    ws = (torch.randn(V, HS, generator=g, dtype=dtype) * 0.8).requires_grad_()
    bs = torch.randn(V, generator=g, dtype=dtype).requires_grad_()
    ht = torch.randn(B, L, HT, generator=g, dtype=dtype)
    wt = torch.randn(vt, HT, generator=g, dtype=dtype)
    bt = torch.randn(vt, generator=g, dtype=dtype)
    mask = torch.rand(B, L, generator=g) > 0.3
    mask[:, -2:] = False  # right padding
    mask[0, 0] = True
    return hs, ws, bs, ht, wt, bt, mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 4, 100, None])  # one row, uneven last chunk, one chunk, auto
def test_equals_divergence_loss_values_and_gradients(kind, chunk):
    hs, ws, bs, ht, wt, bt, mask = _inputs(hash((kind, chunk)) % 1000)
    opts = dict(temperature=1.7, beta=0.3, alpha=0.2, mu=0.6)
    got = hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), kind, mask=mask, chunk_rows=chunk, **opts)
    g_got = torch.autograd.grad(got, (hs, ws, bs))
    ref = divergence_loss(F.linear(hs, ws, bs), F.linear(ht, wt, bt), kind, mask=mask, **opts)
    g_ref = torch.autograd.grad(ref, (hs, ws, bs))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert float(g_got[0][~mask].abs().max()) == 0.0  # padded positions get no gradient


def test_a_scaled_loss_scales_the_gradients_as_on_the_logits():
    """Gradient accumulation backpropagates loss × share: the backward pass scales the gradients it
    took in the forward pass (in place) by exactly that factor."""
    hs, ws, bs, ht, wt, bt, mask = _inputs(7)
    got = hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), "fkl", mask=mask, chunk_rows=4)
    (got * 0.3).backward()
    ref = divergence_loss(F.linear(hs, ws, bs), F.linear(ht, wt, bt), "fkl", mask=mask)
    g_ref = torch.autograd.grad(ref, (hs, ws, bs))
    for a, b in zip((hs.grad, ws.grad, bs.grad), g_ref):
        assert a is not None
        torch.testing.assert_close(a, 0.3 * b, rtol=1e-10, atol=1e-12)


def test_fkl_against_numpy():
    hs, ws, bs, ht, wt, bt, mask = _inputs(3)
    got = float(
        hidden_divergence_loss(
            hs.detach(), (ws.detach(), None), ht, (wt, bt), "fkl", mask=mask, temperature=2.0, chunk_rows=2
        )
    )
    zs = hs.detach().numpy() @ ws.detach().numpy().T / 2.0
    zt = (ht.numpy() @ wt.numpy().T + bt.numpy()) / 2.0
    ls = zs - np.log(np.exp(zs - zs.max(-1, keepdims=True)).sum(-1, keepdims=True)) - zs.max(-1, keepdims=True)
    lt = zt - np.log(np.exp(zt - zt.max(-1, keepdims=True)).sum(-1, keepdims=True)) - zt.max(-1, keepdims=True)
    per = (np.exp(lt) * (lt - ls)).sum(-1)
    assert abs(got - per[mask.numpy()].mean()) < 1e-12


def test_uld_with_different_vocabularies():
    hs, ws, bs, ht, wt, bt, mask = _inputs(4, vt=V + 6)
    got = hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), "uld", mask=mask, chunk_rows=5)
    ref = divergence_loss(F.linear(hs, ws, bs), F.linear(ht, wt, bt), "uld", mask=mask)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_token_losses_give_the_cross_entropy_too(temperature):
    hs, ws, bs, ht, wt, bt, mask = _inputs(5)
    labels = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(1))
    labels[~mask] = -100
    loss, div, ce = hidden_token_losses(
        hs,
        (ws, bs),
        ht,
        (wt, bt),
        "jsd",
        labels=labels,
        div_weight=2.0,
        ce_weight=0.5,
        temperature=temperature,
        chunk_rows=3,
    )
    assert not div.requires_grad and not ce.requires_grad  # the parts are for logging
    g_got = torch.autograd.grad(loss, (hs, ws, bs))
    zs = F.linear(hs, ws, bs)
    ref_div = divergence_loss(zs, F.linear(ht, wt, bt), "jsd", mask=mask, temperature=temperature)
    ref_ce = F.cross_entropy(zs.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    g_ref = torch.autograd.grad(2.0 * ref_div + 0.5 * ref_ce, (hs, ws, bs))
    torch.testing.assert_close(loss, 2.0 * ref_div + 0.5 * ref_ce, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(div, ref_div.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ce, ref_ce.detach(), rtol=1e-12, atol=1e-12)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_teacher_side_gets_no_gradient_and_bf16_computes_in_float32():
    hs, ws, bs, ht, wt, bt, mask = _inputs(6, dtype=torch.float32)
    ht.requires_grad_()
    wt.requires_grad_()
    got = hidden_divergence_loss(hs.bfloat16(), (ws.bfloat16(), None), ht.bfloat16(), (wt.bfloat16(), None), "fkl")
    assert got.dtype == torch.float32
    got.backward()
    assert ht.grad is None and wt.grad is None and hs.grad is not None
    ref = divergence_loss(F.linear(hs.bfloat16(), ws.bfloat16()), F.linear(ht.bfloat16(), wt.bfloat16()), "fkl")
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-6)


class _LargestTensor(TorchDispatchMode):
    """Records the largest floating-point tensor any op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("kind", ["fkl", "akl", "uld"])
def test_no_full_logits_tensor_is_ever_allocated(kind):
    g = torch.Generator().manual_seed(7)
    b, length, h, v, rows = 4, 32, 16, 500, 8  # N = 128 positions, chunks of 8
    hs = torch.randn(b, length, h, generator=g).requires_grad_()
    ws = torch.randn(v, h, generator=g).requires_grad_()
    ht, wt = torch.randn(b, length, h, generator=g), torch.randn(v, h, generator=g)
    with _LargestTensor() as chunked:
        hidden_divergence_loss(hs, (ws, None), ht, (wt, None), kind, chunk_rows=rows).backward()
    # the largest tensors are a chunk's logits [rows, V] and the head's gradient [V, H]
    assert chunked.largest <= max(rows * v, v * h) < b * length * v // 4
    with _LargestTensor() as plain:  # the counter sees the full logits when they are built
        divergence_loss(F.linear(hs, ws), F.linear(ht, wt), kind, chunk_size=rows).backward()
    assert plain.largest >= b * length * v


def test_bad_input_is_refused_clearly():
    hs, ws, bs, ht, wt, bt, mask = _inputs(8)
    with pytest.raises(ValueError, match="must be one of"):
        hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), "kl")
    with pytest.raises(ValueError, match="width its head takes"):
        hidden_divergence_loss(hs, (wt, None), ht, (wt, bt), "fkl")
    with pytest.raises(ValueError, match="keeps no position"):
        hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), "fkl", mask=torch.zeros(B, L, dtype=torch.bool))
    with pytest.raises(ValueError, match="vocabulary sizes"):
        hidden_divergence_loss(hs, (ws, bs), ht, (wt[:-1], None), "fkl")
    with pytest.raises(ValueError, match="pair"):
        hidden_divergence_loss(hs, ws, ht, (wt, bt), "fkl")
    with pytest.raises(ValueError, match="chunk_rows"):
        hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), "fkl", chunk_rows=0)
    with pytest.raises(ValueError, match=r"hidden_divergence_loss got unknown parameter\(s\) \['align'\]"):
        hidden_divergence_loss(hs, (ws, bs), ht, (wt, bt), "fkl", align="truncate")  # a divergence_loss option only
    with pytest.raises(ValueError, match=r"'labels' argument of .* must have the hidden states' leading shape"):
        hidden_token_losses(hs, (ws, bs), ht, (wt, bt), "fkl", labels=torch.zeros(B, L + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"hidden_token_losses got unknown parameter\(s\) \['chunk_size'\]"):
        hidden_token_losses(hs, (ws, bs), ht, (wt, bt), "fkl", labels=torch.zeros(B, L, dtype=torch.long), chunk_size=4)


def test_under_bf16_autocast_the_teacher_projects_in_its_heads_dtype_and_gradients_follow_the_reference(
    monkeypatch,
):
    """Under autocast the student's chunks project in bf16, the teacher's in float32 with its own head (no
    bf16 copy of [V, Ht]); loss and student gradients (float32) stay within bf16 rounding of the float64
    full-logits reference."""
    import kdcore.lm_chunked as lc

    hs, ws, bs, ht, wt, bt, _ = _inputs(7, dtype=torch.float32)
    labels = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(1))
    seen = []
    project = lc._project
    monkeypatch.setattr(lc, "_project", lambda h, w, b: seen.append((w, project(h, w, b))) or seen[-1][1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _, _ = hidden_token_losses(hs, (ws, bs), ht, (wt, bt), "fkl", labels=labels, chunk_rows=4)
    g_got = torch.autograd.grad(got, (hs, ws, bs))
    teacher = [(w, z) for w, z in seen if w.shape[1] == HT]
    student = [z for w, z in seen if w.shape[1] == HS]
    assert len(teacher) == len(student) == 6  # 21 positions, 4 rows per chunk
    assert all(w.data_ptr() == wt.data_ptr() and w.dtype == z.dtype == torch.float32 for w, z in teacher)
    assert all(z.dtype == torch.bfloat16 for z in student)

    d = [t.detach().double().requires_grad_() for t in (hs, ws, bs)]
    z_s, z_t = F.linear(*d), F.linear(ht.double(), wt.double(), bt.double())
    ref = divergence_loss(z_s, z_t, "fkl") + F.cross_entropy(z_s.reshape(-1, V), labels.reshape(-1))
    g_ref = torch.autograd.grad(ref, d)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=3e-2)
    for a, b in zip(g_got, g_ref):
        assert a.dtype == torch.float32
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=0, atol=3e-2 * float(b.abs().max()))
