"""One parametrised set of checks over every registered loss (CONVENTIONS.md §9).

Each registry entry gets a case saying how to call it; a loss registered without a case fails
``test_every_registered_loss_has_a_case``. Checks: scalar float32 output, finite gradients of the
right shape, zero when the student equals the teacher, bad inputs raise ValueError naming the
argument, bf16 inputs computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from kdcore.losses import FEATURE_LOSSES, LOSSES, label_smoothing_targets, strong_set


@dataclass
class Case:
    make: Callable[[torch.dtype], tuple[torch.Tensor, torch.Tensor]]  # dtype -> (student, teacher) inputs
    call: Callable[[Callable, torch.Tensor, torch.Tensor], torch.Tensor]  # (loss, student, teacher) -> scalar
    student_name: str  # argument named when the student is bad
    equal_value: Callable[[torch.Tensor], float] = lambda teacher: 0.0  # loss when the student equals the teacher
    teacher_is_input: bool = True  # False: the "teacher" is fixed by the labels
    grad_vanishes: bool = True  # at equality; not for probability inputs (the simplex constrains them)


B, C = 4, 6
Y = torch.tensor([0, 5, 2, 3])


def _logits(dtype):
    return torch.randn(B, C).to(dtype), torch.randn(B, C).to(dtype)


def _ls_teacher(dtype):
    """The label-smoothing 'teacher' logits, log of the smoothed targets (METHODS.md §12)."""
    return torch.randn(B, C).to(dtype), torch.log(label_smoothing_targets(Y, C, eps=0.2)).to(dtype)


def _ls_entropy(_teacher):
    t = label_smoothing_targets(Y, C, eps=0.2)
    return float(-(t * t.log()).sum(-1).mean())


def _attn(dtype):
    """Causal attention probabilities (zeros above the diagonal), student 2 heads, teacher 2."""
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)

    def probs():
        return torch.softmax(torch.randn(2, 2, 5, 5).masked_fill(future, float("-inf")), dim=-1).to(dtype)

    return probs(), probs()


CLASSIFICATION = {
    "kd": Case(_logits, lambda f, s, t: f(s, t, temperature=3.0), "student_logits"),  # the distillation term
    "dkd": Case(_logits, lambda f, s, t: f(s, t, Y), "student_logits"),
    "cakd": Case(
        _logits, lambda f, s, t: f(s, t, strong_set(t, rule="mass", tau=0.6, temperature=4.0)), "student_logits"
    ),
    "normkd": Case(_logits, lambda f, s, t: f(s, t), "student_logits"),
    "ls": Case(_ls_teacher, lambda f, s, t: f(s, Y, eps=0.2), "student_logits", _ls_entropy, teacher_is_input=False),
}

FEATURES = {
    "feature_l2": Case(
        lambda d: (torch.randn(3, 8).to(d), torch.randn(3, 8).to(d)), lambda f, s, t: f(s, t), "student_features"
    ),
    "feature_cosine": Case(
        lambda d: (torch.randn(2, 3, 4, 4).to(d), torch.randn(2, 3, 4, 4).to(d)),
        lambda f, s, t: f(s, t),
        "student_features",
    ),
    "attention_transfer": Case(
        lambda d: (torch.randn(2, 3, 4, 4).to(d), torch.randn(2, 5, 4, 4).to(d)),
        lambda f, s, t: f(s, t),
        "student_fmap",
    ),
    "attention_kl": Case(
        _attn,
        lambda f, s, t: f(s, t, mask=torch.tensor([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]]).bool()),
        "student_attn",
        grad_vanishes=False,
    ),
    "attention_mse": Case(_attn, lambda f, s, t: f(s, t), "student_attn"),
    "embedding_distill": Case(
        lambda d: (torch.randn(3, 8).to(d), torch.randn(3, 8).to(d)), lambda f, s, t: f(s, t), "student_embeddings"
    ),
}

ALL = [(name, LOSSES[name], case) for name, case in CLASSIFICATION.items()] + [
    (name, FEATURE_LOSSES[name], case) for name, case in FEATURES.items()
]
IDS = [name for name, _, _ in ALL]


def test_every_registered_loss_has_a_case():
    assert set(LOSSES) == set(CLASSIFICATION) == {"kd", "dkd", "cakd", "normkd", "ls"}
    assert (
        set(FEATURE_LOSSES)
        == set(FEATURES)
        == {"feature_l2", "feature_cosine", "attention_transfer", "attention_kl", "attention_mse", "embedding_distill"}
    )


@pytest.mark.parametrize("name,loss,case", ALL, ids=IDS)
def test_scalar_and_finite_gradients(name, loss, case):
    s, t = case.make(torch.float32)
    s.requires_grad_(True)
    out = case.call(loss, s, t)
    assert out.shape == () and out.dtype == torch.float32 and torch.isfinite(out)
    assert out.item() >= -1e-6  # every registered loss is a divergence or distance
    out.backward()
    assert s.grad is not None and s.grad.shape == s.shape
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize("name,loss,case", ALL, ids=IDS)
def test_zero_when_student_equals_teacher(name, loss, case):
    _, t = case.make(torch.float32)
    s = t.clone().requires_grad_(True)
    out = case.call(loss, s, t)
    assert out.item() == pytest.approx(case.equal_value(t), abs=1e-5)
    out.backward()
    assert torch.isfinite(s.grad).all()
    if case.teacher_is_input and case.grad_vanishes:  # a minimum: the gradient vanishes there
        assert s.grad.abs().max() < 1e-4
    elif case.teacher_is_input:  # probabilities: no component along the simplex
        support = (t > 0).float()
        row_mean = (s.grad * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        assert ((s.grad - row_mean) * support).abs().max() < 1e-4
    s2, _ = case.make(torch.float32)
    assert case.call(loss, s2, t).item() > case.equal_value(t) + 1e-4  # and it is not zero elsewhere


@pytest.mark.parametrize("name,loss,case", ALL, ids=IDS)
def test_bad_inputs_raise_naming_the_argument(name, loss, case):
    s, t = case.make(torch.float32)
    bad = s.clone()
    bad.view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match=f"'{case.student_name}'"):
        case.call(loss, bad, t)
    with pytest.raises(ValueError, match="batch|leading|shape"):
        case.call(loss, s[:1], t) if case.teacher_is_input else loss(s[:1], Y, eps=0.2)
    with pytest.raises(ValueError, match="empty"):
        case.call(loss, s[:0], t[:0]) if case.teacher_is_input else loss(s[:0], Y[:0], eps=0.2)
    with pytest.raises(ValueError, match="torch.Tensor"):
        case.call(loss, s.numpy(), t)


@pytest.mark.parametrize("name,loss,case", ALL, ids=IDS)
def test_bf16_inputs_are_computed_in_float32(name, loss, case):
    s, t = case.make(torch.bfloat16)
    low = case.call(loss, s, t)
    full = case.call(loss, s.float(), t.float())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, rtol=1e-5, atol=1e-6)
