"""Independent numpy references for CKA (METHODS §8), shared by the kdcore and analyses CKA tests."""

import numpy as np


def np_hsic1(k, g):
    """The unbiased HSIC estimator of Song et al. 2012 on Gram matrices K, G [n, n] (n > 3)."""
    n = k.shape[0]
    kt, gt = k - np.diag(np.diag(k)), g - np.diag(np.diag(g))
    one = np.ones(n)
    return (
        np.trace(kt @ gt)
        + (one @ kt @ one) * (one @ gt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ gt @ one)
    ) / (n * (n - 3))


def np_rbf_gram(x, s=1.0):
    """RBF Gram matrix of the rows of x [n, d]: exp(−‖x_i − x_j‖² / (2·s²·median of those squared distances))."""
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d / (2 * s**2 * np.median(d)))


def np_gram_cka(k, g):
    """tr(KHGH)/√(tr(KHKH)·tr(GHGH)) with an explicit centring matrix H."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ g @ h) / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(g @ h @ g @ h))


def np_debiased_cka(k, g):
    """Debiased CKA of Gram matrices K, G: HSIC₁(K, G) / √(HSIC₁(K, K)·HSIC₁(G, G))."""
    return np_hsic1(k, g) / np.sqrt(np_hsic1(k, k) * np_hsic1(g, g))
