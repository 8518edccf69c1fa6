"""analyses.scorecard: the risk relation (METHODS §11) and the pair scorecard."""

import math

import numpy as np
import pytest
import torch

from analyses import scorecard as sc


def _onehot_logits(pred, c):
    return torch.nn.functional.one_hot(torch.tensor(pred), c).float() * 5


def test_constructed_risk_numbers():
    y = [0, 1, 2, 0, 1]
    teacher = _onehot_logits([0, 1, 2, 0, 2], 3)  # wrong on the last: err_t = 0.2
    student = _onehot_logits([0, 2, 2, 1, 2], 3)  # wrong on 2nd, 4th, 5th: err_s = 0.6
    r = sc.risk_relation(student, teacher, y)  # disagree on 2nd and 4th: 0.4
    assert (r.err_teacher, r.err_student, r.disagreement) == pytest.approx((0.2, 0.6, 0.4))
    assert r.bound == pytest.approx(0.6) and r.slack == pytest.approx(0.0, abs=1e-12) and r.holds and r.n == 5


@pytest.mark.parametrize("seed", range(5))
def test_bound_holds_and_matches_numpy_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 7
    zt, zs = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    y = rng.integers(0, c, n)
    r = sc.risk_relation(zs, zt, y)
    ps, pt = zs.argmax(1), zt.argmax(1)
    assert r.err_student == pytest.approx((ps != y).mean())
    assert r.err_teacher == pytest.approx((pt != y).mean())
    assert r.disagreement == pytest.approx((ps != pt).mean())
    assert r.err_student <= r.err_teacher + r.disagreement + 1e-12 and r.slack >= 0 and r.holds


def test_token_level_inputs_drop_ignored_positions_and_train_gap():
    zt, zs = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    y = torch.randint(0, 6, (3, 4))
    y[0, 0] = y[2, 3] = -100
    r = sc.risk_relation(zs, zt, y, train=(zs[:2], y[:2]))
    keep = y != -100
    assert r.n == int(keep.sum())
    assert r.err_student == pytest.approx((zs.argmax(-1) != y)[keep].double().mean().item())
    train_err = (zs[:2].argmax(-1) != y[:2])[keep[:2]].double().mean().item()
    assert r.train_err_student == pytest.approx(train_err) and r.gen_gap == pytest.approx(r.err_student - train_err)


def test_model_metrics_against_numpy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(50, 4)) * 2
    y = rng.integers(0, 4, 50)
    m = sc.model_metrics(z, y)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -logp[np.arange(50), y].mean()
    assert m["loss"] == pytest.approx(loss, rel=1e-12) and m["perplexity"] == pytest.approx(math.exp(loss))
    assert m["accuracy"] == pytest.approx((z.argmax(1) == y).mean()) and m["error"] == pytest.approx(1 - m["accuracy"])


def test_scorecard_numbers():
    y = torch.tensor([0, 1, 2, 0, 1])
    t = _onehot_logits([0, 1, 2, 0, 2], 3)
    s = _onehot_logits([0, 1, 2, 1, 2], 3)
    b = _onehot_logits([0, 0, 0, 0, 0], 3)
    card = sc.compute_scorecard(
        s,
        t,
        y,
        teacher_params=1_000_000,
        student_params=250_000,
        teacher_latency_s={"median_s": 0.02},
        student_latency_s=0.005,
        baseline_logits=b,
    )
    assert card.param_ratio == 4.0 and card.speedup == pytest.approx(4.0)
    assert card.teacher["accuracy"] == pytest.approx(0.8) and card.student["accuracy"] == pytest.approx(0.6)
    assert card.baseline["accuracy"] == pytest.approx(0.4)
    assert card.retained == pytest.approx(0.75) and card.disagreement == pytest.approx(0.2)
    table = sc.scorecard_table(card)
    assert table.loc[0, "comparison"] == "4.00× fewer" and table.loc[1, "teacher"] == pytest.approx(20.0)
    assert "75.0%" in table.loc[2, "comparison"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"teacher_params": 0}, "teacher_params"),
        ({"student_params": 2.5}, "student_params"),
        ({"teacher_latency_s": -1.0}, "teacher_latency_s"),
        ({"student_latency_s": "fast"}, "student_latency_s"),
        ({"labels": torch.tensor([0, 1])}, "labels"),
        ({"labels": torch.tensor([0, 1, 7])}, "labels"),
        ({"labels": torch.tensor([-100, -100, -100])}, "nothing to score"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    args = {
        "student_logits": torch.randn(3, 4),
        "teacher_logits": torch.randn(3, 4),
        "labels": torch.tensor([0, 1, 2]),
        "teacher_params": 10,
        "student_params": 5,
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        sc.compute_scorecard(**args)


class _FakeAdapter:
    def __init__(self, logits, params, latency):
        self._logits, self._params, self._latency = logits, params, latency

    def logits(self, inputs):
        return self._logits

    def num_parameters(self):
        return self._params

    def latency(self, inputs, **timing):
        return self._latency


def test_pair_scorecard_uses_the_adapter_contract():
    y = torch.randint(0, 5, (20,))
    t, s, b = (_FakeAdapter(torch.randn(20, 5), p, l) for p, l in [(900, 0.03), (300, 0.01), (300, 0.01)])
    card = sc.pair_scorecard(t, s, None, y, baseline=b)
    ref = sc.compute_scorecard(
        s._logits,
        t._logits,
        y,
        teacher_params=900,
        student_params=300,
        teacher_latency_s=0.03,
        student_latency_s=0.01,
        baseline_logits=b._logits,
    )
    assert card.param_ratio == 3.0 and card.speedup == pytest.approx(3.0)
    assert card.risk == ref.risk and card.student == ref.student and card.baseline == ref.baseline


def test_multilabel_scorecard_matches_numpy():
    """The multi-label table the app shows (moved from app/compute): exact match, per-label accuracy,
    per-label agreement with the teacher, from logits > 0, against a numpy computation."""
    g = torch.Generator().manual_seed(11)
    y = (torch.rand(40, 6, generator=g) < 0.3).long()
    logits = {r: torch.randn(40, 6, generator=g) * 2 for r in ("teacher", "student", "student_baseline")}
    models = {r: _FakeAdapter(z, p, 0.002) for (r, z), p in zip(logits.items(), (900, 300, 300))}
    table = sc.pair_multilabel_scorecard(models, None, y)
    assert list(table["model"]) == ["teacher", "student", "student baseline"]
    assert list(table["parameters"]) == [900, 300, 300] and table["latency_ms"].tolist() == pytest.approx([2.0] * 3)
    yn, tn = y.numpy().astype(bool), logits["teacher"].numpy() > 0
    for row, z in zip(table.itertuples(), logits.values()):
        pred = z.numpy() > 0
        assert row.exact_match == pytest.approx((pred == yn).all(1).mean(), abs=1e-15)
        assert row.label_accuracy == pytest.approx((pred == yn).mean(), abs=1e-15)
        assert row.label_agreement_with_teacher == pytest.approx((pred == tn).mean(), abs=1e-15)
    assert table.loc[0, "label_agreement_with_teacher"] == 1.0
    with pytest.raises(ValueError, match="teacher"):
        sc.pair_multilabel_scorecard({"student": models["student"]}, None, y)


def test_figure_risk_dict():
    r = sc.risk_relation(
        torch.randn(30, 4),
        torch.randn(30, 4),
        torch.randint(0, 4, (30,)),
        train=(torch.randn(10, 4), torch.randint(0, 4, (10,))),
    )
    fig = sc.figure_risk(r)
    d = fig.to_dict()
    assert [t["type"] for t in d["data"]] == ["bar"] * 4 and d["layout"]["barmode"] == "stack"
    assert [t.y[0] for t in fig.data[:3]] == pytest.approx([r.err_student, r.err_teacher, r.disagreement])
    assert fig.data[1].x == fig.data[2].x  # teacher error and disagreement stack into the bound
    assert d["layout"]["yaxis"]["title"]["text"] == "rate (fraction of samples)"
    assert f"{r.err_student:.3f}" in d["layout"]["title"]["text"]
    assert all("hovertemplate" in t for t in d["data"])


def test_figure_scorecard_dict():
    y = torch.randint(0, 3, (12,))
    card = sc.compute_scorecard(
        torch.randn(12, 3),
        torch.randn(12, 3),
        y,
        teacher_params=2_000_000,
        student_params=500_000,
        teacher_latency_s=0.01,
        student_latency_s=0.002,
        baseline_logits=torch.randn(12, 3),
    )
    fig = sc.figure_scorecard(card)
    assert [t.type for t in fig.data] == ["bar"] * 9
    assert fig.data[0].y[0] == pytest.approx(2.0) and fig.data[1].y[0] == pytest.approx(10.0)
    assert fig.layout.yaxis.title.text == "parameters (millions)" and fig.layout.yaxis3.title.text == "accuracy (%)"
    assert "4.00× fewer" in fig.layout.annotations[0].text and "5.00× faster" in fig.layout.annotations[1].text
    nolat = sc.compute_scorecard(torch.randn(12, 3), torch.randn(12, 3), y, teacher_params=2, student_params=1)
    assert len(sc.figure_scorecard(nolat).data) == 4  # no latency bars, no baseline
