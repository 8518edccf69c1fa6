"""CKA on token sequences (kdcore.cka_tokens, analyses.cka options): which tokens count, mean vs per-token
rows, the top-k dimension dominance warning; each against an independent numpy computation."""

import numpy as np
import pytest
import torch

from analyses import cka
from kdcore import cka_tokens as tok

SPECIAL = (1, 2)  # ids treated as special in these tests (BOS, EOS)


# ---------------------------------------------------------------- independent numpy references
def np_linear_cka(x, y):
    """Linear CKA of rows x [m, d1], y [m, d2] in plain numpy float64 (Kornblith et al. 2019)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def np_rows(feats, attention, ids, *, pool, drop_first, drop_special):
    """The CKA rows of token features [n, L, H], by explicit loops over texts and positions."""
    out = []
    for i in range(feats.shape[0]):
        kept = [
            t
            for t in range(feats.shape[1])
            if attention[i, t] == 1 and not (drop_first and t == 0) and not (drop_special and ids[i, t] in SPECIAL)
        ]
        if pool == "mean":
            out.append(np.mean([feats[i, t] for t in kept], axis=0))
        else:
            out.extend(feats[i, t] for t in kept)
    return np.array(out, dtype=np.float64)


def np_top_share(rows, k):
    c = rows - rows.mean(0)
    v = (c**2).sum(0)
    order = np.argsort(-v, kind="stable")[:k]
    return v[order].sum() / v.sum(), order


def _token_batch(seed, n=24, length=9, widths=(6, 5)):
    """Random token features of two layers, ids with special tokens, right padding."""
    rng = np.random.default_rng(seed)
    feats = {f"h{j}": rng.standard_normal((n, length, w)) for j, w in enumerate(widths)}
    ids = rng.integers(3, 50, size=(n, length))
    ids[:, 0] = 1  # BOS
    ids[rng.random((n, length)) < 0.15] = 2  # EOS inside packed rows
    ids[:, 1] = 7  # every text keeps at least one ordinary token
    lengths = rng.integers(3, length + 1, size=n)
    attention = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    return feats, ids, attention


# ---------------------------------------------------------------- exactness of each option
@pytest.mark.parametrize("pool", ["mean", "per_token"])
@pytest.mark.parametrize("drop_first", [False, True])
@pytest.mark.parametrize("drop_special", [False, True])
def test_options_match_numpy(pool, drop_first, drop_special):
    feats, ids, attention = _token_batch(seed=3)
    special = np.isin(ids, SPECIAL) if drop_special else None
    rows = cka.prepare_features(
        {k: torch.from_numpy(v) for k, v in feats.items()},
        tokens=pool,
        mask=torch.from_numpy(attention),
        drop_first=drop_first,
        special=special,
    )
    ref = {
        k: np_rows(v, attention, ids, pool=pool, drop_first=drop_first, drop_special=drop_special)
        for k, v in feats.items()
    }
    for k in feats:
        np.testing.assert_allclose(rows[k].numpy(), ref[k], rtol=1e-12, atol=1e-12)
    got = cka.cka_matrix({"h0": rows["h0"]}, {"h1": rows["h1"]}).iloc[0, 0]
    assert got == pytest.approx(np_linear_cka(ref["h0"], ref["h1"]), rel=1e-10)


class _TokenAdapter:
    """capture(ids, layers) -> {layer: [n, L, H]}: a fixed random embedding of the ids per layer."""

    def __init__(self, name, widths, seed):
        g = torch.Generator().manual_seed(seed)
        self.name = name
        self.tables = {f"layer{i}": torch.randn(50, w, generator=g, dtype=torch.float64) for i, w in enumerate(widths)}

    def default_layers(self):
        return list(self.tables)

    def capture(self, inputs, layers):
        return {k: self.tables[k][inputs] for k in layers}


@pytest.mark.parametrize("pool", ["mean", "per_token"])
def test_pair_cka_special_ids_and_padding_match_numpy(pool):
    _, ids, attention = _token_batch(seed=5, n=30)
    t, s = _TokenAdapter("teacher", [6, 4], 0), _TokenAdapter("student", [5], 1)
    ids_t = torch.from_numpy(ids)
    res = cka.pair_cka(t, s, ids_t, tokens=pool, mask=torch.from_numpy(attention), drop_first=True, special_ids=SPECIAL)
    assert res.attrs["token_options"] == {
        "pool": pool,
        "drop_first": True,
        "drop_special": True,
        "padding_masked": True,
        "texts": 30,
    }
    y = np_rows(s.tables["layer0"].numpy()[ids], attention, ids, pool=pool, drop_first=True, drop_special=True)
    for i, layer in enumerate(t.default_layers()):
        x = np_rows(t.tables[layer].numpy()[ids], attention, ids, pool=pool, drop_first=True, drop_special=True)
        assert res.iloc[i, 0] == pytest.approx(np_linear_cka(x, y), rel=1e-10)
    assert "first token and special tokens dropped" in cka.figure_heatmap(res).layout.title.text


# ---------------------------------------------------------------- the pitfall and the options
def _spiked(seed, n=200, length=10, width=16, spike=200.0):
    """Two unrelated layers whose first token carries a huge, per-text varying value in dimension 0 (the same
    in both layers, as a massive activation at the attention sink is): raw CKA ≈ 1."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, length, width)), rng.standard_normal((n, length, width))
    s = spike * rng.uniform(1.0, 2.0, size=n)
    a[:, 0, 0] += s
    b[:, 0, 0] += s
    return torch.from_numpy(a), torch.from_numpy(b)


@pytest.mark.parametrize("pool", ["mean", "per_token"])
def test_huge_first_token_makes_raw_cka_one_and_drop_first_brings_it_down(pool):
    a, b = _spiked(seed=0)
    raw = cka.cka_matrix(*(cka.prepare_features({"h": f}, tokens=pool) for f in (a, b)))
    fixed = cka.cka_matrix(*(cka.prepare_features({"h": f}, tokens=pool, drop_first=True) for f in (a, b)))
    assert raw.iloc[0, 0] > 0.95
    assert fixed.iloc[0, 0] < 0.2  # unrelated layers (the bias of n = 200 texts of width 16 stays below this)
    assert cka.dominance_table(raw)["dominated"].all()  # one dimension holds nearly all the centred norm
    assert not cka.dominance_table(fixed)["dominated"].any()
    assert cka.dominance_warning(fixed) is None


def test_outlier_dimension_on_special_tokens_is_flagged_and_drop_special_removes_it():
    rng = np.random.default_rng(1)
    n, length, width = 150, 12, 32
    ids = rng.integers(3, 50, size=(n, length))
    ids[rng.random((n, length)) < 0.2] = 2  # delimiters where massive activations sit
    a, b = rng.standard_normal((n, length, width)), rng.standard_normal((n, length, width))
    boost = 100.0 * rng.uniform(1.0, 3.0, size=(n, length)) * (ids == 2)
    a[..., 5] += boost
    b[..., 9] += boost

    def feats(f, special):
        return cka.prepare_features({"h": torch.from_numpy(f)}, tokens="per_token", special=special)

    raw = cka.cka_matrix(feats(a, None), feats(b, None))
    assert raw.iloc[0, 0] > 0.95
    table = cka.dominance_table(raw)
    assert table["dominated"].all() and [d[0] for d in table["dims"]] == [5, 9]
    x = np_rows(a, np.ones((n, length)), ids, pool="per_token", drop_first=False, drop_special=False)
    share, order = np_top_share(x, 3)
    assert table["share"][0] == pytest.approx(share, rel=1e-12) and list(table["dims"][0]) == list(order)
    warning = cka.dominance_warning(raw)
    assert "model a h" in warning and f"{share:.0%}" in warning
    dropped = cka.cka_matrix(feats(a, ids == 2), feats(b, ids == 2))
    assert dropped.iloc[0, 0] < 0.1 and cka.dominance_warning(dropped) is None


# ---------------------------------------------------------------- dominance
def test_dominance_matches_numpy_and_its_rule():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 20)) * np.linspace(0.5, 3.0, 20)
    d = tok.dominance(torch.from_numpy(x), top_k=4, threshold=0.3)
    share, order = np_top_share(x, 4)
    assert d.share == pytest.approx(share, rel=1e-12) and list(d.dims) == list(order)
    assert d.dominated == (share > 0.3)
    x[:, 7] *= 100
    assert tok.dominance(torch.from_numpy(x)).dominated and tok.dominance(torch.from_numpy(x)).dims[0] == 7
    assert not tok.dominance(torch.from_numpy(x[:, :11])).dominated  # 11 < 4·3 dimensions: never flagged
    const = tok.dominance(torch.ones(5, 20))
    assert const.share == 0.0 and not const.dominated


def test_streaming_dominance_equals_full():
    rng = np.random.default_rng(4)
    fa = {"x": torch.from_numpy(rng.standard_normal((48, 14)) * np.arange(1, 15) + 30.0)}
    fb = {"y": torch.from_numpy(rng.standard_normal((48, 13)))}
    full = cka.cka_matrix(fa, fb)
    batches = [({"x": fa["x"][i : i + 12]}, {"y": fb["y"][i : i + 12]}) for i in range(0, 48, 12)]
    stream = cka.minibatch_cka_matrix(batches)
    a, b = cka.dominance_table(full), cka.dominance_table(stream)
    np.testing.assert_allclose(a["share"], b["share"], rtol=1e-10)
    assert list(a["dims"]) == list(b["dims"])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: tok.keep_mask((2, 3), special_ids=[1]), "input_ids"),
        (lambda: tok.keep_mask((2, 3), attention_mask=torch.ones(2, 4)), r"attention_mask.*\(2, 3\)"),
        (lambda: tok.keep_mask((2, 3), input_ids=torch.ones(2, 3), special_ids=[1]), "integer token ids"),
        (lambda: tok.pool_tokens(torch.randn(2, 3, 4), torch.ones(2, 3), "max"), "pool"),
        (lambda: tok.pool_tokens(torch.randn(2, 1, 4), torch.tensor([[False], [True]])), "keep no token"),
        (lambda: tok.pool_tokens(torch.randn(2, 1, 4), torch.zeros(2, 1), "per_token"), "No token"),
        (lambda: tok.dominance(torch.randn(4, 8), top_k=0), "top_k"),
        (
            lambda: cka.pair_cka(
                _TokenAdapter("t", [3], 0),
                _TokenAdapter("s", [3], 1),
                torch.randn(4, 3),
                tokens="mean",
                special_ids=[1],
            ),
            "token ids",
        ),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
