"""Pair validates itself: kinds, output sizes (classes or vocabularies) and the dataset."""

import pytest
import torch
from torch import nn

from kdcore.adapters import wrap
from kdcore.data import Dataset, SplitData
from kdcore.pairs import Pair


def _clf(classes, width=8, name="m"):
    return wrap(nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, classes)), name=name)


class _LM(nn.Module):
    def __init__(self, vocab, d=4):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, d), nn.Linear(d, vocab)

    def forward(self, ids):
        return self.head(self.embed(ids))  # [B, L, V]


def _lm(vocab, name="lm"):
    return wrap(_LM(vocab), name=name, kind="causal_lm")


def _dataset(task, size):
    def build():
        split = SplitData(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
        return {"train": split, "val": split, "test": split}

    key = "vocab_size" if task == "causal_lm" else "num_classes"
    return Dataset(name="toy", task=task, build=build, **{key: size})


def test_valid_pairs():
    pair = Pair("clf", _clf(4, 16), _clf(4, 3), _clf(4, 3), _dataset("classification", 4))
    assert pair.kind == "classifier" and pair.output_size == 4
    assert list(pair.models()) == ["teacher", "student", "student_baseline"]
    lm_pair = Pair("lm", _lm(13), _lm(13), dataset=_dataset("causal_lm", 13))
    assert lm_pair.kind == "causal_lm" and lm_pair.output_size == 13
    assert list(lm_pair.models()) == ["teacher", "student"]
    assert Pair("multi", _clf(3), _clf(3), dataset=_dataset("multilabel", 3)).output_size == 3


def test_class_count_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match="teacher has 10 classes, the student has 7"):
        Pair("p", _clf(10), _clf(7))
    with pytest.raises(ValueError, match="teacher has 10 classes, the student_baseline has 9"):
        Pair("p", _clf(10), _clf(10), student_baseline=_clf(9))


def test_vocabulary_mismatch_names_both_sizes_and_uld():
    with pytest.raises(ValueError, match=r"teacher has 50 tokens, the student has 40.*'uld'"):
        Pair("p", _lm(50), _lm(40))


def test_kind_mismatch():
    with pytest.raises(ValueError, match="teacher is a classifier but the student is a causal_lm"):
        Pair("p", _clf(5), _lm(5))


def test_dataset_mismatches():
    with pytest.raises(ValueError, match="number of classes of 6, but the models' outputs have 4"):
        Pair("p", _clf(4), _clf(4), dataset=_dataset("classification", 6))
    with pytest.raises(ValueError, match="vocabulary size of 12, but the models' outputs have 13"):
        Pair("p", _lm(13), _lm(13), dataset=_dataset("causal_lm", 12))
    with pytest.raises(ValueError, match="causal_lm task, but the models are classifiers"):
        Pair("p", _clf(4), _clf(4), dataset=_dataset("causal_lm", 4))
    with pytest.raises(ValueError, match="'dataset'"):
        Pair("p", _clf(4), _clf(4), dataset="digits")


def test_non_adapters_and_bad_names_are_refused():
    with pytest.raises(ValueError, match="'student' parameter of Pair must be a ModelAdapter"):
        Pair("p", _clf(4), nn.Linear(5, 4))
    with pytest.raises(ValueError, match="'name'"):
        Pair("", _clf(4), _clf(4))


# ---- the pair registry -------------------------------------------------------------------------------

import sys  # noqa: E402
import textwrap  # noqa: E402

from kdcore import pair_registry  # noqa: E402
from kdcore.pairs import (  # noqa: E402
    ENTRY_POINT_GROUP,
    get_pair_loader,
    load_registered_pair,
    register_pair,
    registered_pairs,
    resolve_pair,
)
from kdcore.validation import InvalidParameterError  # noqa: E402
from tests.helpers.toys import TOY, toy_lm_pair, toy_pair  # noqa: E402

USER_PACKAGE = """
CALLS = []


def register():
    from kdcore.pairs import register_pair
    CALLS.append(1)
    register_pair("toy_from_entry_point", "tests.helpers.toys:toy_pair", description="the toy MLPs")
"""


def not_a_pair():
    return "digits"


@pytest.fixture
def registry(monkeypatch):
    """An empty registry for one test (the sample pairs and discovery state come back afterwards)."""
    monkeypatch.setattr(pair_registry, "_REGISTRY", {})
    monkeypatch.setattr(pair_registry, "_DISCOVERY", {"done": False, "found": 0, "errors": []})
    return pair_registry


def _fake_distribution(root, name: str, entry_points: str):
    """A *.dist-info folder on a sys.path entry, as `pip install` leaves one."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


def test_registered_pairs_load_by_name(registry, monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    entry = register_pair("toy", toy_pair, recipe={"epochs": 3}, description="two MLPs")
    assert entry.source == "tests.helpers.toys" and entry.recipe == {"epochs": 3}
    pair = load_registered_pair("toy")
    assert isinstance(pair, Pair) and pair.name == toy_pair().name
    assert get_pair_loader("toy") is toy_pair
    assert list(registered_pairs()) == ["toy"] and registered_pairs()["toy"].description == "two MLPs"
    register_pair("toy", toy_pair)  # the same module again: replaced, no error
    with pytest.raises(ValueError, match="already registered by tests.helpers.toys"):
        register_pair("toy", lambda: toy_pair())  # another module may not take the name
    assert resolve_pair(TOY).name == pair.name  # module:factory needs no registration


def test_a_users_pair_registers_by_module_factory_and_runs(registry, data_dir):
    from kdcore.jobs import JobConfig, RunStore, run_job

    register_pair("mine", "tests.helpers.toys:toy_lm_pair", description="a user's pair, imported when loaded")
    assert registered_pairs()["mine"].source == "tests.helpers.toys"
    assert load_registered_pair("mine").name == toy_lm_pair().name
    r = run_job(JobConfig(pair="mine", objective="token", epochs=1, batch_size=32), store=RunStore())
    assert r.state == "completed" and RunStore().get_run(r.run_id)["pair"] == "mine"
    register_pair("broken", "tests.no_such_module:make")
    with pytest.raises(ValueError, match="loader of pair 'broken' names a factory that cannot be imported"):
        load_registered_pair("broken")
    register_pair("not_a_pair", "tests.test_pairs:not_a_pair")
    with pytest.raises(ValueError, match="must return a kdcore.pairs.Pair"):
        load_registered_pair("not_a_pair")


@pytest.mark.parametrize(
    "name, loader, needle",
    [
        ("a:b", toy_pair, "'name' parameter of register_pair"),
        ("", toy_pair, "'name' parameter of register_pair"),
        ("x", 42, "'loader' parameter of register_pair must be a callable"),
        ("x", "no_colon", "'loader' parameter of register_pair must be a callable or a 'package.module:factory'"),
    ],
)
def test_bad_registrations_are_refused(registry, name, loader, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        register_pair(name, loader)
    assert not registry._REGISTRY


def test_an_unknown_pair_lists_the_known_ones_and_how_to_register(registry, monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])  # nothing installed
    register_pair("digits_toy", toy_pair)
    register_pair("lm_toy", toy_lm_pair)
    with pytest.raises(ValueError) as e:
        resolve_pair("digits_tyo")
    msg = str(e.value)
    assert "Got 'digits_tyo'" in msg and "Registered pairs: digits_toy, lm_toy." in msg
    assert "Did you mean 'digits_toy'?" in msg
    assert "register_pair(name, loader)" in msg and ENTRY_POINT_GROUP in msg and "module:factory" in msg
    assert "pip install -e ." in msg  # no entry point was found at all
    with pytest.raises(ValueError) as e:
        resolve_pair("zzzz")
    assert "Did you mean" not in str(e.value)


def test_entry_points_are_discovered_lazily(registry, tmp_path, monkeypatch):
    """A user's package, installed: its module and its dist-info declaring the entry point."""
    (tmp_path / "kdwb_user_pairs.py").write_text(USER_PACKAGE)
    _fake_distribution(
        tmp_path,
        "kdwb_user_pairs",
        f"""
        [{ENTRY_POINT_GROUP}]
        toys = kdwb_user_pairs:register
        broken = tests.no_such_module:register
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kdwb_user_pairs", raising=False)
    assert not registry._REGISTRY  # nothing read before a lookup
    pair = resolve_pair("toy_from_entry_point")  # a miss reads the entry points once
    calls = sys.modules["kdwb_user_pairs"].CALLS
    assert isinstance(pair, Pair) and pair.name == toy_pair().name and calls == [1]
    assert registered_pairs()["toy_from_entry_point"].description == "the toy MLPs"
    with pytest.raises(ValueError) as e:  # the broken one is named, the others work
        resolve_pair("nope")
    msg = str(e.value)
    assert "An entry point failed: broken = tests.no_such_module:register" in msg and "pip install" not in msg
    assert "toy_from_entry_point" in msg and calls == [1]  # read once per process
    monkeypatch.delitem(sys.modules, "kdwb_user_pairs")
