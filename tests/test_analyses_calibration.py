"""analyses.calibration: METHODS §10 vector, constructed cases, a numpy reference, figures."""

import inspect

import numpy as np
import pytest
import torch

from analyses import calibration as cal


def _np_reference(p, y, m):
    """Loop over bins with the explicit (lo, hi] comparisons of METHODS §10."""
    conf, pred = p.max(1), p.argmax(1)
    correct = (pred == y).astype(float)
    ece, gaps = 0.0, []
    for i in range(m):
        lo, hi = i / m, (i + 1) / m
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs(correct[inside].mean() - conf[inside].mean())
            ece += inside.mean() * gap
            gaps.append(gap)
    nll = -np.log(p[np.arange(len(y)), y]).mean()
    brier = ((p - np.eye(p.shape[1])[y]) ** 2).sum(1).mean()
    return ece, max(gaps), nll, brier


def test_signatures_match_api():
    for f in (cal.expected_calibration_error, cal.reliability_table):
        p = inspect.signature(f).parameters
        assert list(p) == ["probs", "labels", "n_bins"]
        assert p["n_bins"].default == 15 and p["n_bins"].kind is inspect.Parameter.KEYWORD_ONLY


def test_vector(vectors):
    z = torch.tensor(vectors["inputs"]["student_logits"], dtype=torch.float64)
    p = torch.softmax(z, 1)
    assert cal.expected_calibration_error(p, vectors["inputs"]["labels"]) == pytest.approx(
        vectors["values"]["ece_15bins_student"], rel=1e-12
    )
    r = cal.calibration_from_logits(z, vectors["inputs"]["labels"])
    assert r.ece == pytest.approx(vectors["values"]["ece_15bins_student"], rel=1e-12)


@pytest.mark.parametrize("n, c, m", [(50, 3, 15), (400, 10, 15), (200, 20, 7), (30, 2, 1)])
def test_matches_independent_numpy(n, c, m):
    rng = np.random.default_rng(n + c)
    z = rng.normal(scale=2.5, size=(n, c))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.where(rng.random(n) < 0.6, p.argmax(1), rng.integers(0, c, n))
    ece, mce, nll, brier = _np_reference(p, y, m)
    r = cal.calibration(p, y, n_bins=m)
    assert r.ece == pytest.approx(ece, rel=1e-12)
    assert cal.expected_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=m) == pytest.approx(ece, rel=1e-12)
    assert (r.mce, r.nll, r.brier) == pytest.approx((mce, nll, brier), rel=1e-12)
    assert r.accuracy == pytest.approx((p.argmax(1) == y).mean())
    rl = cal.calibration_from_logits(z, y, n_bins=m)
    assert (rl.ece, rl.nll, rl.brier) == pytest.approx((ece, nll, brier), rel=1e-10)


def _probs_with_confidence(conf, c=4):
    """Rows whose max probability (class 0) is exactly conf, the rest spread evenly."""
    conf = np.asarray(conf, dtype=np.float64)
    rest = (1 - conf) / (c - 1)
    p = np.repeat(rest[:, None], c, axis=1)
    p[:, 0] = conf
    return p


def test_constructed_cases():
    # 10 samples at confidence 0.8, 8 correct: perfectly calibrated
    p = _probs_with_confidence([0.8] * 10)
    y = np.array([0] * 8 + [1] * 2)
    assert cal.expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-15)
    # confident and always wrong: ECE = confidence
    assert cal.expected_calibration_error(_probs_with_confidence([0.9] * 5), [1] * 5) == pytest.approx(0.9)
    # two bins by hand: 4 samples at 0.95 (3 correct), 6 at 0.55 (all correct)
    p = _probs_with_confidence([0.95] * 4 + [0.55] * 6)
    y = np.array([0, 0, 0, 1] + [0] * 6)
    expected = 0.4 * abs(0.75 - 0.95) + 0.6 * abs(1.0 - 0.55)
    assert cal.expected_calibration_error(p, y) == pytest.approx(expected, rel=1e-12)
    t = cal.reliability_table(p, y)
    assert t["count"].sum() == 10 and t.loc[t["count"] > 0, "bin"].tolist() == [9, 15]
    assert np.isnan(t.loc[0, "accuracy"]) and np.isnan(t.loc[0, "gap"])
    r = cal.calibration(p, y)
    assert r.mce == pytest.approx(0.45)


def test_bin_edges_are_right_closed():
    # conf exactly k/M goes to bin k ((k−1)/M, k/M]; just above goes to bin k+1
    for k in (3, 5, 10, 15):
        edge = k / 15
        t = cal.reliability_table(_probs_with_confidence([max(edge, 0.25)], c=4), [0])
        if edge >= 0.25:
            assert t.loc[t["count"] == 1, "bin"].item() == k
    t = cal.reliability_table(_probs_with_confidence([1 / 3 + 1e-12, 0.5, 0.5 + 1e-12], c=3), [0, 0, 0])
    assert t.loc[t["count"] > 0, "bin"].tolist() == [6, 8]
    assert t.loc[t["bin"] == 8, "count"].item() == 2  # 0.5 = 7.5/15 lies inside bin 8 (7/15, 8/15]
    t = cal.reliability_table(_probs_with_confidence([0.4, 0.4 + 1e-12], c=3), [0, 0])
    assert t.loc[t["count"] > 0, "bin"].tolist() == [6, 7]  # 0.4 = 6/15 closes bin 6


def test_nll_from_logits_stays_finite_where_probabilities_underflow():
    z = torch.tensor([[0.0, 800.0], [5.0, 0.0]], dtype=torch.float64)
    r = cal.calibration_from_logits(z, [0, 0])
    assert r.nll == pytest.approx((800.0 + np.log1p(np.exp(-5.0))) / 2, rel=1e-9)
    assert cal.calibration(torch.softmax(z, 1), [0, 0]).nll == np.inf


@pytest.mark.parametrize(
    "probs, labels, kwargs, match",
    [
        (np.array([[0.5, 0.6]]), [0], {}, "sum to 1"),
        (np.array([[1.5, -0.5]]), [0], {}, r"\[0, 1\]"),
        (np.array([[0.5, 0.5]]), [2], {}, "labels"),
        (np.array([[0.5, 0.5]]), [0, 1], {}, "labels"),
        (np.array([[0.5, 0.5]]), [0.0], {}, "labels"),
        (np.array([[0.5, 0.5]]), [0], {"n_bins": 0}, "n_bins"),
        (np.array([0.5, 0.5]), [0], {}, "probs"),
        (np.zeros((0, 3)), [], {}, "probs"),
    ],
)
def test_bad_input_is_named(probs, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cal.expected_calibration_error(probs, labels, **kwargs)


def test_compare_and_metrics_table():
    zt, zs = torch.randn(40, 5) * 3, torch.randn(40, 5)
    y = torch.randint(0, 5, (40,))
    res = cal.compare_calibration(zs, zt, y, baseline_logits=zs * 2)
    assert list(res) == ["teacher", "student", "baseline"]
    table = cal.metrics_table(res)
    assert table["model"].tolist() == ["teacher", "student", "baseline"]
    assert table.loc[1, "ece"] == pytest.approx(cal.expected_calibration_error(torch.softmax(zs.double(), 1), y))


def test_figure_reliability_dict():
    zt, zs = torch.randn(60, 5) * 3, torch.randn(60, 5)
    y = torch.randint(0, 5, (60,))
    fig = cal.figure_reliability(cal.compare_calibration(zs, zt, y, n_bins=10))
    d = fig.to_dict()
    assert [t["type"] for t in d["data"]] == ["bar", "scatter", "scatter", "bar"] * 2
    assert all(len(t.x) == 10 for t in fig.data if t.type == "bar")
    assert sum(t.showlegend is not False for t in fig.data) == 4  # one legend entry per kind
    assert fig.data[0].marker.color != fig.data[4].marker.color  # teacher vs student colours
    assert "ECE " in d["layout"]["annotations"][0]["text"] and "teacher" in d["layout"]["annotations"][0]["text"]
    assert d["layout"]["yaxis"]["title"]["text"] == "accuracy (fraction correct)"
    assert d["layout"]["xaxis3"]["title"]["text"] == "confidence = max probability"
    assert d["layout"]["yaxis3"]["title"]["text"] == "samples (count)"
    assert all("hovertemplate" in t for t in d["data"] if t["type"] == "bar")
    assert sum(fig.data[3].y) == 60


def test_figure_metrics_dict():
    res = cal.compare_calibration(torch.randn(20, 3), torch.randn(20, 3), torch.randint(0, 3, (20,)))
    fig = cal.figure_metrics(res)
    assert [t.type for t in fig.data] == ["bar"] * 8
    assert fig.data[0].y[0] == pytest.approx(res["teacher"].ece)
    assert fig.layout.annotations[2].text == "NLL (nats)"  # the panel title names measure and unit
    assert fig.layout.yaxis2.title.text is None  # no y title on the neighbouring panel
    with pytest.raises(ValueError, match="results"):
        cal.figure_metrics({})
