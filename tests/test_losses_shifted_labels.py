"""kdcore.losses.sequence_masks.shifted_labels: the one-step shift of HF labels that every sequence loss
(seqkd, hybrid, GKD, MiniLLM) starts from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcore.losses.sequence_masks import shifted_labels
from kdcore.validation import InvalidParameterError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shift_and_keep_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 20, size=(3, 7))
    labels[rng.random((3, 7)) < 0.4] = -100
    labels[0, 1] = 5  # at least one kept position after the shift
    y, keep = shifted_labels(torch.from_numpy(labels), where="w")
    np.testing.assert_array_equal(y.numpy(), labels[:, 1:])
    np.testing.assert_array_equal(keep.numpy(), labels[:, 1:] != -100)
    assert keep.dtype == torch.bool


def test_refuses_a_batch_that_keeps_nothing_naming_the_argument() -> None:
    labels = torch.full((2, 4), -100)
    labels[:, 0] = 3  # the first label is dropped by the shift
    with pytest.raises(InvalidParameterError, match="labels_seq of hybrid_loss keep no position"):
        shifted_labels(labels, where="hybrid_loss", name="labels_seq")
