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
