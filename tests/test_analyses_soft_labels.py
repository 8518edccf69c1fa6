"""analyses.soft_labels: METHODS §2 vectors, an independent numpy reference, autograd, figures."""

import inspect

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import soft_labels as sl


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_sweep(z, temps, y):
    rows = []
    for t in temps:
        p = _np_softmax(z / t)
        h = -(p * np.log(p)).sum(1)
        py = p[np.arange(len(y)), y]
        rows.append([t, h.mean(), p.max(1).mean(), py.mean(), (1 - py).mean(), np.exp(h).mean()])
    return np.array(rows)


def test_signature_matches_api():
    assert (
        str(inspect.signature(sl.temperature_sweep))
        == "(teacher_logits: 'Any', temperatures: 'Sequence[float]', labels: 'Any' = None) -> 'pd.DataFrame'"
    )


@pytest.mark.parametrize("as_numpy", [False, True])
def test_temperature_rows_match_the_vectors(vectors, as_numpy):
    z = vectors["inputs"]["teacher_logits"]
    y = vectors["inputs"]["labels"]
    z = np.array(z) if as_numpy else torch.tensor(z, dtype=torch.float64)
    expected = pd.DataFrame(vectors["values"]["temperature_rows_teacher"])
    got = sl.temperature_sweep(z, expected["temperature"].tolist(), y)
    assert list(got.columns) == list(sl.SWEEP_COLUMNS)
    for col in sl.SWEEP_COLUMNS:
        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12, atol=1e-12, err_msg=col)


@pytest.mark.parametrize("shape", [(1, 2), (7, 5), (64, 20)])
def test_sweep_matches_independent_numpy(shape):
    rng = np.random.default_rng(shape[0])
    z = rng.normal(scale=3.0, size=shape)
    y = rng.integers(0, shape[1], size=shape[0])
    temps = [0.5, 1.0, 3.0, 10.0]
    got = sl.temperature_sweep(torch.tensor(z, dtype=torch.float32), temps, torch.tensor(y)).to_numpy()
    np.testing.assert_allclose(
        got, _np_sweep(z.astype(np.float32).astype(np.float64), temps, y), rtol=1e-10, atol=1e-12
    )


def test_labels_none_uses_the_teacher_argmax():
    z = torch.randn(30, 6)
    temps = [1.0, 2.0, 4.0]
    a = sl.temperature_sweep(z, temps)
    b = sl.temperature_sweep(z, temps, z.argmax(1))
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_allclose(a["target_prob"], a["max_prob"])
    # and a label that is not the argmax lowers the target probability
    c = sl.temperature_sweep(z, temps, (z.argmax(1) + 1) % 6)
    assert (c["target_prob"] < a["target_prob"]).all()


def test_identities_and_limits():
    z = torch.randn(40, 10) * 4
    df = sl.temperature_sweep(z, [1e-2, 1.0, 1e4])
    np.testing.assert_allclose(df["target_prob"] + df["dark_knowledge"], 1.0, atol=1e-12)
    assert (df["effective_classes"] >= 1 - 1e-12).all() and (df["effective_classes"] <= 10 + 1e-9).all()
    assert df["entropy"].iloc[-1] == pytest.approx(np.log(10), abs=1e-6)  # T → ∞: uniform
    assert df["effective_classes"].iloc[-1] == pytest.approx(10, abs=1e-4)
    assert df["entropy"].is_monotonic_increasing


def test_dark_knowledge_is_exact_when_p_y_is_close_to_one():
    z = torch.tensor([[60.0, 0.0, 0.0]], dtype=torch.float64)
    df = sl.temperature_sweep(z, [1.0], [0])
    assert df["dark_knowledge"].iloc[0] == pytest.approx(2 * np.exp(-60.0), rel=1e-9)


def test_masked_class_adds_zero_not_nan():
    z = torch.tensor([[2.0, -torch.inf, 0.5], [0.0, 1.0, -torch.inf]])
    df = sl.temperature_sweep(z, [1.0, 4.0])
    assert np.isfinite(df.to_numpy()).all()
    ref = sl.temperature_sweep(torch.tensor([[2.0, 0.5]]), [1.0, 4.0])
    one = sl.temperature_sweep(z[:1], [1.0, 4.0])
    np.testing.assert_allclose(one.to_numpy(), ref.to_numpy(), rtol=1e-12)


def test_per_sample_rows_average_to_the_sweep():
    z = torch.randn(9, 4)
    per = sl.temperature_sweep_per_sample(z, [1.0, 2.0])
    assert len(per) == 18 and set(per["sample"]) == set(range(9))
    means = per.drop(columns="sample").groupby("temperature").mean().reset_index()
    np.testing.assert_allclose(means.to_numpy(), sl.temperature_sweep(z, [1.0, 2.0]).to_numpy())


@pytest.mark.parametrize("temp", [0.7, 1.0, 4.0, 20.0])
def test_gradient_scale_equals_autograd(temp):
    zs = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(6, 8, dtype=torch.float64) * 2
    p = torch.softmax(zt / temp, -1)
    kl = (p * (torch.log_softmax(zt / temp, -1) - torch.log_softmax(zs / temp, -1))).sum(-1)  # [N]
    (grad,) = torch.autograd.grad((temp**2 * kl).sum(), zs)  # per-sample gradients, rows independent
    df = sl.gradient_scale(zs.detach(), zt, [temp])
    assert df["grad_norm"].iloc[0] == pytest.approx(grad.norm(dim=1).mean().item(), rel=1e-10)
    assert df["t2_kl"].iloc[0] == pytest.approx((temp**2 * kl).mean().item(), rel=1e-10)


def test_t2_kl_approaches_the_logit_matching_limit():
    zs, zt = torch.randn(20, 7), torch.randn(20, 7) * 2
    dz = zs.double().numpy() - zt.double().numpy()
    limit = (((dz - dz.mean(1, keepdims=True)) ** 2).sum(1) / (2 * 7)).mean()
    df = sl.gradient_scale(zs, zt, [1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_allclose(df["limit"], limit, rtol=1e-10)
    gaps = (df["t2_kl"] - limit).abs().to_numpy()
    assert gaps[-1] < 1e-3 * limit
    assert (np.diff(gaps[1:]) < 0).all()
    np.testing.assert_allclose(
        sl.logit_matching_limit(zs, zt).numpy(), ((dz - dz.mean(1, keepdims=True)) ** 2).sum(1) / 14, rtol=1e-10
    )


def test_gradient_scale_is_zero_when_student_equals_teacher():
    z = torch.randn(5, 4)
    df = sl.gradient_scale(z, z, [1.0, 3.0])
    np.testing.assert_allclose(df[["grad_norm", "t2_kl", "limit"]].to_numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperatures": [1.0, 0.0]}, "temperatures"),
        ({"temperatures": []}, "temperatures"),
        ({"temperatures": [float("nan")]}, "temperatures"),
        ({"labels": [0, 9, 1]}, "labels"),
        ({"labels": [0, 1]}, "labels"),
        ({"teacher_logits": torch.tensor([[1.0, float("nan")]] * 3)}, "teacher_logits"),
        ({"teacher_logits": torch.randn(3)}, "teacher_logits"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"teacher_logits": torch.randn(3, 4), "temperatures": [1.0], "labels": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        sl.temperature_sweep(**args)


def test_student_teacher_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="class counts"):
        sl.gradient_scale(torch.randn(3, 4), torch.randn(3, 5), [1.0])


def test_class_probabilities_long_format():
    zt, zs = torch.randn(5, 4), torch.randn(5, 4)
    df = sl.class_probabilities(zt, [1.0, 2.0, 4.0], student_logits=zs, samples=[0, 3], class_names=list("abcd"))
    assert len(df) == 2 * 3 * 2 * 4
    sums = df.groupby(["role", "sample", "temperature"])["probability"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-12)
    row = df[(df.role == "student") & (df["sample"] == 3) & (df.temperature == 2.0) & (df.class_name == "c")]
    assert row["probability"].item() == pytest.approx(torch.softmax(zs[3].double() / 2, 0)[2].item(), rel=1e-12)
    with pytest.raises(ValueError, match="samples"):
        sl.class_probabilities(zt, [1.0], samples=[7])
    with pytest.raises(ValueError, match="class_names"):
        sl.class_probabilities(zt, [1.0], class_names=["a"])


def test_figure_sweep_dict():
    temps = [1.0, 2.0, 4.0, 8.0]
    df = sl.compare_sweeps(torch.randn(10, 5), torch.randn(10, 5), temps)
    fig = sl.figure_sweep(df).to_dict()
    assert [t["type"] for t in fig["data"]] == ["scatter"] * 10  # 4 panels × 2 roles + 2 max-prob lines
    assert all(len(t.x) == len(temps) for t in sl.figure_sweep(df).data)
    assert {t["name"] for t in fig["data"] if t.get("showlegend") is not False} == {"teacher", "student"}
    assert all("hovertemplate" in t for t in fig["data"])
    layout = fig["layout"]
    assert "temperature" in layout["title"]["text"] or "Soft labels" in layout["title"]["text"]
    ytitles = [layout[k]["title"]["text"] for k in layout if k.startswith("yaxis")]
    assert "entropy H (nats)" in ytitles and len(ytitles) == 4
    assert all(layout[k]["type"] == "log" for k in layout if k.startswith("xaxis"))
    # teacher-only sweep works too
    assert len(sl.figure_sweep(sl.temperature_sweep(torch.randn(4, 3), temps)).data) == 5


def test_figure_class_probabilities_dict():
    df = sl.class_probabilities(torch.randn(5, 20), [1.0, 2.0, 5.0], student_logits=torch.randn(5, 20), samples=[1, 2])
    fig = sl.figure_class_probabilities(df, top=20).to_dict()
    assert len(fig["data"]) == 2 * 20 * 2
    assert sum(1 for t in fig["data"] if t["showlegend"]) == 20  # one legend entry per class
    dashes = {t["line"]["dash"] for t in fig["data"]}
    assert dashes == {"solid", "dash"}
    assert len({t["line"]["color"] for t in fig["data"]}) == 20
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("temperature")
    assert fig["layout"]["yaxis"]["title"]["text"].startswith("probability")


def test_figure_gradient_scale_dict():
    df = sl.gradient_scale(torch.randn(8, 6), torch.randn(8, 6), [1.0, 2.0, 4.0])
    fig = sl.figure_gradient_scale(df).to_dict()
    assert [t["name"] for t in fig["data"]][:2] == ["gradient scale", "T²·KL"]
    assert fig["data"][2]["line"]["dash"] == "dash"
    assert fig["layout"]["yaxis2"]["title"]["text"] == "T²·KL (nats)"
    assert list(sl.figure_gradient_scale(df).data[0].y) == pytest.approx(df["grad_norm"].tolist())
    traces = sl.figure_gradient_scale(df).data
    for trace, column, axis in zip(traces, ["grad_norm", "t2_kl", "limit"], ["y", "y2", "y2"], strict=True):
        assert list(trace.y) == pytest.approx(df[column].tolist()) and trace.yaxis == axis
    assert [t.mode for t in traces] == ["lines+markers", "lines+markers", "lines"]


class _FakeAdapter:
    def __init__(self, logits):
        self._logits = logits

    def logits(self, inputs):
        return self._logits[inputs]


def test_sweep_pair_on_adapters_flattens_tokens_and_drops_ignored():
    zt, zs = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    labels = torch.tensor([[1, -100, 2], [0, 4, -100]])
    out = sl.sweep_pair(_FakeAdapter(zt), _FakeAdapter(zs), slice(None), [1.0, 2.0], labels)
    keep = labels.reshape(-1) != -100
    ref = sl.compare_sweeps(zs.reshape(-1, 5)[keep], zt.reshape(-1, 5)[keep], [1.0, 2.0], labels.reshape(-1)[keep])
    pd.testing.assert_frame_equal(out["sweep"], ref)
    assert set(out) == {"sweep", "gradient", "classes"}
