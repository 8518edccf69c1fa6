"""The student ladders of the sample classifier pairs (sample_models.architectures.LADDERS): sizes
strictly between student and teacher, committed weights that match the manifest, metrics that
reproduce, and the ladder reaching kdcore through the registered Pair."""

import hashlib

import pytest
import torch
from torch import nn

import sample_models
from kdcore.data import get_dataset
from sample_models import architectures as arch
from sample_models import ladder_size, load_ladder_model, load_pair, manifest
from sample_models.train import SUBSET, evaluate

LADDER_PAIRS = ("digits", "shapes")
RUNGS = [(p, i) for p in LADDER_PAIRS for i in range(3)]


@pytest.mark.parametrize("name", LADDER_PAIRS)
def test_ladder_sizes_lie_strictly_between_student_and_teacher(name):
    entry = manifest()["pairs"][name]
    rows = entry["ladder"]
    assert len(rows) == ladder_size(name) == len(arch.LADDERS[name]) >= 3
    sizes = [entry["models"]["teacher"]["parameters"], *(r["parameters"] for r in rows)]
    sizes.append(entry["models"]["student"]["parameters"])
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes  # teacher > rung 1 > … > student
    specs = [(r["config"]["channels"], r["config"]["pools"]) for r in rows]
    assert len({str(s) for s in specs}) == len(specs)
    assert len({c[0] for c, _ in specs}) > 1  # the widths vary (digits' depths too)
    for r in rows:
        path = sample_models.ROOT / r["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r["sha256"], f"{path} differs from the manifest"
        assert r["architecture"] == "sample_models.architectures:LadderCNN" and r["trained_with"] == "labels"


@pytest.mark.parametrize("name,rung", RUNGS)
def test_each_rung_loads_and_reproduces_its_manifest_metrics(name, rung):
    model = load_ladder_model(name, rung)
    info = manifest()["pairs"][name]["ladder"][rung]
    assert isinstance(model, arch.LadderCNN) and not model.training
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert model.feature_layers == tuple(f"conv{i}" for i in range(1, len(info["config"]["channels"]) + 1))
    assert convs[-1].startswith(model.cam_layer + ".")
    want = info[f"test_first_{SUBSET}"]
    got = evaluate(model, get_dataset(name), SUBSET)
    assert abs(got["accuracy"] - want["accuracy"]) <= 1.5 / SUBSET
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-5)


def test_the_registered_pair_carries_its_ladder():
    pair = load_pair("digits")
    assert len(pair.ladder) == 3
    x = pair.dataset.split("test").inputs[:4]
    for i, adapter in enumerate(pair.ladder):
        assert adapter.kind == "classifier" and adapter.output_size == 10
        with torch.no_grad():
            torch.testing.assert_close(adapter.logits(x), load_ladder_model("digits", i)(x))
    sizes = [pair.teacher.num_parameters(), *(a.num_parameters() for a in pair.ladder), pair.student.num_parameters()]
    assert sizes == sorted(sizes, reverse=True)
    assert ladder_size("tinylang") == ladder_size("shapes_multilabel") == 0


def test_bad_rungs_are_refused():
    with pytest.raises(ValueError, match=r"'rung'.*integer in \[0, 2\]. Got 3"):
        load_ladder_model("digits", 3)
    with pytest.raises(ValueError, match="has no ladder"):
        load_ladder_model("tinylang", 0)
    from kdcore.pairs import Pair

    p = load_pair("digits")
    with pytest.raises(ValueError, match="'ladder' parameter of Pair must be a tuple"):
        Pair("x", p.teacher, p.student, ladder=p.ladder[0])
    with pytest.raises(ValueError, match="ModelAdapter"):
        Pair("x", p.teacher, p.student, ladder=(load_ladder_model("digits", 0),))
