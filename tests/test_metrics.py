"""kdcore.metrics, the one task-aware accuracy/agreement and the one ECE, and kdcore.dtypes: independent
numpy computations on seeded random inputs, identities, and bad input."""

import numpy as np
import pytest
import torch

from kdcore import metrics
from kdcore.dtypes import compute_dtype
from tests.helpers.ece_reference import ece_numpy


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- accuracy against numpy
@pytest.mark.parametrize("seed", range(3))
def test_classification_accuracy_matches_numpy(seed):
    g = _gen(seed)
    z = torch.randn(300, 7, generator=g)
    y = torch.randint(0, 7, (300,), generator=g)
    ref = (z.numpy().argmax(1) == y.numpy()).mean()
    assert metrics.accuracy(z, y) == pytest.approx(ref, abs=1e-15)
    assert metrics.accuracy(z.numpy(), y.numpy()) == pytest.approx(ref, abs=1e-15)  # numpy arrays too
    assert metrics.accuracy(torch.softmax(z, 1), y) == pytest.approx(ref, abs=1e-15)  # probabilities: same argmax


@pytest.mark.parametrize("seed", range(3))
def test_causal_lm_accuracy_ignores_minus_100(seed):
    g = _gen(seed)
    z = torch.randn(4, 9, 11, generator=g)  # [N, L, V]
    y = torch.randint(0, 11, (4, 9), generator=g)
    y[:, :3] = -100  # prompt positions: nothing predicted
    y[2, 5:] = -100  # padding
    zn, yn = z.numpy(), y.numpy()
    keep = yn != -100
    ref = (zn.argmax(-1)[keep] == yn[keep]).mean()
    assert metrics.accuracy(z, y, task="causal_lm") == pytest.approx(ref, abs=1e-15)
    # the -100 positions do not count, whatever the model predicts there
    z2 = z.clone()
    z2[~torch.as_tensor(keep)] = -z2[~torch.as_tensor(keep)]
    assert metrics.accuracy(z2, y, task="causal_lm") == metrics.accuracy(z, y, task="causal_lm")


def test_accuracy_with_minus_100_by_hand():
    s = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert metrics.accuracy(s, torch.tensor([0, 0, -100, 1])) == pytest.approx(2 / 3)
    assert metrics.accuracy(s, torch.tensor([-100, -100, -100, 1])) == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_multilabel_accuracy_matches_numpy(seed):
    g = _gen(seed)
    z = torch.randn(80, 5, generator=g) * 2
    y = (torch.rand(80, 5, generator=g) < 0.4).long()
    pred, yn = 1 / (1 + np.exp(-z.numpy().astype(np.float64))) > 0.5, y.numpy().astype(bool)  # sigmoid > 0.5
    assert metrics.accuracy(z, y, task="multilabel") == pytest.approx((pred == yn).mean(), abs=1e-15)
    assert metrics.accuracy(z, y.bool(), task="multilabel", multilabel="exact") == pytest.approx(
        (pred == yn).all(1).mean(), abs=1e-15
    )
    assert metrics.accuracy(z, y.float(), task="multilabel", multilabel="micro") == pytest.approx(
        (pred == yn).mean(), abs=1e-15
    )


@pytest.mark.parametrize("task", ["classification", "causal_lm", "multilabel"])
def test_agreement_and_disagreement_match_numpy(task):
    g = _gen(4)
    shape = {"classification": (50, 6), "causal_lm": (3, 7, 6), "multilabel": (50, 6)}[task]
    a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    an, bn = a.numpy(), b.numpy()
    same = (an > 0) == (bn > 0) if task == "multilabel" else an.argmax(-1) == bn.argmax(-1)
    assert metrics.agreement(a, b, task=task) == pytest.approx(same.mean(), abs=1e-15)
    assert metrics.disagreement(a, b, task=task) == pytest.approx(1 - same.mean(), abs=1e-15)
    assert metrics.agreement(a, a, task=task) == 1.0 and metrics.disagreement(a, a, task=task) == 0.0
    if task == "causal_lm":
        keep = torch.ones(3, 7, dtype=torch.bool)
        keep[1, 2:] = False
        ref = same[keep.numpy()].mean()
        assert metrics.agreement(a, b, task=task, mask=keep) == pytest.approx(ref, abs=1e-15)


def test_predictions_rules():
    z = torch.tensor([[0.5, -0.1, 0.5], [-1.0, 0.0, 2.0]])
    assert metrics.predictions(z).tolist() == [0, 2]  # ties to the lower index
    assert metrics.predictions(z, task="multilabel").tolist() == [[True, False, True], [False, False, True]]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.accuracy(torch.zeros(3, 2), torch.tensor([0, 1, 0]), task="regression"), "task"),
        (lambda: metrics.accuracy(torch.zeros(3, 2), torch.tensor([0, 1])), "labels"),
        (lambda: metrics.accuracy(torch.zeros(3, 2), torch.tensor([0, 1, 2])), "labels"),
        (lambda: metrics.accuracy(torch.zeros(3, 2), torch.full((3,), -100)), "every row"),
        (lambda: metrics.accuracy(torch.full((3, 2), float("nan")), torch.tensor([0, 1, 0])), "NaN"),
        (lambda: metrics.accuracy(torch.zeros(3, 2), torch.full((3, 2), 2), task="multilabel"), "0/1"),
        (lambda: metrics.accuracy(torch.zeros(3, 2), torch.zeros(3, 3), task="multilabel"), "multi-hot"),
        (
            lambda: metrics.accuracy(torch.zeros(3, 2), torch.zeros(3, 2), task="multilabel", multilabel="macro"),
            "multilabel",
        ),
        (lambda: metrics.agreement(torch.zeros(3, 2), torch.zeros(2, 2)), "same shape"),
        (
            lambda: metrics.agreement(torch.zeros(3, 2), torch.zeros(3, 2), mask=torch.zeros(3, dtype=torch.bool)),
            "mask",
        ),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- ECE
@pytest.mark.parametrize("n, c, m", [(50, 3, 10), (500, 8, 15), (9, 2, 1)])
def test_ece_matches_numpy_and_is_the_one_analyses_uses(n, c, m):
    from analyses import calibration

    g = _gen(n)
    p = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * 2, 1)
    y = torch.randint(0, c, (n,), generator=g)
    ours = metrics.expected_calibration_error(p, y, n_bins=m)
    assert ours == pytest.approx(ece_numpy(p.numpy(), y.numpy(), m), abs=1e-12)
    assert calibration.expected_calibration_error(p, y, n_bins=m) == ours
    assert calibration.calibration(p, y, n_bins=m).ece == ours


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # bin (0.7, 0.8]: 4 samples at confidence 0.75, 3 right; bin (0.9, 1.0]: 2 samples at 1.0, both right;
    # bin (0.5, 0.6]: 10 samples at 0.6 (two classes: 0.6 / 0.4), 6 right
    rows = [[0.75, 0.25]] * 4 + [[1.0, 0.0]] * 2 + [[0.6, 0.4]] * 10
    labels = [0, 0, 0, 1] + [0, 0] + [0] * 6 + [1] * 4
    p = torch.tensor(rows, dtype=torch.float64)
    assert metrics.expected_calibration_error(p, torch.tensor(labels), n_bins=10) == pytest.approx(0.0, abs=1e-15)
    # the same predictions, every label flipped: each bin's gap is |1 − acc − conf|
    flipped = torch.tensor([1 - v for v in labels])
    ref = (4 * abs(0.25 - 0.75) + 2 * 1.0 + 10 * abs(0.4 - 0.6)) / 16
    assert metrics.expected_calibration_error(p, flipped, n_bins=10) == pytest.approx(ref, abs=1e-15)


# ---------------------------------------------------------------- compute dtype
_OLD_RULES = [
    lambda *ts: torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32,  # divergences
    lambda *ts: __import__("functools").reduce(torch.promote_types, [t.dtype for t in ts], torch.float32),  # losses
]


@pytest.mark.parametrize(
    "dtypes",
    [
        (torch.bfloat16,),
        (torch.float16, torch.float32),
        (torch.float32,),
        (torch.float64, torch.bfloat16),
        (torch.float16, torch.float16),
        (torch.float32, torch.float64),
    ],
)
def test_compute_dtype_is_float32_or_wider_like_both_old_helpers(dtypes):
    ts = [torch.zeros(2, dtype=d) for d in dtypes]
    want = torch.float64 if torch.float64 in dtypes else torch.float32
    assert compute_dtype(*ts) == want
    assert all(rule(*ts) == want for rule in _OLD_RULES)
