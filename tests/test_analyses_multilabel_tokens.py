"""analyses.multilabel (per-label sigmoid soft labels, micro/macro F1) and analyses.tokens (the copy-vs-local
split, every divergence's formula) against independent numpy computations."""

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import multilabel as ml
from analyses import tokens
from kdcore.divergences import KINDS
from kdcore.validation import InvalidParameterError
from tests.helpers.figdata import arr


def _np_f1(pred, y):
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    return 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def test_label_scores_match_numpy():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(40, 4, generator=g) > 0.6
    z = torch.randn(40, 4, generator=g, dtype=torch.float64) + 2 * (y.double() - 0.5)
    summary, per_label = ml.label_scores({"teacher": z}, y.double(), class_names=list("abcd"))
    pred, yn = z.numpy() > 0, y.numpy()
    row = summary.iloc[0]
    assert row["micro F1"] == pytest.approx(_np_f1(pred, yn), rel=1e-12)
    macro = np.mean([_np_f1(pred[:, c], yn[:, c]) for c in range(4)])
    assert row["macro F1"] == pytest.approx(macro, rel=1e-12)
    assert row["exact match"] == pytest.approx((pred == yn).all(1).mean())
    assert list(per_label["label"]) == list("abcd")
    assert list(per_label["support"]) == yn.sum(0).tolist()


def test_micro_and_macro_f1_differ_when_a_rare_label_is_missed():
    y = torch.zeros(10, 2)
    y[:, 0], y[0, 1] = 1, 1  # label 1 present once
    z = torch.where(y.bool(), 5.0, -5.0)
    z[0, 1] = -5.0  # ... and missed
    summary, _ = ml.label_scores({"student": z}, y)
    assert summary.loc[0, "macro F1"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert summary.loc[0, "micro F1"] == pytest.approx(20 / 21)


def test_soft_label_sweep_is_per_label_sigmoid():
    z = torch.tensor([[4.0, -2.0, 0.0], [1.0, 3.0, -6.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    df = ml.soft_label_sweep({"teacher": z}, y, [1.0, 4.0])
    for T, row in zip((1.0, 4.0), df.itertuples()):
        p = 1 / (1 + np.exp(-z.numpy() / T))
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        assert row.binary_entropy == pytest.approx(h.mean(), rel=1e-12)
        assert row.p_present == pytest.approx(p[y.numpy() == 1].mean(), rel=1e-12)
        assert row.p_absent == pytest.approx(p[y.numpy() == 0].mean(), rel=1e-12)
        assert row.expected_labels == pytest.approx(p.sum(1).mean(), rel=1e-12)
        assert row.true_labels == pytest.approx(1.5)
    assert "p_y" not in df.columns and "dark_knowledge" not in df.columns


def test_multilabel_figures():
    summary = pd.DataFrame(
        [
            {"model": m, "micro F1": 0.9, "macro F1": 0.8, "exact match": 0.7, "label accuracy": 0.95}
            for m in ("teacher", "student alone (baseline)", "distilled student")
        ]
    )
    per_label = pd.DataFrame(
        [{"model": m, "label": lab, "F1": 0.5, "support": 3} for m in summary["model"] for lab in ("ring", "cross")]
    )
    d = ml.figure_scores(summary, per_label).to_dict()
    colours = {t["name"]: t["marker"]["color"] for t in d["data"]}
    assert len(set(colours.values())) == 3, colours
    sweep = ml.soft_label_sweep({"teacher": torch.randn(5, 3)}, (torch.rand(5, 3) > 0.5).double(), [1.0, 2.0])
    s = ml.figure_sweep(sweep).to_dict()
    assert s["layout"]["xaxis"]["type"] == "log"
    assert any("entropy" in a["text"] for a in s["layout"]["annotations"])
    at = ml.figure_labels_at(
        torch.tensor([3.0, -3.0]), torch.tensor([1.0, 0.0]), torch.tensor([1, 0]), 2.0, class_names=["ring", "cross"]
    ).to_dict()
    assert list(arr(at["data"][0]["x"])) == ["ring ★", "cross"]
    np.testing.assert_allclose(arr(at["data"][0]["y"]), 1 / (1 + np.exp([-1.5, 1.5])))


def test_label_scores_reject_mismatched_shapes():
    with pytest.raises(InvalidParameterError, match=r"\[N, C\]"):
        ml.label_scores({"teacher": torch.zeros(3, 2)}, torch.zeros(3, 4))


# ---- tokens -----------------------------------------------------------------------------------------


def _np_fkl(s, t):
    p = np.exp(t - t.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(s - s.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    return (p * np.log(p / q)).sum(-1)


def test_split_by_position_kind_matches_numpy():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    t = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (3, 6), generator=g)
    y[0, 0] = -100
    kind = torch.tensor([[0, 0, 1, 1, -1, 0]] * 3)
    df = tokens.split_by_position_kind(s, t, y, kind, kinds=("fkl", "tvd"), baseline_logits=t)
    fkl = _np_fkl(s.numpy(), t.numpy())
    for code, name in ((1, "copy (induction)"), (0, "local (next-token rule)")):
        keep = (kind.numpy() == code) & (y.numpy() != -100)
        row = df[df["position"] == name].iloc[0]
        assert row["positions"] == keep.sum()
        assert row["fkl"] == pytest.approx(fkl[keep].mean(), rel=1e-10)
        assert row["student accuracy"] == pytest.approx((s.numpy().argmax(-1) == y.numpy())[keep].mean())
        assert row["baseline accuracy"] == row["teacher accuracy"]


def test_split_figure_keeps_divergence_and_accuracy_on_separate_axes():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(2, 4, 5, generator=g), torch.randn(2, 4, 5, generator=g)
    df = tokens.split_by_position_kind(s, t, torch.randint(0, 5, (2, 4), generator=g), torch.tensor([[0, 1, 0, 1]] * 2))
    d = tokens.figure_split(df).to_dict()
    assert d["layout"]["yaxis"]["title"]["text"].startswith("mean divergence")
    assert d["layout"]["yaxis2"]["title"]["text"].startswith("accuracy")
    assert {tr["yaxis"] for tr in d["data"] if tr["name"] in ("teacher", "student")} == {"y2"}


def test_every_divergence_has_a_formula():
    assert set(tokens.FORMULAS) == set(KINDS)
    assert all(tex.count("{") == tex.count("}") for tex in tokens.FORMULAS.values())


def test_split_rejects_mismatched_shapes():
    with pytest.raises(InvalidParameterError, match=r"\[N, L\]"):
        tokens.split_by_position_kind(
            torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4)
        )
