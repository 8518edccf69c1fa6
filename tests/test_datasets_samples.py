"""The built-in datasets: digits, shapes (single- and multi-label, with masks) and tinylang."""

import math

import numpy as np
import pytest
import torch

from kdcore.data import DATASETS, IGNORE_INDEX, SPLITS, Dataset, SplitData, get_dataset
from kdcore.data import shapes as shapes_mod
from kdcore.data import tinylang as tl

EXPECTED = {  # name -> task, output size, input shape of one sample
    "digits": ("classification", 10, (1, 8, 8)),
    "shapes": ("classification", 8, (3, 32, 32)),
    "shapes_multilabel": ("multilabel", 8, (3, 32, 32)),
    "tinylang": ("causal_lm", 38, (64,)),
}


# ---- common checks over every dataset -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_surface(name):
    task, size, shape = EXPECTED[name]
    d = get_dataset(name)
    assert isinstance(d, Dataset) and d.name == name and d.task == task and d.size == size
    assert isinstance(d.description, str) and d.description.endswith(".") and len(d.description) > 20
    if task == "causal_lm":
        assert d.vocab_size == size and d.tokenizer is not None
    else:
        assert d.num_classes == size and len(d.class_names) == size
    for split in SPLITS:
        s = d.split(split)
        assert isinstance(s, SplitData) and len(s) > 100
        assert tuple(s.inputs.shape[1:]) == shape
        x, y = s[0]
        assert tuple(x.shape) == shape
        assert torch.isfinite(s.inputs.float()).all()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_is_cached_and_deterministic(name):
    assert get_dataset(name) is get_dataset(name)
    cached = get_dataset(name).split("test")
    fresh = DATASETS[name]().split("test")  # rebuilt from the seeds
    assert torch.equal(cached.inputs, fresh.inputs) and torch.equal(cached.targets, fresh.targets)
    for k in cached.extras:
        assert torch.equal(cached.extras[k].nan_to_num(-1.0), fresh.extras[k].nan_to_num(-1.0))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_splits_are_different_samples(name):
    d = get_dataset(name)
    train = {bytes(x.numpy().tobytes()) for x in d.split("train").inputs}
    test = [bytes(x.numpy().tobytes()) for x in d.split("test").inputs]
    shared = sum(t in train for t in test)
    assert shared <= 0.02 * len(test)  # digits holds a few duplicate images; nothing else repeats


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="'name'.*digits.*'nope'"):
        get_dataset("nope")


def test_split_name_is_checked():
    with pytest.raises(ValueError, match="'name'.*'training'"):
        get_dataset("digits").split("training")


# ---- digits ---------------------------------------------------------------------------------


def test_digits_matches_scikit_learn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    d = get_dataset("digits")
    n = sum(len(d.split(s)) for s in SPLITS)
    assert n == len(bunch.target) == 1797
    all_x = torch.cat([d.split(s).inputs for s in SPLITS]).reshape(n, 64).double() * 16
    all_y = torch.cat([d.split(s).targets for s in SPLITS])
    order = np.lexsort(np.c_[all_x.numpy(), all_y.numpy()].T[::-1])
    ref = np.c_[bunch.data, bunch.target]
    ref = ref[np.lexsort(ref.T[::-1])]
    np.testing.assert_array_equal(np.c_[all_x.numpy(), all_y.numpy()][order], ref)
    assert all_x.min() >= 0 and all_x.max() <= 16
    assert torch.bincount(d.split("test").targets, minlength=10).min() >= 20  # every class is tested


# ---- shapes ---------------------------------------------------------------------------------


def test_shapes_single_label_masks_match_targets_and_pixels():
    s = get_dataset("shapes").split("test")
    assert s.masks.dtype == torch.bool and tuple(s.masks.shape) == (len(s), 8, 32, 32)
    present = s.masks.any(dim=(2, 3))  # [N, C]
    assert (present.sum(1) == 1).all()
    assert torch.equal(present.float().argmax(1), s.targets)
    assert torch.bincount(s.targets, minlength=8).min() >= 80  # classes are balanced
    area = s.masks.sum(dim=(1, 2, 3)).float()
    assert area.min() >= 12 and area.max() <= 32 * 32 / 2
    _check_masks_cover_uniform_colour(s)


def test_shapes_multilabel_targets_masks_and_counts():
    s = get_dataset("shapes_multilabel").split("train")
    assert s.targets.dtype == torch.float32 and tuple(s.targets.shape) == (len(s), 8)
    assert set(s.targets.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(s.masks.any(dim=(2, 3)).float(), s.targets)
    counts = s.targets.sum(1)
    assert set(counts.unique().tolist()) == {1.0, 2.0, 3.0}
    assert (s.masks.sum(1) <= 1).all()  # shapes never overlap
    _check_masks_cover_uniform_colour(s.subset(300))


def _check_masks_cover_uniform_colour(s):
    """Inside a shape's mask the pixels are one colour plus noise; they differ from the background."""
    x = s.inputs.double()  # [N, 3, H, W]
    for n in range(0, len(s), 7):
        outside = x[n][:, ~s.masks[n].any(0)]  # [3, P] background pixels
        for c in torch.nonzero(s.masks[n].any(dim=(1, 2))).flatten():
            px = x[n][:, s.masks[n, c]]  # [3, P] one shape's pixels
            assert px.std(dim=1).max() < 0.12, "a mask covers pixels of several colours"
            assert (px.mean(1) - outside.mean(1)).norm() > 0.3, "a shape is not visible against its background"


def test_shape_geometry_on_known_inputs():
    c = np.array([16.0], dtype=np.float32)
    for k, name in enumerate(shapes_mod.SHAPES):
        m = shapes_mod._shape_masks(np.array([k]), c, c, np.array([10.0], dtype=np.float32))[0]
        area = m.sum()
        want = {
            "circle": math.pi * 100,
            "ring": math.pi * 100 * (1 - 0.55**2),
            "square": 16**2,
            "frame": 16**2 - 8**2,
            "triangle": 0.5 * 16 * 19.2,
            "diamond": 2 * 100,
            "plus": 2 * 6 * 20 - 36,
            "cross": 2 * 6 * 20 - 36,
        }[name]
        assert abs(area - want) / want < 0.12, (name, area, want)
        assert m[16, 16] != (name in ("ring", "frame")), name  # hollow shapes are empty at the centre
    # the plus has arms along the axes, the cross along the diagonals
    plus = shapes_mod._shape_masks(np.array([6]), c, c, np.array([10.0], dtype=np.float32))[0]
    cross = shapes_mod._shape_masks(np.array([7]), c, c, np.array([10.0], dtype=np.float32))[0]
    assert plus[16, 7] and plus[7, 16] and not plus[9, 9]
    assert cross[9, 9] and cross[23, 9] and not cross[16, 7]


# ---- tinylang -------------------------------------------------------------------------------


def _parse(seq: list[int]) -> tuple[list[int], list[int]]:
    """An independent reading of the grammar: the kind of every position and the forced next
    token where the grammar forces one (-1 where it does not)."""
    kinds, forced = [], []
    run, copy_at = [], None  # the current run; index into it while copying
    for t in range(len(seq) - 1):
        tok = seq[t]
        if copy_at is not None:
            if copy_at < len(run):
                kinds.append(1), forced.append(run[copy_at])
                copy_at += 1
            else:
                kinds.append(-1), forced.append(tl.BOS)
                copy_at, run = None, []
            continue
        if tok == tl.COPY:  # the run's first token comes next
            kinds.append(1), forced.append(run[0])
            copy_at = 1
            continue
        if tok != tl.BOS:
            run.append(tok)
        kinds.append(0), forced.append(-1)
    return kinds, forced


def test_tinylang_grammar_and_position_kinds():
    s = get_dataset("tinylang").split("val")
    full = torch.cat([s.inputs, s.targets[:, -1:]], dim=1)  # [N, L + 1]
    assert torch.equal(s.targets[:, :-1], s.inputs[:, 1:])
    assert (s.inputs[:, 0] == tl.BOS).all() and (s.targets != IGNORE_INDEX).all()
    kind = s.extras["position_kind"]
    assert kind.dtype == torch.int8
    for n in range(len(s)):
        kinds, forced = _parse(full[n].tolist())
        assert kinds == kind[n].tolist()
        f = torch.tensor(forced)
        assert torch.equal(s.targets[n][f >= 0], f[f >= 0]), "a copy does not repeat its run"
    share = torch.stack([(kind == k).float().mean() for k in (0, 1, -1)])
    assert share[0] > 0.4 and share[1] > 0.25 and share[2] > 0.02


def test_tinylang_true_probs_are_distributions_consistent_with_the_samples():
    s = get_dataset("tinylang").split("train")
    p = s.extras["true_probs"]  # [N, L, V]
    assert tuple(p.shape) == (len(s), 64, tl.VOCAB) and p.dtype == torch.float32
    assert not torch.isnan(p).any()  # every position's distribution is known
    assert torch.allclose(p.sum(-1), torch.ones(p.shape[:2]), atol=1e-5)
    assert (p.gather(-1, s.targets.unsqueeze(-1)) > 0).all()  # no sample has probability 0
    kind = s.extras["position_kind"]
    assert (p.max(-1).values[kind != 0] == 1).all()  # copies and closing <s> are deterministic
    # at local positions, the empirical next-token frequencies match the stated distribution
    local = kind == 0
    cur, nxt, probs = s.inputs[local], s.targets[local], p[local].double()
    for token in (tl.BOS, tl.BOS + 2, tl.BOS + 17):
        sel = cur == token
        freq = torch.bincount(nxt[sel], minlength=tl.VOCAB).double() / sel.sum()
        assert (freq - probs[sel].mean(0)).abs().max() < 0.05, token
        assert torch.allclose(probs[sel], probs[sel][0].expand_as(probs[sel]))  # a function of the token alone


def test_tinylang_transition_rule_and_entropy():
    T = tl.transition_matrix()
    content = slice(len(tl.SPECIALS), None)
    np.testing.assert_allclose(T.sum(1), 1.0)
    assert ((T[content] > 0).sum(1) == 4).all()  # four successors per content token
    assert (T[:, : len(tl.SPECIALS)] == 0).all()
    h_rule = -sum(q * math.log(q) for q in tl.SUCCESSOR_PROBS)
    h_mix = -sum(q * math.log(q) for q in [(1 - tl.COPY_PROB) * r for r in tl.SUCCESSOR_PROBS] + [tl.COPY_PROB])
    s = get_dataset("tinylang").split("test")
    h = tl.true_entropy(s.extras["true_probs"])
    kind, cur = s.extras["position_kind"], s.inputs
    run = (kind == 0) & (cur >= len(tl.SPECIALS))
    assert torch.allclose(h[run].double(), torch.full_like(h[run].double(), h_mix), atol=1e-5)
    assert torch.allclose(
        h[(kind == 0) & (cur == tl.BOS)].double(), torch.tensor(math.log(36), dtype=torch.float64), atol=1e-5
    )
    assert (h[kind != 0] == 0).all()
    assert h_rule < h_mix < math.log(36)
    unknown = torch.full((2, tl.VOCAB), float("nan"))
    assert torch.isnan(tl.true_entropy(unknown)).all()


def test_tinylang_tokenizer_round_trip_and_errors():
    tok = get_dataset("tinylang").tokenizer
    ids = get_dataset("tinylang").split("test").inputs[0]
    text = tok.decode(ids)
    assert tok.encode(text) == ids.tolist()
    assert tok.encode("<s> abc <c> a") == [tl.BOS, 2, 3, 4, tl.COPY, 2]
    assert tok.tokens([0, 1, 2]) == ["<s>", "<c>", "a"]
    with pytest.raises(ValueError, match="'text'.*'!'"):
        tok.encode("ab!")
    with pytest.raises(ValueError, match="'ids'.*99"):
        tok.tokens([99])
