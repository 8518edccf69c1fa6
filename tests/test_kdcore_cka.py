"""kdcore.cka, the one CKA core (METHODS §8): independent numpy references on seeded random inputs,
CKA's identities, the layer×layer matrices."""

import numpy as np
import pytest
import torch

from kdcore import cka
from tests.helpers.cka_reference import np_debiased_cka, np_gram_cka, np_hsic1, np_rbf_gram


# ---------------------------------------------------------------- independent numpy references
def _np_linear(x, y):
    """Feature-space form on column-centred X, Y: ‖YᵀX‖²_F / (‖XᵀX‖_F·‖YᵀY‖_F)."""
    x, y = x - x.mean(0), y - y.mean(0)
    fro = np.linalg.norm
    return fro(y.T @ x) ** 2 / (fro(x.T @ x) * fro(y.T @ y))


def _pair(rng, n, d1, d2):
    z = rng.normal(size=(n, 5))
    x = z @ rng.normal(size=(5, d1)) + 0.3 * rng.normal(size=(n, d1))
    y = np.sin(z @ rng.normal(size=(5, d2))) + 0.3 * rng.normal(size=(n, d2))
    return x, y


# n > d (feature-space path) and n < d (Gram path)
SHAPES = [(60, 4, 7), (9, 40, 25), (30, 30, 3), (5, 2, 3)]


@pytest.mark.parametrize("n, d1, d2", SHAPES)
def test_linear_and_debiased_match_numpy(n, d1, d2):
    x, y = _pair(np.random.default_rng(n * 100 + d1), n, d1, d2)
    assert cka.linear_cka(x, y) == pytest.approx(_np_linear(x, y), rel=1e-10)
    assert cka.linear_cka(x, y) == pytest.approx(np_gram_cka(x @ x.T, y @ y.T), rel=1e-10)
    assert cka.linear_cka(x, y, debiased=True) == pytest.approx(np_debiased_cka(x @ x.T, y @ y.T), rel=1e-8)


@pytest.mark.parametrize("n, d1, d2", SHAPES)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_rbf_matches_numpy(n, d1, d2, sigma):
    x, y = _pair(np.random.default_rng(n + d2), n, d1, d2)
    k, g = np_rbf_gram(x, sigma), np_rbf_gram(y, sigma)
    assert cka.rbf_cka(x, y, sigma=sigma) == pytest.approx(np_gram_cka(k, g), rel=1e-10)
    if n >= 4:
        ref = np_debiased_cka(k, g)
        assert cka.rbf_cka(x, y, sigma=sigma, debiased=True) == pytest.approx(ref, rel=1e-8)


def test_hsic1_from_parts_matches_numpy():
    rng = np.random.default_rng(7)
    k, g = (lambda a: a @ a.T)(rng.normal(size=(12, 3))), (lambda a: a @ a.T)(rng.normal(size=(12, 5)))
    kt, gt = torch.tensor(k).fill_diagonal_(0.0), torch.tensor(g).fill_diagonal_(0.0)
    rk, rg = kt.sum(1), gt.sum(1)
    ours = cka.hsic1((kt * gt).sum(), rk.sum(), rg.sum(), rk @ rg, 12)
    assert float(ours) == pytest.approx(np_hsic1(k, g), rel=1e-10)


# ---------------------------------------------------------------- identities
_KINDS = {
    "linear": lambda a, b: cka.linear_cka(a, b),
    "debiased": lambda a, b: cka.linear_cka(a, b, debiased=True),
    "rbf": lambda a, b: cka.rbf_cka(a, b),
}


@pytest.mark.parametrize("kind", list(_KINDS))
@pytest.mark.parametrize("n, d1, d2", [(40, 6, 4), (8, 20, 12)])
def test_identities(kind, n, d1, d2):
    f = _KINDS[kind]
    rng = np.random.default_rng(3)
    x, y = _pair(rng, n, d1, d2)
    q, _ = np.linalg.qr(rng.normal(size=(d1, d1)))  # a random orthogonal map
    assert f(x, x) == pytest.approx(1.0, abs=1e-12)
    assert f(x, y) == pytest.approx(f(y, x), rel=1e-12)  # symmetric
    assert f(x @ q, y) == pytest.approx(f(x, y), rel=1e-9)  # orthogonal transform
    assert f(7.5 * x, y) == pytest.approx(f(x, y), rel=1e-9)  # isotropic scaling
    assert f(x, 0.01 * y) == pytest.approx(f(x, y), rel=1e-9)


def test_not_invariant_to_a_general_linear_map():
    rng = np.random.default_rng(5)
    x, y = _pair(rng, 50, 6, 4)
    a = np.diag([1.0, 20.0, 0.05, 1.0, 3.0, 0.2]) @ rng.normal(size=(6, 6))  # invertible, far from orthogonal
    assert abs(cka.linear_cka(x @ a, y) - cka.linear_cka(x, y)) > 1e-3


def test_constant_features_give_zero_never_nan():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(10, 3))
    const = np.full((10, 4), 2.5)
    assert cka.linear_cka(x, const) == 0.0 and cka.linear_cka(const, x, debiased=True) == 0.0
    assert cka.rbf_cka(x, const) == 0.0
    m = cka.linear_cka_matrix([torch.tensor(x), torch.tensor(const)], [torch.tensor(x)])
    assert m.constant_a == (False, True) and m.constant_b == (False,)
    assert float(m.values[0, 0]) == pytest.approx(1.0) and float(m.values[1, 0]) == 0.0


# ---------------------------------------------------------------- matrices
@pytest.mark.parametrize("n", [30, 6])  # feature form (n ≥ mean width) and Gram form (n < mean width)
@pytest.mark.parametrize("debiased", [False, True])
def test_matrices_equal_pairwise_scalars(n, debiased):
    rng = np.random.default_rng(n)
    fa = [torch.tensor(rng.normal(size=(n, d))) for d in (3, 9, 14)]
    fb = [torch.tensor(np.tanh(fa[0].numpy() @ rng.normal(size=(3, d)))) for d in (2, 11)]
    lin = cka.linear_cka_matrix(fa, fb, debiased=debiased)
    rbf = cka.rbf_cka_matrix(fa, fb, sigma=0.8, debiased=debiased)
    assert tuple(lin.values.shape) == (3, 2) and tuple(rbf.values.shape) == (3, 2)
    for i, a in enumerate(fa):
        for j, b in enumerate(fb):
            assert float(lin.values[i, j]) == pytest.approx(cka.linear_cka(a, b, debiased=debiased), rel=1e-10)
            assert float(rbf.values[i, j]) == pytest.approx(cka.rbf_cka(a, b, sigma=0.8, debiased=debiased), rel=1e-10)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same inputs"):
        cka.linear_cka(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        cka.rbf_cka(np.random.default_rng(0).normal(size=(3, 2)), np.ones((3, 2)), debiased=True)
    with pytest.raises(ValueError, match="sigma"):
        cka.rbf_cka(np.ones((5, 2)), np.ones((5, 2)), sigma=-1.0)
    with pytest.raises(ValueError, match="row counts"):
        cka.linear_cka_matrix([torch.ones(5, 2)], [torch.ones(6, 2)])
    with pytest.raises(ValueError, match="'X'.*finite"):
        cka.linear_cka(np.array([[np.nan, 1.0]] * 4), np.ones((4, 2)))
