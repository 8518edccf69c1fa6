"""The toy pairs of tests/helpers/toys.py are what the job tests assume."""

import torch

from tests.helpers.toys import toy_conv_pair, toy_lm_pair, toy_pair


def test_toy_pairs_are_valid_and_the_teacher_is_accurate():
    p = toy_pair()
    val = p.dataset.split("val")
    acc = float((p.teacher.logits(val.inputs).argmax(-1) == val.targets).float().mean())
    assert 0.8 < acc < 1.0  # the labelling function, up to the noise
    assert toy_conv_pair().student.logits(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    lm = toy_lm_pair()
    assert lm.dataset.task == "causal_lm" and lm.student.logits(torch.zeros(2, 6, dtype=torch.long)).shape == (2, 6, 11)
