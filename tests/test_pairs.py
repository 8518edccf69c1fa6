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
