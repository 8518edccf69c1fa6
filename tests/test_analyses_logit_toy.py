"""analyses.logit_toy: soft labels, KL terms and the student's gradient against autograd, the T² lesson,
bad input, and the figures' content."""

import numpy as np
import pytest
import torch

from analyses import logit_toy as lt
from kdcore.validation import InvalidParameterError
from tests.helpers.figdata import arr

ZT = [6.0, 3.0, 2.0, -1.0, -2.0]
ZS = [3.0, 2.5, -0.5, 0.5, -1.0]


def _autograd(zt, zs, T, t2):
    """∂ (T²·)KL(softmax(zt/T) ‖ softmax(zs/T)) / ∂zs by torch autograd, with the KL summed by hand."""
    z = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.tensor(zt, dtype=torch.float64) / T, 0)
    kl = (p * (p.log() - torch.log_softmax(z / T, 0))).sum() * (T * T if t2 else 1.0)
    kl.backward()
    return kl.item(), z.grad.numpy()


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 17.0])
def test_toy_matches_numpy_and_autograd(T):
    res = lt.toy(ZT, ZS, T)
    e_t, e_s = np.exp(np.array(ZT) / T), np.exp(np.array(ZS) / T)
    p, q = e_t / e_t.sum(), e_s / e_s.sum()
    np.testing.assert_allclose(res.per_class["p_teacher"], p, rtol=1e-12)
    np.testing.assert_allclose(res.per_class["p_student"], q, rtol=1e-12)
    np.testing.assert_allclose(res.per_class["kl_term"], p * np.log(p / q), rtol=1e-10, atol=1e-15)
    kl, grad = _autograd(ZT, ZS, T, t2=False)
    t2kl, grad_t2 = _autograd(ZT, ZS, T, t2=True)
    assert res.kl == pytest.approx(kl, rel=1e-10) and res.t2_kl == pytest.approx(t2kl, rel=1e-10)
    np.testing.assert_allclose(res.per_class["grad"], grad, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(res.per_class["grad_t2"], grad_t2, rtol=1e-9, atol=1e-14)


def test_only_t2_keeps_the_gradient_level_across_temperatures():
    norms = lt.gradient_norms(ZT, ZS, [5.0, 10.0, 20.0])
    with_t2, without = norms["with_t2"].to_numpy(), norms["without_t2"].to_numpy()
    assert with_t2.max() / with_t2.min() < 1.2, with_t2  # about level
    assert without[0] / without[-1] > 10, without  # falls like 1/T² (16× from 5 to 20)
    np.testing.assert_allclose(with_t2 / without, norms["temperature"] ** 2, rtol=1e-12)


def test_equal_logits_give_no_kl_and_no_gradient():
    res = lt.toy([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 2.0)
    assert res.kl == pytest.approx(0.0, abs=1e-15)
    assert np.abs(res.per_class[["grad", "grad_t2"]].to_numpy()).max() < 1e-15


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"teacher_logits": [1.0, 2.0], "student_logits": [1.0, 2.0, 3.0], "temperature": 1.0}, "same length"),
        ({"teacher_logits": [1.0], "student_logits": [1.0], "temperature": 1.0}, "at least 2"),
        ({"teacher_logits": [1.0, float("nan")], "student_logits": [1.0, 2.0], "temperature": 1.0}, "finite"),
        ({"teacher_logits": [1.0, 2.0], "student_logits": [1.0, 2.0], "temperature": 0.0}, "> 0"),
    ],
)
def test_bad_input_is_named(kwargs, words):
    with pytest.raises(InvalidParameterError, match=words):
        lt.toy(**kwargs)


def test_figures_show_every_class_and_both_gradients():
    res = lt.toy(ZT, ZS, 4.0, class_names=list("abcde"))
    d = lt.figure_toy(res).to_dict()
    names = [t["name"] for t in d["data"]]
    assert names == ["teacher p(T)", "student p(T)", "p·log(p/q)", "without T²: (q − p)/T", "with T²: T·(q − p)"]
    assert all(list(arr(t["x"])) == list("abcde") for t in d["data"])
    np.testing.assert_allclose(arr(d["data"][4]["y"]), res.per_class["grad_t2"])
    assert {d["data"][0]["marker"]["color"], d["data"][1]["marker"]["color"]} == {"#1f4e79", "#d9822b"}
    titles = [d["layout"][k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3")]
    assert titles == ["probability", "nats", "gradient per logit"]  # three scales, three axes
    n = lt.figure_gradient_norms(lt.gradient_norms(ZT, ZS), 4.0).to_dict()
    assert n["layout"]["yaxis"]["type"] == "log" and len(n["data"]) == 2
