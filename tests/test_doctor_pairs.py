"""The doctor's toy pairs (tests/helpers/doctor_toys.py) are what the doctor tests assume."""

import torch

from tests.helpers.doctor_toys import V, calibrated_pair, lm_pair


def test_the_toy_teachers_are_what_the_doctor_tests_assume():
    pair = calibrated_pair()
    val = pair.dataset.split("val")
    acc = float((pair.teacher.logits(val.inputs).argmax(-1) == val.targets).float().mean())
    conf = float(torch.softmax(pair.teacher.logits(val.inputs), -1).max(-1).values.mean())
    assert 0.6 < acc < 0.95 and abs(acc - conf) < 0.08  # accurate enough, and calibrated
    lm = lm_pair()
    x, y = lm.dataset.split("val").inputs, lm.dataset.split("val").targets
    nll = torch.nn.functional.cross_entropy(lm.teacher.logits(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    assert float(nll) < 0.8 * torch.log(torch.tensor(float(V)))  # far better than uniform
