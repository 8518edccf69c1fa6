"""analyses.cka: METHODS §8 vectors, numpy references, CKA's properties, streaming, figures."""

import inspect

import numpy as np
import pytest
import torch

from analyses import cka
from kdcore import cka as cka_core
from tests.helpers.cka_reference import np_debiased_cka, np_gram_cka, np_hsic1, np_rbf_gram


# ---------------------------------------------------------------- independent numpy references
def _np_centre(k):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return h @ k @ h


def _related(n, d1, d2, rng):
    z = rng.normal(size=(n, 6))
    x = z @ rng.normal(size=(6, d1)) + 0.5 * rng.normal(size=(n, d1))
    y = np.tanh(z @ rng.normal(size=(6, d2))) + 0.5 * rng.normal(size=(n, d2))
    return x, y


# ---------------------------------------------------------------- vectors and signatures
def test_signatures_match_api():
    assert list(inspect.signature(cka.linear_cka).parameters) == ["X", "Y", "debiased"]
    assert inspect.signature(cka.linear_cka).parameters["debiased"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(cka.rbf_cka).parameters) == ["X", "Y", "sigma"]
    p = inspect.signature(cka.cka_matrix).parameters
    assert list(p) == ["features_a", "features_b", "kind", "debiased"]
    assert p["kind"].default == "linear" and p["debiased"].default is False


def test_vectors(vectors):
    x, y = vectors["inputs"]["X"], vectors["inputs"]["Y"]
    v = vectors["values"]
    assert cka.linear_cka(x, y) == pytest.approx(v["linear_cka"], rel=1e-12)
    assert cka.linear_cka(torch.tensor(x), torch.tensor(y), debiased=True) == pytest.approx(
        v["linear_cka_debiased"], rel=1e-12
    )
    assert cka.rbf_cka(np.array(x), np.array(y)) == pytest.approx(v["rbf_cka_s1"], rel=1e-12)
    m = cka.cka_matrix({"x": x}, {"y": y, "x": x}, kind="rbf")
    assert m.loc["x", "y"] == pytest.approx(v["rbf_cka_s1"], rel=1e-12)


# ---------------------------------------------------------------- against numpy on random inputs
@pytest.mark.parametrize("n, d1, d2", [(40, 5, 3), (12, 30, 50), (25, 25, 8), (6, 2, 2)])
def test_linear_matches_numpy(n, d1, d2):
    rng = np.random.default_rng(n + d1)
    x, y = _related(n, d1, d2, rng)
    k, l = x @ x.T, y @ y.T
    assert cka.linear_cka(x, y) == pytest.approx(np_gram_cka(k, l), rel=1e-10)
    assert cka.linear_cka(x, y, debiased=True) == pytest.approx(np_debiased_cka(_np_centre(k), _np_centre(l)), rel=1e-9)
    # HSIC₁ does not depend on centring the features first
    assert cka.linear_cka(x, y, debiased=True) == pytest.approx(np_debiased_cka(k, l), rel=1e-7)
    assert cka.rbf_cka(x, y, sigma=0.7) == pytest.approx(
        np_gram_cka(np_rbf_gram(x, 0.7), np_rbf_gram(y, 0.7)), rel=1e-10
    )


def test_feature_space_form_equals_gram_form():
    rng = np.random.default_rng(1)
    x, y = _related(50, 7, 4, rng)
    xc, yc = torch.tensor(x - x.mean(0)), torch.tensor(y - y.mean(0))
    for debiased in (False, True):
        feature = cka.linear_cka(x, y, debiased=debiased)  # n > d: feature-space path
        gram = cka_core.cka_from_grams(xc @ xc.T, yc @ yc.T, debiased=debiased)  # explicit n×n Gram path
        assert feature == pytest.approx(gram, rel=1e-11)
        # cka_matrix takes the Gram path when n < mean width, the feature path otherwise
        wide = {"x": np.hstack([x] * 10), "y": np.hstack([y] * 20)}  # widths 70, 80 > n = 50
        narrow = {"x": x, "y": y}
        mw, mn = cka.cka_matrix(wide, wide, debiased=debiased), cka.cka_matrix(narrow, narrow, debiased=debiased)
        np.testing.assert_allclose(mw.to_numpy(), mn.to_numpy(), rtol=1e-10)


def test_matrix_equals_pairwise_scalars_and_keeps_layer_order():
    rng = np.random.default_rng(2)
    fa = {f"a{i}": rng.normal(size=(30, 4 + i)) for i in range(3)}
    fb = {f"b{i}": fa["a0"] @ rng.normal(size=(4, 3 + i)) + rng.normal(size=(30, 3 + i)) for i in range(2)}
    for kind, debiased, f in [
        ("linear", False, lambda a, b: cka.linear_cka(a, b)),
        ("linear", True, lambda a, b: cka.linear_cka(a, b, debiased=True)),
        ("rbf", False, lambda a, b: cka.rbf_cka(a, b)),
    ]:
        m = cka.cka_matrix(fa, fb, kind=kind, debiased=debiased)
        assert list(m.index) == ["a0", "a1", "a2"] and list(m.columns) == ["b0", "b1"]
        for a in fa:
            for b in fb:
                assert m.loc[a, b] == pytest.approx(f(fa[a], fb[b]), rel=1e-10), (kind, debiased, a, b)
        assert m.attrs["kind"] == kind and m.attrs["n_inputs"] == 30


# ---------------------------------------------------------------- properties
_VARIANTS = [
    ("linear", lambda a, b: cka.linear_cka(a, b)),
    ("debiased", lambda a, b: cka.linear_cka(a, b, debiased=True)),
    ("rbf", lambda a, b: cka.rbf_cka(a, b)),
]


@pytest.mark.parametrize("name, f", _VARIANTS)
def test_self_similarity_is_one_and_symmetric(name, f):
    rng = np.random.default_rng(3)
    x, y = _related(20, 6, 9, rng)
    assert f(x, x) == pytest.approx(1.0, abs=1e-12)
    assert f(x, y) == pytest.approx(f(y, x), rel=1e-12)
    assert 0.0 < f(x, y) < 1.0


@pytest.mark.parametrize("name, f", _VARIANTS)
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(name, f):
    rng = np.random.default_rng(4)
    x, y = _related(25, 6, 4, rng)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    base = f(x, y)
    assert f(x @ q, y) == pytest.approx(base, rel=1e-9)
    assert f(3.7 * x, y) == pytest.approx(base, rel=1e-9)
    assert f(x, 0.01 * y) == pytest.approx(base, rel=1e-9)


@pytest.mark.parametrize("name, f", _VARIANTS)
def test_not_invariant_to_general_invertible_maps(name, f):
    rng = np.random.default_rng(5)
    x, y = _related(25, 6, 4, rng)
    a = np.diag([10.0, 1.0, 0.1, 1.0, 3.0, 0.5]) @ rng.normal(size=(6, 6))  # invertible, far from orthogonal
    assert abs(np.linalg.det(a)) > 1e-6
    assert abs(f(x @ a, y) - f(x, y)) > 1e-3


def test_linear_cka_is_invariant_to_translation():
    rng = np.random.default_rng(6)
    x, y = _related(15, 3, 5, rng)
    assert cka.linear_cka(x + 5.0, y - 2.0) == pytest.approx(cka.linear_cka(x, y), rel=1e-10)


# ---------------------------------------------------------------- constant features
def test_constant_features_give_zero_not_nan():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(12, 4))
    const = np.full((12, 3), 0.1)
    zero = np.zeros((12, 5))
    for c in (const, zero):
        assert cka.linear_cka(c, x) == 0.0
        assert cka.linear_cka(x, c, debiased=True) == 0.0
        assert cka.rbf_cka(c, x) == 0.0
    for kind, debiased in [("linear", False), ("linear", True), ("rbf", False), ("rbf", True)]:
        m = cka.cka_matrix({"c": const, "x": x}, {"x": x, "z": zero}, kind=kind, debiased=debiased)
        assert np.isfinite(m.to_numpy()).all()
        assert m.loc["c"].tolist() == [0.0, 0.0] and m["z"].tolist() == [0.0, 0.0]
        assert m.loc["x", "x"] == pytest.approx(1.0)
        assert m.attrs["constant_layers"] == ["c", "z"]
    s = cka.MinibatchCKA(["c", "x"], ["x"])
    for i in range(0, 12, 6):
        s.update({"c": const[i : i + 6], "x": x[i : i + 6]}, {"x": x[i : i + 6]})
    r = s.result()
    assert r.loc["c", "x"] == 0.0 and r.attrs["constant_layers"] == ["c"]


# ---------------------------------------------------------------- minibatch streaming
def _np_minibatch(batches_a, batches_b, gram):
    cross = self_a = self_b = 0.0
    for a, b in zip(batches_a, batches_b):
        k, l = gram(a), gram(b)
        cross += np_hsic1(k, l)
        self_a += np_hsic1(k, k)
        self_b += np_hsic1(l, l)
    return cross / np.sqrt(self_a * self_b)  # the 1/K of each mean cancels


@pytest.mark.parametrize("kind, gram", [("linear", lambda x: x @ x.T), ("rbf", np_rbf_gram)])
def test_streaming_equals_the_minibatch_formula_computed_naively(kind, gram):
    rng = np.random.default_rng(8)
    n, b = 60, 15
    xa = {"a0": rng.normal(size=(n, 5)), "a1": rng.normal(size=(n, 2, 3, 3))}  # conv features flattened
    z = xa["a0"] @ rng.normal(size=(5, 4))
    xb = {"b0": z + 0.3 * rng.normal(size=(n, 4)), "b1": np.tanh(z), "b2": rng.normal(size=(n, 7))}
    acc = cka.MinibatchCKA(list(xa), list(xb), kind=kind)
    for i in range(0, n, b):
        acc.update({k: v[i : i + b] for k, v in xa.items()}, {k: torch.tensor(v[i : i + b]) for k, v in xb.items()})
    got = acc.result()
    assert acc.batches == 4 and got.attrs["n_inputs"] == n
    for ka, va in xa.items():
        for kb, vb in xb.items():
            fa = [va[i : i + b].reshape(b, -1) for i in range(0, n, b)]
            fb = [vb[i : i + b] for i in range(0, n, b)]
            assert got.loc[ka, kb] == pytest.approx(_np_minibatch(fa, fb, gram), rel=1e-9), (ka, kb)


def test_single_batch_streaming_equals_full_debiased():
    rng = np.random.default_rng(9)
    fa = {"a": rng.normal(size=(20, 6)), "b": rng.normal(size=(20, 3))}
    fb = {"c": fa["a"][:, :2] + rng.normal(size=(20, 2))}
    stream = cka.minibatch_cka_matrix([(fa, fb)])
    full = cka.cka_matrix(fa, fb, debiased=True)
    np.testing.assert_allclose(stream.to_numpy(), full.to_numpy(), rtol=1e-10)


def test_streaming_estimates_the_full_value_with_many_inputs():
    rng = np.random.default_rng(10)
    x, y = _related(2000, 8, 6, rng)
    stream = cka.minibatch_cka_matrix((({"x": x[i : i + 200]}), {"y": y[i : i + 200]}) for i in range(0, 2000, 200))
    assert stream.loc["x", "y"] == pytest.approx(cka.linear_cka(x, y, debiased=True), abs=0.02)


def test_streaming_rejects_short_batches_and_missing_layers():
    s = cka.MinibatchCKA(["a"], ["b"])
    with pytest.raises(ValueError, match="at least 4 inputs"):
        s.update({"a": np.ones((3, 2))}, {"b": np.ones((3, 2))})
    with pytest.raises(ValueError, match="lacks layers"):
        s.update({"x": np.ones((5, 2))}, {"b": np.ones((5, 2))})
    with pytest.raises(ValueError, match="same inputs"):
        s.update({"a": np.random.rand(5, 2)}, {"b": np.random.rand(6, 2)})
    with pytest.raises(ValueError, match="at least one batch"):
        s.result()


# ---------------------------------------------------------------- feature preparation
def test_conv_features_are_flattened_per_input():
    x = torch.randn(10, 3, 4, 4)
    y = torch.randn(10, 5)
    assert cka.linear_cka(x, y) == pytest.approx(cka.linear_cka(x.reshape(10, -1), y), rel=1e-12)


def test_prepare_features_tokens():
    x = torch.randn(4, 6, 3)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 6, [1, 0, 0, 0, 0, 0]])
    mean = cka.prepare_features({"h": x}, tokens="mean", mask=mask)["h"]
    assert mean.shape == (4, 3)
    assert torch.allclose(mean[1], x[1, :3].double().mean(0))
    per = cka.prepare_features({"h": x}, tokens="per_token", mask=mask)["h"]
    assert per.shape == (int(mask.sum()), 3)
    assert cka.prepare_features({"h": x})["h"].shape == (4, 18)
    with pytest.raises(ValueError, match="tokens"):
        cka.prepare_features({"h": x}, tokens="max")
    with pytest.raises(ValueError, match="token features"):
        cka.prepare_features({"h": torch.randn(4, 3)}, tokens="mean")
    with pytest.raises(ValueError, match="mask"):
        cka.prepare_features({"h": x}, tokens="mean", mask=torch.ones(4, 5))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cka.linear_cka(np.ones((5, 2)), np.ones((6, 2))), "same inputs"),
        (lambda: cka.linear_cka(np.random.rand(3, 2), np.random.rand(3, 2), debiased=True), "at least 4"),
        (lambda: cka.linear_cka(np.array([[np.nan, 1.0]] * 4), np.ones((4, 2))), "'X'.*finite"),
        (lambda: cka.rbf_cka(np.random.rand(5, 2), np.random.rand(5, 2), sigma=0), "sigma"),
        (lambda: cka.cka_matrix({"a": np.random.rand(5, 2)}, {"b": np.random.rand(5, 2)}, kind="cosine"), "kind"),
        (lambda: cka.cka_matrix({"a": np.random.rand(5, 2)}, {"b": np.random.rand(6, 2)}), "same inputs"),
        (lambda: cka.cka_matrix({}, {"b": np.random.rand(6, 2)}), "features_a"),
        (lambda: cka.linear_cka("abc", np.ones((3, 2))), "'X'"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- adapters and figures
class _FakeAdapter:
    """capture(inputs, layers) -> {layer: features}; features are fixed functions of the inputs."""

    def __init__(self, name, widths, seed):
        g = torch.Generator().manual_seed(seed)
        self.name = name
        self.maps = {f"layer{i}": torch.randn(4, w, generator=g) for i, w in enumerate(widths)}

    def default_layers(self):
        return list(self.maps)

    def capture(self, inputs, layers):
        return {k: torch.tanh(inputs @ self.maps[k]) for k in layers}


def test_pair_cka_full_and_streaming():
    x = torch.randn(64, 4)
    t, s = _FakeAdapter("teacher", [8, 6, 5], 0), _FakeAdapter("student", [3, 4], 1)
    full = cka.pair_cka(t, s, x)
    assert full.shape == (3, 2) and full.attrs["model_a"] == "teacher" and full.attrs["model_b"] == "student"
    ref = cka.cka_matrix(t.capture(x, t.default_layers()), s.capture(x, s.default_layers()))
    np.testing.assert_allclose(full.to_numpy(), ref.to_numpy())
    stream = cka.pair_cka(t, s, x, batch_size=16)
    assert stream.attrs["method"].startswith("minibatch (4")
    batches = [
        (t.capture(x[i : i + 16], t.default_layers()), s.capture(x[i : i + 16], s.default_layers()))
        for i in range(0, 64, 16)
    ]
    np.testing.assert_allclose(stream.to_numpy(), cka.minibatch_cka_matrix(batches).to_numpy(), rtol=1e-12)
    itself = cka.pair_cka(t, t, x, batch_size=32)
    np.testing.assert_allclose(np.diag(itself.to_numpy()), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="batch_size"):
        cka.pair_cka(t, s, x, batch_size=2)


def test_figure_heatmap_dict():
    rng = np.random.default_rng(11)
    fa = {f"teacher.block{i}": rng.normal(size=(30, 5)) for i in range(12)}
    fb = {f"student.block{i}": rng.normal(size=(30, 4)) for i in range(6)}
    fb["student.const"] = np.ones((30, 2))
    m = cka.cka_matrix(fa, fb)
    m.attrs.update(model_a="teacher", model_b="student")
    fig = cka.figure_heatmap(m)
    d = fig.to_dict()
    assert [t["type"] for t in d["data"]] == ["heatmap"]
    h = fig.data[0]
    assert np.asarray(h.z).shape == (12, 7) and list(h.y) == list(fa) and list(h.x) == list(fb)
    assert (h.zmin, h.zmax) == (0.0, 1.0)
    assert "CKA" in h.colorbar.title.text
    assert "constant features" in h.text[0][6] and "CKA = " in h.text[3][2]
    assert d["layout"]["xaxis"]["title"]["text"].startswith("student layer")
    assert d["layout"]["yaxis"]["title"]["text"].startswith("teacher layer")
    assert d["layout"]["yaxis"]["autorange"] == "reversed"
    assert "linear CKA" in d["layout"]["title"]["text"] and "n = 30" in d["layout"]["title"]["text"]


def test_figure_heatmaps_side_by_side():
    rng = np.random.default_rng(12)
    fa = {f"t{i}": rng.normal(size=(20, 3)) for i in range(4)}
    fb = {f"s{i}": rng.normal(size=(20, 3)) for i in range(2)}
    fig = cka.figure_heatmaps(
        {"teacher vs student": cka.cka_matrix(fa, fb), "teacher vs itself": cka.cka_matrix(fa, fa)}
    )
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    assert [t.showscale for t in fig.data] == [False, True]
    assert np.asarray(fig.data[1].z).shape == (4, 4)
    assert fig.layout.xaxis2.title.text.endswith("(input → output)")
    with pytest.raises(ValueError, match="results"):
        cka.figure_heatmaps({})
