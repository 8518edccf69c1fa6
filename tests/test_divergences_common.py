"""One set of checks run over every registered token-level divergence (CONVENTIONS.md §9), plus the
argument validation of token_divergence and divergence_loss."""

import math

import pytest
import torch

from kdcore.divergences import DIVERGENCES, KINDS, divergence_loss, token_divergence

PARAMS = {"jsd": {"beta": 0.4}, "skew_fkl": {"alpha": 0.3}, "skew_rkl": {"alpha": 0.3}, "akl": {"mu": 0.6}}


def test_registry_holds_every_kind():
    assert tuple(DIVERGENCES) == KINDS == ("fkl", "rkl", "jsd", "tvd", "skew_fkl", "skew_rkl", "akl", "uld")
    assert all(callable(f) and f.__doc__ for f in DIVERGENCES.values())
    import kdcore.divergences as d

    for kind, f in DIVERGENCES.items():  # each kind is also a module-level function named after it
        assert f.__name__ == kind and getattr(d, kind) is f


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(9,), (4, 9), (2, 3, 9), (2, 1, 3, 9)])
def test_shapes_dtype_and_registry_agrees(kind, shape):
    s, t = torch.randn(shape), torch.randn(shape)
    out = DIVERGENCES[kind](s, t, temperature=2.0, **PARAMS.get(kind, {}))
    assert tuple(out.shape) == shape[:-1] and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()
    torch.testing.assert_close(out, token_divergence(s, t, kind, temperature=2.0, **PARAMS.get(kind, {})))
    loss = divergence_loss(s, t, kind, temperature=2.0, **PARAMS.get(kind, {}))
    assert loss.dim() == 0
    torch.testing.assert_close(loss, out.mean())


@pytest.mark.parametrize("kind", KINDS)
def test_finite_gradients_and_zero_at_equality(kind):
    s = (torch.randn(3, 4, 16) * 5).requires_grad_()
    t = torch.randn(3, 4, 16) * 5
    loss = divergence_loss(s, t, kind, temperature=0.5, **PARAMS.get(kind, {}))
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert loss > 0
    same = divergence_loss(t.clone(), t, kind, temperature=0.5, **PARAMS.get(kind, {}))
    assert same.abs() < 1e-6


BAD_LOGITS = [
    ("NaN", lambda x: x.index_put_((torch.tensor([0]), torch.tensor([1])), torch.tensor(float("nan"))), "NaN"),
    ("+inf", lambda x: x.index_put_((torch.tensor([1]), torch.tensor([2])), torch.tensor(math.inf)), "inf"),
    ("all -inf row", lambda x: x.index_put_((torch.tensor([2]),), torch.tensor(-math.inf)), "all -inf"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("what,spoil,words", BAD_LOGITS, ids=[b[0] for b in BAD_LOGITS])
@pytest.mark.parametrize("side", ["student_logits", "teacher_logits"])
def test_bad_logits_raise(kind, what, spoil, words, side):
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    spoil(s if side == "student_logits" else t)
    with pytest.raises(ValueError, match=f"'{side}'.*{words}"):
        DIVERGENCES[kind](s, t)
    with pytest.raises(ValueError, match=f"'{side}'"):
        divergence_loss(s, t, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_arguments_raise(kind):
    s, t = torch.randn(2, 5), torch.randn(2, 5)
    for temperature in (0, -1.0, float("nan"), "hot"):
        with pytest.raises(ValueError, match="'temperature'.*> 0"):
            token_divergence(s, t, kind, temperature=temperature)
    with pytest.raises(ValueError, match="'student_logits'.*empty"):
        token_divergence(torch.empty(0, 5), torch.empty(0, 5), kind)
    with pytest.raises(ValueError, match="'teacher_logits'.*floating-point"):
        token_divergence(s, torch.ones(2, 5, dtype=torch.long), kind)
    with pytest.raises(ValueError, match="'student_logits'.*torch.Tensor"):
        token_divergence([[0.0, 1.0]], t, kind)
    with pytest.raises(ValueError, match="leading"):
        token_divergence(torch.randn(3, 5), t, kind)
    with pytest.raises(ValueError, match="'chunk_size'"):
        token_divergence(s, t, kind, chunk_size=0)
    with pytest.raises(ValueError, match="'chunk_size'"):
        token_divergence(s, t, kind, chunk_size=2.5)
    with pytest.raises(ValueError, match="'mask'.*leading shape"):
        divergence_loss(s, t, kind, mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="'mask'.*bool"):
        divergence_loss(s, t, kind, mask=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="'labels'.*integer"):
        divergence_loss(s, t, kind, labels=torch.zeros(2))
    with pytest.raises(ValueError, match="'labels'.*the logits' leading shape"):
        divergence_loss(s, t, kind, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="keeps no position"):
        divergence_loss(s, t, kind, labels=torch.full((2,), -100))
    with pytest.raises(ValueError, match="unknown parameter"):
        divergence_loss(s, t, kind, temp=2.0)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="'kind'.*'fkl'.*Got 'kl'"):
        token_divergence(torch.randn(2, 3), torch.randn(2, 3), "kl")


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_jsd_beta_out_of_range_points_to_fkl_and_rkl(beta):
    with pytest.raises(ValueError, match=r"'beta'.*\(0\.0, 1\.0\).*kind='fkl'.*kind='rkl'"):
        token_divergence(torch.randn(2, 3), torch.randn(2, 3), "jsd", beta=beta)


@pytest.mark.parametrize("kind", ["skew_fkl", "skew_rkl"])
@pytest.mark.parametrize("alpha", [1.0, -0.1, 2.0])
def test_skew_alpha_out_of_range(kind, alpha):
    with pytest.raises(ValueError, match=r"'alpha'.*\[0\.0, 1\.0\)"):
        token_divergence(torch.randn(2, 3), torch.randn(2, 3), kind, alpha=alpha)


@pytest.mark.parametrize("mu", [-0.1, 1.01, float("inf")])
def test_akl_mu_out_of_range(mu):
    with pytest.raises(ValueError, match=r"'mu'.*\[0\.0, 1\.0\]"):
        token_divergence(torch.randn(2, 3), torch.randn(2, 3), "akl", mu=mu)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "uld"])
def test_vocabulary_mismatch_raises_for_all_but_uld(kind):
    s, t = torch.randn(2, 7), torch.randn(2, 9)
    with pytest.raises(ValueError, match="student has 7.*teacher has 9.*align='truncate'.*kind='uld'"):
        token_divergence(s, t, kind)
    assert token_divergence(s, t, "uld").shape == (2,)
