"""analyses.components: CAKD/DKD components per sample and per class, token-level divergences, figures."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import components
from kdcore.divergences import KINDS, divergence_loss, token_divergence
from tests.helpers.figdata import arr


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):
    return np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(np.where(q > 0, q, 1))), 0.0).sum(-1)


def _np_components(s, t, strong, T):
    """Independent float64 BCD, SCD, WCD, p_S, p_W, KL per sample (METHODS §4)."""
    p, q = _softmax(t.numpy().astype(np.float64) / T), _softmax(s.numpy().astype(np.float64) / T)
    S = strong.numpy().astype(bool)
    out = {k: [] for k in ("bcd", "scd", "wcd", "p_strong", "p_weak", "kl")}
    for pi, qi, si in zip(p, q, S):
        ps, pw, qs, qw = pi[si].sum(), pi[~si].sum(), qi[si].sum(), qi[~si].sum()
        out["bcd"].append(_kl(np.array([ps, pw]), np.array([qs, qw])))
        out["scd"].append(_kl(pi[si] / ps, qi[si] / qs))
        out["wcd"].append(_kl(pi[~si] / pw, qi[~si] / qw) if (~si).sum() > 1 else 0.0)
        out["p_strong"].append(ps)
        out["p_weak"].append(pw)
        out["kl"].append(_kl(pi, qi))
    return {k: np.array(v) for k, v in out.items()}


def _np_topk(t, k):
    order = np.argsort(-t.numpy(), axis=1, kind="stable")[:, :k]
    mask = np.zeros(t.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return torch.from_numpy(mask)


@pytest.mark.parametrize("shape", [(16, 5), (40, 10), (7, 3)])
@pytest.mark.parametrize("T", [1.0, 4.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_components_match_numpy_and_sum_to_kl(shape, T, dtype):
    b, c = shape
    s, t = torch.randn(b, c, dtype=dtype) * 2, torch.randn(b, c, dtype=dtype) * 3
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 1e-6}
    y = torch.randint(0, c, (b,))
    r = components.compute(s, t, y, rules=("target", "topk", "mass"), k=2, tau=0.8, temperature=T)
    assert set(r.per_sample["rule"]) == {"target", "topk", "mass"} and len(r.per_sample) == 3 * b
    strong = {"target": torch.nn.functional.one_hot(y, c).bool(), "topk": _np_topk(t, 2)}
    for rule, mask in strong.items():
        got = r.per_sample[r.per_sample["rule"] == rule].sort_values("sample")
        exp = _np_components(s, t, mask, T)
        for col in exp:
            np.testing.assert_allclose(got[col].to_numpy(), exp[col], **tol, err_msg=f"{rule}/{col}")
        assert got["n_strong"].tolist() == mask.sum(1).tolist()
    ps = r.per_sample
    # the identity: KL = BCD + p_S·SCD + p_W·WCD, and shares sum to 1
    np.testing.assert_allclose(
        ps["bcd"] + ps["p_strong"] * ps["scd"] + ps["p_weak"] * ps["wcd"], ps["kl"], rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(ps[["share_bcd", "share_scd", "share_wcd"]].sum(axis=1), 1.0, rtol=1e-5)
    # DKD: KL = TCKD + (1 − p_t)·NCKD, and with S = {target} BCD = TCKD, WCD = NCKD
    d = r.dkd
    np.testing.assert_allclose(d["tckd"] + (1 - d["p_target"]) * d["nckd"], d["kl"], rtol=1e-5, atol=1e-7)
    tgt = ps[ps["rule"] == "target"].sort_values("sample")
    np.testing.assert_allclose(tgt["bcd"].to_numpy(), d["tckd"].to_numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tgt["wcd"].to_numpy(), d["nckd"].to_numpy(), rtol=1e-6, atol=1e-9)
    assert (tgt["scd"] == 0).all()


def test_per_class_aggregation_equals_an_independent_groupby():
    b, c = 60, 6
    s, t = torch.randn(b, c), torch.randn(b, c) * 2
    y = torch.randint(0, c, (b,))
    r = components.compute(s, t, y, rules=("topk",), k=3, class_names=list("abcdef"))
    exp = _np_components(s, t, _np_topk(t, 3), 1.0)
    frame = pd.DataFrame(
        {
            "cls": y.numpy(),
            "kl": exp["kl"],
            "bcd": exp["bcd"],
            "ws": exp["p_strong"] * exp["scd"],
            "ww": exp["p_weak"] * exp["wcd"],
        }
    )
    g = frame.groupby("cls")
    means, sums, counts = g.mean(), g.sum(), g.size()
    got = r.per_class[r.per_class["rule"] == "topk"].set_index("class").sort_index()
    assert got.index.tolist() == means.index.tolist()
    assert got["n"].tolist() == counts.tolist()
    np.testing.assert_allclose(got["kl"], means["kl"], rtol=1e-5)
    np.testing.assert_allclose(got["bcd"], means["bcd"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got["scd_weighted"], means["ws"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got["share_bcd"], sums["bcd"] / sums["kl"], rtol=1e-5)
    np.testing.assert_allclose(got["share_wcd"], sums["ww"] / sums["kl"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got[["share_bcd", "share_scd", "share_wcd"]].sum(axis=1), 1.0, rtol=1e-6)
    # DKD per class, likewise
    dexp = _np_components(s, t, torch.nn.functional.one_hot(y, c).bool(), 1.0)
    dframe = pd.DataFrame({"cls": y.numpy(), "kl": dexp["kl"], "tckd": dexp["bcd"], "wn": dexp["p_weak"] * dexp["wcd"]})
    dsum = dframe.groupby("cls").sum()
    dgot = r.dkd_per_class.set_index("class").sort_index()
    np.testing.assert_allclose(dgot["share_tckd"], dsum["tckd"] / dsum["kl"], rtol=1e-5)
    np.testing.assert_allclose(dgot["share_nckd"], dsum["wn"] / dsum["kl"], rtol=1e-5)


def test_multilabel_custom_mask_and_zero_kl():
    b, c = 8, 5
    t = torch.randn(b, c)
    multi = torch.rand(b, c) > 0.5
    multi[:, 0] = True
    r = components.compute(t.clone(), t, multi)  # student equals teacher: KL = 0
    assert r.rules == ("labels", "topk", "mass") and r.dkd is None and r.dkd_per_class is None
    assert r.per_sample["class"].tolist()[:b] == t.argmax(1).tolist()  # no single label: teacher's top class
    np.testing.assert_allclose(r.per_sample[["kl", "bcd", "scd", "wcd"]].to_numpy(), 0.0, atol=1e-6)
    lab = r.per_sample[r.per_sample["rule"] == "labels"]
    assert lab["n_strong"].tolist() == multi.sum(1).tolist()
    s = torch.randn(b, c)
    r = components.compute(s, t, None, rules=(), strong=multi)
    assert r.rules == ("custom",)
    exp = _np_components(s, t, multi, 1.0)
    np.testing.assert_allclose(r.per_sample["wcd"].to_numpy(), exp["wcd"], rtol=1e-5, atol=1e-7)


def test_compute_rejects_bad_input():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="labels"):
        components.compute(s, t, torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match="class counts"):
        components.compute(torch.randn(4, 5), t, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="'rule'"):
        components.compute(s, t, torch.zeros(4, dtype=torch.long), rules=("nearest",))
    with pytest.raises(ValueError, match="no strong-set rule"):
        components.compute(s, t, None, rules=())


# ---------------------------------------------------------------------------- token level
def _np_entropy(z, T=1.0):
    p = _softmax(z.numpy().astype(np.float64) / T)
    return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(-1)


@pytest.mark.parametrize("length,vocab", [(12, 20), (5, 7)])
def test_token_components_match_kdcore_and_numpy(length, vocab):
    s, t = torch.randn(1, length, vocab), torch.randn(1, length, vocab) * 2
    labels = torch.randint(0, vocab, (length,))
    labels[:2] = -100
    r = components.token_components(s, t, labels=labels, tokens=[f"w{i}" for i in range(length)], temperature=2.0)
    df = r.per_position
    assert r.kinds == KINDS and len(df) == length and df["kept"].tolist() == [False, False] + [True] * (length - 2)
    for kind in KINDS:
        np.testing.assert_allclose(
            df[kind].to_numpy(), token_divergence(s[0], t[0], kind, temperature=2.0).double().numpy(), rtol=1e-6
        )
        assert r.means[kind] == pytest.approx(
            float(divergence_loss(s, t, kind, labels=labels[None], temperature=2.0)), rel=1e-5
        )
    p, q = _softmax(t[0].double().numpy() / 2), _softmax(s[0].double().numpy() / 2)
    np.testing.assert_allclose(df["fkl"].to_numpy(), _kl(p, q), rtol=1e-5)
    np.testing.assert_allclose(df["teacher_entropy"].to_numpy(), _np_entropy(t[0], 2.0), rtol=1e-10)
    np.testing.assert_allclose(df["student_entropy"].to_numpy(), _np_entropy(s[0], 2.0), rtol=1e-10)


def test_token_components_masked_vocab_and_cross_vocab():
    t = torch.randn(4, 6)
    t[:, 5] = -math.inf  # a masked vocabulary entry
    s = torch.randn(4, 6)
    r = components.token_components(s, t, kinds=("fkl", "tvd"), mask=torch.tensor([1, 1, 0, 1]))
    assert np.isfinite(r.per_position[["fkl", "tvd", "teacher_entropy"]].to_numpy()).all()
    np.testing.assert_allclose(r.per_position["teacher_entropy"], _np_entropy(t[:, :5]), rtol=1e-10)
    assert r.means["tvd"] == pytest.approx(r.per_position["tvd"].to_numpy()[[0, 1, 3]].mean())
    r = components.token_components(torch.randn(4, 9), torch.randn(4, 6))
    assert r.kinds == ("uld",)
    with pytest.raises(ValueError, match="'kinds'"):
        components.token_components(s, t, kinds=("kl",))
    with pytest.raises(ValueError, match="'labels'"):
        components.token_components(s, t, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="one text"):
        components.token_components(torch.randn(2, 4, 6), torch.randn(2, 4, 6))


# ---------------------------------------------------------------------------- figures
def _result():
    s, t = torch.randn(30, 4), torch.randn(30, 4) * 2
    return components.compute(s, t, torch.arange(30) % 4, class_names=["cat", "dog", "fox", "owl"])


def test_class_and_dkd_figures():
    r = _result()
    fig = components.class_figure(r, rule="target").to_dict()
    assert [d["type"] for d in fig["data"]] == ["bar"] * 6 and fig["layout"]["barmode"] == "stack"
    assert [d["name"] for d in fig["data"][:3]] == ["BCD", "p_S·SCD", "p_W·WCD"]
    assert list(fig["data"][0]["x"]) == ["cat", "dog", "fox", "owl"]
    pc = r.per_class[r.per_class["rule"] == "target"]
    np.testing.assert_allclose(arr(fig["data"][0]["y"]), pc["bcd"].to_numpy())
    np.testing.assert_allclose(arr(fig["data"][5]["y"]), pc["share_wcd"].to_numpy())
    lay = fig["layout"]
    assert lay["yaxis"]["title"]["text"] == "KL component (nats)" and "share" in lay["yaxis2"]["title"]["text"]
    assert lay["xaxis"]["title"]["text"] == "class" and "strong set: target" in lay["title"]["text"]
    fig = components.dkd_figure(r).to_dict()
    assert [d["name"] for d in fig["data"][:2]] == ["TCKD", "(1 − p_t)·NCKD"]
    np.testing.assert_allclose(
        arr(fig["data"][0]["y"]) + arr(fig["data"][1]["y"]), r.dkd_per_class["kl"].to_numpy(), rtol=1e-6
    )
    with pytest.raises(ValueError, match="'rule'"):
        components.class_figure(r, rule="labels")


def test_sample_and_rules_figures():
    r = _result()
    fig = components.sample_figure(r, rule="mass", top=10).to_dict()
    assert len(fig["data"]) == 3 and all(len(arr(d["y"])) == 10 for d in fig["data"])
    total = sum(arr(d["y"]) for d in fig["data"])
    top = r.per_sample[r.per_sample["rule"] == "mass"]["kl"].sort_values(ascending=False).to_numpy()[:10]
    np.testing.assert_allclose(total, top, rtol=1e-5)
    assert fig["layout"]["yaxis"]["title"]["text"] == "KL component (nats)"
    fig = components.rules_figure(r).to_dict()
    assert list(fig["data"][0]["x"]) == ["target", "topk", "mass"]
    np.testing.assert_allclose(sum(arr(d["y"]) for d in fig["data"]), 1.0, rtol=1e-6)


def test_token_figure():
    s, t = torch.randn(6, 11), torch.randn(6, 11)
    toks = ["a", "b", "a", "c", "d", "e"]  # repeated tokens keep their own column
    r = components.token_components(s, t, tokens=toks, labels=torch.tensor([-100, 1, 2, 3, 4, 5]))
    fig = components.token_figure(r).to_dict()
    assert [d["type"] for d in fig["data"]] == ["heatmap", "scatter", "scatter"]
    z = arr(fig["data"][0]["z"])
    assert z.shape == (len(KINDS), 6) and np.isnan(z[:, 0]).all()  # the unpredicted position is blank
    np.testing.assert_allclose(np.nanmax(z, axis=1), 1.0)
    assert list(fig["data"][0]["y"]) == list(KINDS)
    np.testing.assert_allclose(arr(fig["data"][1]["y"]), r.per_position["teacher_entropy"].to_numpy())
    assert [d["name"] for d in fig["data"][1:]] == ["teacher entropy", "student entropy"]
    lay = fig["layout"]
    assert list(lay["xaxis2"]["ticktext"]) == toks and lay["xaxis2"]["title"]["text"].startswith("token")
    assert lay["yaxis2"]["title"]["text"] == "entropy (nats)"


def test_token_ticks_show_special_tokens_as_text():
    """A tokenizer's "<s>" and "</s>" are escaped in the tick labels, never read as plotly's <s> tag."""
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    r = components.token_components(s, t, tokens=["</s>", "<s>", "a&b", "x"], labels=torch.tensor([-100, 1, 2, 3]))
    ticks = list(components.token_figure(r).to_dict()["layout"]["xaxis2"]["ticktext"])
    assert ticks == ["&lt;/s&gt;", "&lt;s&gt;", "a&amp;b", "x"]
    coloured = components.token_figure(r, position_kind=torch.tensor([1, 0, -1, 1])).to_dict()
    assert all("<s>" not in tick for tick in coloured["layout"]["xaxis2"]["ticktext"])


def test_figure_dispatches_on_the_result():
    r = _result()
    assert components.figure(r, rule="mass").to_dict() == components.class_figure(r, rule="mass").to_dict()
    tk = components.token_components(torch.randn(3, 5), torch.randn(3, 5))
    assert components.figure(tk).to_dict()["data"][0]["type"] == "heatmap"
    with pytest.raises(ValueError, match="ComponentsResult"):
        components.figure(pd.DataFrame())
