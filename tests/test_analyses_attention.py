"""analyses.attention: entropy per head, head divergences and matching, AT maps, figures."""

import math

import numpy as np
import pytest
import torch

from analyses import attention
from tests.helpers.figdata import arr


def _random_attention(b, h, length, *, causal=False, sharp=1.0, seed=None):
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    scores = torch.randn(b, h, length, length, generator=g) * sharp
    if causal:
        scores = scores.masked_fill(torch.ones(length, length).triu(1).bool(), -math.inf)
    return scores.softmax(-1)


def _np_entropy(a, mask=None):
    a = a.numpy().astype(np.float64)  # [B, H, L, L]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(a > 0, a * np.log(a), 0.0).sum(-1)  # [B, H, L]
    if mask is None:
        return ent.mean(axis=(0, 2))
    w = mask.numpy().astype(np.float64)[:, None, :]  # [B, 1, L]
    return (ent * w).sum(axis=(0, 2)) / w.sum(axis=(0, 2))


def _np_divergence(s, t, metric):
    """Independent float64 head divergences, averaged over every query row."""
    return _np_divergence_masked(s, t, metric, torch.ones(s.shape[0], s.shape[-2], dtype=torch.bool))


@pytest.mark.parametrize("shape", [(2, 3, 5), (4, 1, 7), (1, 4, 16)])
@pytest.mark.parametrize("causal", [False, True])
def test_head_entropy_matches_numpy(shape, causal):
    b, h, length = shape
    a = _random_attention(b, h, length, causal=causal)
    np.testing.assert_allclose(attention.head_entropy(a).numpy(), _np_entropy(a), rtol=1e-10, atol=1e-12)


def test_head_entropy_constructed_cases():
    length = 6
    uniform = torch.full((1, 1, length, length), 1 / length, dtype=torch.float64)
    onehot = torch.eye(length, dtype=torch.float64).view(1, 1, length, length)
    a = torch.cat([uniform, onehot], dim=1)  # [1, 2, L, L]
    ent = attention.head_entropy(a)
    assert ent[0].item() == pytest.approx(math.log(length), abs=1e-12)
    assert ent[1].item() == 0.0


def test_head_entropy_mask_drops_query_rows():
    a = _random_attention(3, 2, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    np.testing.assert_allclose(attention.head_entropy(a, mask=mask).numpy(), _np_entropy(a, mask), rtol=1e-10)
    assert not np.allclose(attention.head_entropy(a).numpy(), _np_entropy(a, mask))


@pytest.mark.parametrize("metric", ["kl", "js", "mse"])
@pytest.mark.parametrize("heads", [(3, 3), (2, 4), (5, 2)])
def test_head_divergence_matches_numpy(metric, heads):
    s = _random_attention(2, heads[0], 6, causal=True)
    t = _random_attention(2, heads[1], 6, causal=True)
    d = attention.head_divergence(s, t, metric=metric)
    assert d.shape == heads
    np.testing.assert_allclose(d, _np_divergence(s, t, metric), rtol=1e-9, atol=1e-12)


def test_permuted_teacher_heads_are_matched_back_exactly():
    t = _random_attention(3, 6, 8, causal=True, sharp=3.0)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    s = t[:, perm]  # student head i = teacher head perm[i]
    for metric in attention.METRICS:
        d = attention.head_divergence(s, t, metric=metric)
        np.testing.assert_allclose(np.diag(d[:, perm.numpy()]), 0.0, atol=1e-12)
        for mode in attention.MODES:
            matches = attention.match_heads(d, mode=mode)
            assert [(sh, th) for sh, th, _ in matches] == list(enumerate(perm.tolist()))
            assert all(v == pytest.approx(0.0, abs=1e-12) for *_, v in matches)


def test_match_heads_with_different_head_counts():
    # 2 student heads, 4 teacher heads: student head 0 copies teacher 3, head 1 copies teacher 1
    t = _random_attention(2, 4, 6, sharp=3.0)
    s = t[:, [3, 1]]
    d = attention.head_divergence(s, t)
    assert [(a, b) for a, b, _ in attention.match_heads(d)] == [(0, 3), (1, 1)]
    # 4 student heads, 2 teacher heads: one-to-one assigns 2 pairs; nearest assigns every student head
    s4 = torch.cat([t[:, [0]], t[:, [2]], t[:, [0]] * 0.5 + t[:, [1]] * 0.5, t[:, [2]]], dim=1)
    t2 = t[:, [0, 2]]
    d = attention.head_divergence(s4, t2, metric="js")
    one = attention.match_heads(d, mode="one_to_one")
    assert len(one) == 2 and len({th for _, th, _ in one}) == 2
    near = attention.match_heads(d, mode="nearest")
    assert [th for _, th, _ in near] == list(np.argmin(d, axis=1)) and [sh for sh, _, _ in near] == [0, 1, 2, 3]
    assert near[0][1] == 0 and near[1][1] == 1 and near[3][1] == 1


def test_match_heads_handles_infinite_kl():
    d = np.array([[math.inf, 0.3], [0.1, math.inf]])
    assert [(a, b) for a, b, _ in attention.match_heads(d)] == [(0, 1), (1, 0)]


def test_hungarian_beats_greedy():
    # greedy row-by-row would give (0,0)+(1,1) = 1 + 10; the optimum is (0,1)+(1,0) = 2 + 2
    d = np.array([[1.0, 2.0], [2.0, 10.0]])
    assert [(a, b) for a, b, _ in attention.match_heads(d)] == [(0, 1), (1, 0)]


def test_default_layer_map():
    assert attention.default_layer_map(2, 4) == [(0, 1), (1, 3)]
    assert attention.default_layer_map(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert attention.default_layer_map(3, 12) == [(0, 3), (1, 7), (2, 11)]


def test_compute_result_and_entropy_table():
    t = [_random_attention(2, 4, 5, causal=True) for _ in range(4)]
    s = [_random_attention(2, 2, 5, causal=True) for _ in range(2)]
    r = attention.compute(s, t, tokens=list("abcde"))
    assert r.layer_map == [(0, 1), (1, 3)]
    assert len(r.entropy) == 4 * 4 + 2 * 2
    got = r.entropy.query("role == 'teacher' and layer == 2").sort_values("head")["entropy"].to_numpy()
    np.testing.assert_allclose(got, _np_entropy(t[2]), rtol=1e-10)
    assert set(r.divergence) == {(0, 1), (1, 3)} and r.divergence[(1, 3)].shape == (2, 4)
    np.testing.assert_allclose(r.divergence[(0, 1)], _np_divergence(s[0], t[1], "kl"), rtol=1e-9)
    assert len(r.matches) == 4
    assert (r.matches.groupby("student_layer")["teacher_head"].nunique() == 2).all()


def test_compute_rejects_bad_input():
    good = [_random_attention(1, 2, 4)]
    with pytest.raises(ValueError, match="rows that sum to 1"):
        attention.compute([torch.rand(1, 2, 4, 4)], good)
    with pytest.raises(ValueError, match="non-negative"):
        attention.compute([torch.randn(1, 2, 4, 4)], good)
    with pytest.raises(ValueError, match=r"\[batch, heads, length, length\]"):
        attention.compute([torch.rand(2, 4, 4)], good)
    with pytest.raises(ValueError, match="same inputs"):
        attention.compute([_random_attention(1, 2, 5)], good)
    with pytest.raises(ValueError, match="layer_map"):
        attention.compute(good, good, layer_map=[(0, 3)])
    with pytest.raises(ValueError, match="'metric'"):
        attention.compute(good, good, metric="cosine")
    with pytest.raises(ValueError, match="'mask'"):
        attention.compute(good, good, mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match="'mode'"):
        attention.match_heads(np.zeros((2, 2)), mode="greedy")


class _FakeAdapter:
    def __init__(self, attn):
        self._attn = attn

    def attentions(self, inputs):
        return self._attn


def test_compute_from_adapters():
    t = [_random_attention(2, 2, 4)]
    r = attention.compute_from_adapters(_FakeAdapter(t), _FakeAdapter(t), torch.zeros(2, 4))
    np.testing.assert_allclose(r.divergence[(0, 0)].diagonal(), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="no attention"):
        attention.compute_from_adapters(_FakeAdapter(None), _FakeAdapter(t), torch.zeros(2, 4))


# ---------------------------------------------------------------------------- figures
def _result():
    t = [_random_attention(2, 3, 5, causal=True) for _ in range(2)]
    s = [_random_attention(2, 2, 5, causal=True)]
    return attention.compute(s, t, tokens=list("vwxyv")), s, t


def test_maps_figure():
    r, s, t = _result()
    fig = attention.maps_figure(r, sample=1, student_layer=0).to_dict()
    heat = [d for d in fig["data"] if d["type"] == "heatmap"]
    assert len(heat) == (3 + 1) + (2 + 1)  # teacher heads + mean, student heads + mean
    names = [d["name"] for d in heat]
    assert names[:4] == ["teacher head 0", "teacher head 1", "teacher head 2", "teacher mean over heads"]
    np.testing.assert_allclose(arr(heat[1]["z"]), t[1][1, 1].numpy())  # layer_map (0 -> 1)
    np.testing.assert_allclose(arr(heat[-1]["z"]), s[0][1].mean(0).numpy())
    assert list(heat[0]["x"]) == [0, 1, 2, 3, 4]
    assert "ticktext" not in fig["layout"]["xaxis"]  # the labels given are input 0's: not shown on input 1
    fig0 = attention.maps_figure(r, sample=0, student_layer=0).to_dict()
    assert list(fig0["layout"]["yaxis"]["ticktext"]) == list("vwxyv")  # a repeated token keeps its row
    assert "ticktext" not in fig0["layout"]["xaxis"]  # maps side by side: key positions stay numbers
    lay = fig["layout"]
    assert "Attention maps" in lay["title"]["text"]
    assert lay["coloraxis"]["colorbar"]["title"]["text"] == "attention<br>probability"
    axis_titles = {v["title"]["text"] for k, v in lay.items() if k.startswith(("xaxis", "yaxis")) and "title" in v}
    assert {"key position", "query position"} <= axis_titles
    assert "weight" in heat[0]["hovertemplate"]


def test_head_average_entropy_and_matching_figures():
    r, s, t = _result()
    fig = attention.head_average_figure(r).to_dict()
    assert [d["type"] for d in fig["data"]] == ["heatmap", "heatmap"]
    np.testing.assert_allclose(arr(fig["data"][0]["z"]), t[1][0].mean(0).numpy())
    fig = attention.entropy_figure(r).to_dict()
    assert [d["name"] for d in fig["data"]] == ["teacher", "student"]
    assert arr(fig["data"][0]["z"]).shape == (2, 3) and arr(fig["data"][1]["z"]).shape == (1, 2)
    assert fig["layout"]["coloraxis"]["colorbar"]["title"]["text"] == "entropy (nats)"
    assert fig["layout"]["xaxis"]["title"]["text"] == "head" and fig["layout"]["yaxis"]["title"]["text"] == "layer"
    fig = attention.matching_figure(r).to_dict()
    assert [d["type"] for d in fig["data"]] == ["heatmap", "scatter"]
    assert arr(fig["data"][0]["z"]).shape == (2, 3)
    assert len(arr(fig["data"][1]["x"])) == 2 and fig["data"][1]["name"].startswith("assigned")
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("teacher head")
    assert fig["layout"]["yaxis"]["title"]["text"].startswith("student head")
    with pytest.raises(ValueError, match="'pair'"):
        attention.matching_figure(r, pair=5)


# ---------------------------------------------------------------------------- attention-transfer maps
def _np_at_map(f, p=2.0):
    m = (np.abs(f.numpy().astype(np.float64)) ** p).mean(1)  # [B, H, W]
    flat = m.reshape(len(m), -1)
    return (flat / np.linalg.norm(flat, axis=1, keepdims=True)).reshape(m.shape)


@pytest.mark.parametrize(
    "shapes", [((3, 4, 6, 6), (3, 8, 6, 6)), ((2, 5, 4, 4), (2, 3, 8, 8)), ((1, 2, 3, 5), (1, 2, 3, 5))]
)
@pytest.mark.parametrize("p", [2.0, 1.0])
def test_attention_transfer_maps_match_numpy_and_kdcore_loss(shapes, p):
    from kdcore.losses import attention_transfer_loss

    fs, ft = torch.randn(*shapes[0]), torch.randn(*shapes[1])
    r = attention.attention_transfer_maps(fs, ft, p=p)
    np.testing.assert_allclose(r.student.numpy(), _np_at_map(fs, p), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.teacher.numpy(), _np_at_map(ft, p), rtol=1e-5, atol=1e-7)
    assert r.student_resized.shape == r.teacher.shape
    np.testing.assert_allclose(r.student_resized.flatten(1).norm(dim=1).numpy(), 1.0, rtol=1e-6)
    if shapes[0][2:] == shapes[1][2:]:
        torch.testing.assert_close(r.student_resized, r.student)
    # the per-sample losses are the kdcore loss on each sample, and average to the batch loss
    per = ((r.student_resized - r.teacher) ** 2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(r.per_sample["loss"].to_numpy(), per, rtol=1e-4, atol=1e-9)
    assert r.per_sample["loss"].mean() == pytest.approx(float(attention_transfer_loss(fs, ft, p=p)), rel=1e-5)


def test_attention_transfer_constructed_case():
    ft = torch.zeros(1, 2, 2, 2)
    ft[0, :, 0, 1] = 3.0  # all activation in one cell
    r = attention.attention_transfer_maps(ft.clone(), ft)
    assert r.teacher[0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert r.per_sample["loss"].iloc[0] == 0.0
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        attention.attention_transfer_maps(torch.randn(2, 3, 4), ft)
    with pytest.raises(ValueError, match="same batch size"):
        attention.attention_transfer_maps(torch.randn(2, 2, 2, 2), ft)


class _CaptureAdapter:
    def __init__(self, feats):
        self.feats = feats

    def capture(self, inputs, layers):
        return {name: self.feats for name in layers}


def test_attention_transfer_from_adapters_and_figure():
    fs, ft = torch.rand(2, 3, 4, 4), torch.rand(2, 5, 8, 8)
    images = torch.rand(2, 3, 16, 16)
    r = attention.attention_transfer_from_adapters(
        _CaptureAdapter(fs), _CaptureAdapter(ft), images, student_layer="s", teacher_layer="t"
    )
    torch.testing.assert_close(r.student, torch.from_numpy(_np_at_map(fs)).float(), rtol=1e-5, atol=1e-7)
    fig = attention.attention_transfer_figure(r, sample=1).to_dict()
    assert [d["type"] for d in fig["data"]] == ["image", "heatmap", "heatmap", "heatmap"]
    assert [d["name"] for d in fig["data"][1:]] == ["teacher a(F)", "student a(F)", "student − teacher"]
    assert arr(fig["data"][1]["z"]).shape == (8, 8) and arr(fig["data"][2]["z"]).shape == (4, 4)
    np.testing.assert_allclose(arr(fig["data"][3]["z"]), (r.student_resized[1] - r.teacher[1]).numpy(), rtol=1e-6)
    assert fig["layout"]["xaxis"]["title"]["text"] == "width (pixels)"
    assert fig["layout"]["xaxis2"]["title"]["text"] == "width (feature-map cells)"
    assert fig["layout"]["coloraxis2"]["cmid"] == 0.0
    assert "Attention-transfer" in fig["layout"]["title"]["text"]


def test_figure_dispatches_on_the_result():
    r, _, _ = _result()
    assert attention.figure(r).to_dict() == attention.maps_figure(r).to_dict()
    at = attention.attention_transfer_maps(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
    assert attention.figure(at).to_dict()["layout"]["title"]["text"].startswith("Attention-transfer")
    with pytest.raises(ValueError, match="AttentionResult"):
        attention.figure({"not": "a result"})


@pytest.mark.parametrize("metric", ["kl", "js", "mse"])
def test_chunked_computation_equals_unchunked(monkeypatch, metric):
    t = [_random_attention(5, 3, 6, causal=True)]
    s = [_random_attention(5, 2, 6, causal=True)]
    mask = torch.rand(5, 6) > 0.3
    mask[:, 0] = True
    whole = attention.compute(s, t, metric=metric, mask=mask)
    monkeypatch.setattr(attention, "_CHUNK", 2 * 6 * 6)  # one sample per chunk
    chunked = attention.compute(s, t, metric=metric, mask=mask)
    np.testing.assert_allclose(chunked.divergence[(0, 0)], whole.divergence[(0, 0)], rtol=1e-12)
    np.testing.assert_allclose(chunked.entropy["entropy"], whole.entropy["entropy"], rtol=1e-12)
    np.testing.assert_allclose(whole.divergence[(0, 0)], _np_divergence_masked(s[0], t[0], metric, mask), rtol=1e-9)


def _np_divergence_masked(s, t, metric, mask):
    """Independent float64 head divergences, averaged over the kept query rows only."""
    w = mask.numpy().astype(np.float64)
    out = np.zeros((s.shape[1], t.shape[1]))
    for i in range(s.shape[1]):
        for j in range(t.shape[1]):
            p, q = t[:, j].numpy().astype(np.float64), s[:, i].numpy().astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                if metric == "kl":
                    rows = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(-1)
                elif metric == "js":
                    m = (p + q) / 2
                    rows = 0.5 * np.where(p > 0, p * np.log(p / m), 0.0).sum(-1) + 0.5 * np.where(
                        q > 0, q * np.log(q / m), 0.0
                    ).sum(-1)
                else:
                    rows = ((p - q) ** 2).mean(-1)
            out[i, j] = (rows * w).sum() / w.sum()
    return out


class _TinyAttention(torch.nn.Module):
    """A fixed-attention 'transformer' exposing forward_with_attentions, as the sample models do."""

    def __init__(self, layers, heads, length=5, vocab=7, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.scores = torch.nn.Parameter(torch.randn(layers, heads, length, length, generator=g))
        self.out = torch.nn.Linear(1, vocab)

    def forward_with_attentions(self, ids):
        atts = [self.scores[i].softmax(-1).expand(ids.shape[0], -1, -1, -1) for i in range(self.scores.shape[0])]
        return self.out(ids.float().unsqueeze(-1)), atts

    def forward(self, ids):
        return self.forward_with_attentions(ids)[0]


def test_compute_from_real_model_adapters():
    from kdcore.adapters import wrap

    teacher, student = _TinyAttention(4, 3), _TinyAttention(2, 2, seed=1)
    ids = torch.randint(0, 7, (2, 5))
    r = attention.compute_from_adapters(
        wrap(student, name="s", kind="causal_lm"), wrap(teacher, name="t", kind="causal_lm"), ids
    )
    assert r.layer_map == [(0, 1), (1, 3)]
    t_att = teacher.scores.detach().softmax(-1)  # [layers, H, L, L]
    s_att = student.scores.detach().softmax(-1)
    expected = _np_divergence(s_att[1].expand(2, -1, -1, -1), t_att[3].expand(2, -1, -1, -1), "kl")
    np.testing.assert_allclose(r.divergence[(1, 3)], expected, rtol=1e-5)
