"""The helpers shared by the Hugging Face text loaders (kdcore.data._hf_rows, and the source reading of
kdcore.data._hf_documents) and the split options every user-data loader checks
(kdcore.data._user_common.check_split_options)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcore.data._hf_documents import jsonl_rows, read_text
from kdcore.data._hf_rows import assign_rows, check_length, masked_splits
from kdcore.data._user_common import check_split_options
from kdcore.validation import InvalidParameterError


def test_check_split_options_returns_checked_values_and_refuses_bad_ones() -> None:
    assert check_split_options(0.2, 0.1, 7, 1024, where="w") == (0.2, 0.1, 7, 1024)
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction of w must be below 1"):
        check_split_options(0.6, 0.5, 0, 1024, where="w")
    with pytest.raises(ValueError, match="seed"):
        check_split_options(0.1, 0.1, -1, 1024, where="w")
    with pytest.raises(ValueError, match="max_bytes"):
        check_split_options(0.1, 0.1, 0, 0, where="w")


def test_check_length_caps_at_max_position_embeddings(tmp_path) -> None:
    config = {"max_position_embeddings": 32}
    assert check_length("max_length", 32, config, tmp_path, where="w") == 32
    assert check_length("context_length", 500, {}, tmp_path, where="w") == 500  # no limit in the config
    with pytest.raises(InvalidParameterError, match="'max_length' parameter of w must be at most .* 32"):
        check_length("max_length", 33, config, tmp_path, where="w")
    with pytest.raises(ValueError, match="context_length"):
        check_length("context_length", 0, config, tmp_path, where="w")


@pytest.mark.parametrize("n_rows, vf, tf, seed", [(10, 0.1, 0.1, 0), (57, 0.2, 0.15, 3), (3, 0.01, 0.01, 1)])
def test_assign_rows_is_a_seeded_permutation(n_rows: int, vf: float, tf: float, seed: int) -> None:
    owner = assign_rows(n_rows, vf, tf, seed, where="w")
    n_val, n_test = max(1, round(vf * n_rows)), max(1, round(tf * n_rows))
    order = np.random.default_rng(seed).permutation(n_rows)  # independent: the same seeded permutation
    expected = ["train"] * n_rows
    for i in order[:n_val]:
        expected[i] = "val"
    for i in order[n_val : n_val + n_test]:
        expected[i] = "test"
    assert owner.tolist() == expected
    assert np.array_equal(owner, assign_rows(n_rows, vf, tf, seed, where="w"))


def test_assign_rows_refuses_too_few_rows() -> None:
    with pytest.raises(InvalidParameterError, match="The text given to w makes 2 row"):
        assign_rows(2, 0.1, 0.1, 0, where="w")


def test_masked_splits_takes_each_splits_rows() -> None:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 50, (6, 4), generator=g)  # [N, L]
    targets = torch.randint(0, 3, (6,), generator=g)  # [N]
    mask = torch.randint(0, 2, (6, 4), generator=g)  # [N, L]
    owner = np.array(["train", "val", "train", "test", "train", "val"])
    splits = masked_splits(inputs, targets, mask, owner)
    assert set(splits) == {"train", "val", "test"}
    for name, rows in {"train": [0, 2, 4], "val": [1, 5], "test": [3]}.items():
        assert torch.equal(splits[name].inputs, inputs[rows])
        assert torch.equal(splits[name].targets, targets[rows])
        assert torch.equal(splits[name].extras["attention_mask"], mask[rows])


def test_read_text_decodes_and_picks_the_kind() -> None:
    text, kind, name = read_text(b"\xef\xbb\xbfa\r\nb\rc", format="auto", text_field="text", max_bytes=100, where="w")
    assert (text, kind, name) == ("a\nb\nc", "text", None)  # BOM dropped, line ends made "\n"
    assert read_text(b"x", format="csv", text_field="t", max_bytes=100, where="w")[1] == "csv"
    with pytest.raises(InvalidParameterError, match="'format' parameter of w"):
        read_text(b"x", format="xml", text_field="t", max_bytes=100, where="w")
    with pytest.raises(InvalidParameterError, match="must be UTF-8"):
        read_text(b"\xff\xfe", format="text", text_field="t", max_bytes=100, where="w")


def test_jsonl_rows_numbers_the_lines_and_skips_blank_ones() -> None:
    assert jsonl_rows('{"a": 1}\n\n  \n[2, 3]\n"s"', "w") == [(1, {"a": 1}), (4, [2, 3]), (5, "s")]
    with pytest.raises(InvalidParameterError, match="Line 2 of the JSONL given to w is not valid JSON"):
        jsonl_rows('{"a": 1}\n{oops', "w")
