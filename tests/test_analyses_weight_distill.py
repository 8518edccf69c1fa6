"""Weight distillation's figures (analyses/weight_distill.py): each phase's accuracy per epoch and the
mixing weights per group, drawn from the values given; bad input refused with what is expected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.weight_distill import wd_accuracy_figure, wd_mix_figure
from kdcore.validation import InvalidParameterError


def _epochs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    acc = rng.uniform(0, 1, 6)
    return pd.DataFrame({"epoch": [0, 1, 2, 3, 4, 5], "val_acc": acc, "wd_phase": [np.nan, 1, 1, 1, 2, 2]})


def test_the_accuracy_figure_has_one_trace_per_phase_with_its_epochs():
    ep = _epochs()
    fig = wd_accuracy_figure(ep, teacher_acc=0.9)
    assert [t.name for t in fig.data] == ["phase 1: generated weights", "phase 2: plain student"]
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[1].x) == [4, 5]
    np.testing.assert_array_equal(fig.data[0].y, ep["val_acc"].to_numpy()[1:4])
    np.testing.assert_array_equal(fig.data[1].y, ep["val_acc"].to_numpy()[4:])
    assert fig.layout.shapes[0].x0 == 0.5 and fig.layout.shapes[0].x1 == 3.5  # the phase-1 band
    assert any(s.y0 == 0.9 for s in fig.layout.shapes)  # the teacher's line


def test_the_mix_figure_has_a_bar_per_teacher_tensor_of_each_group():
    rng = np.random.default_rng(1)
    c = rng.normal(size=2).tolist()
    summary = {"weight_distill": {"mix": {"fc1.weight": c, "head.weight": [1.0]},
                                  "groups": {"fc1": ["fc1", "fc2"], "head": ["head"]}}}  # fmt: skip
    fig = wd_mix_figure(summary)
    assert [t.name for t in fig.data] == ["teacher tensor 1", "teacher tensor 2"]
    assert list(fig.data[0].x) == ["fc1.weight ← fc1+fc2", "head.weight ← head"]
    assert list(fig.data[0].y) == [c[0], 1.0] and list(fig.data[1].y) == [c[1], None]


@pytest.mark.parametrize("bad", [{}, {"weight_distill": {"mix": {}}}, None])
def test_bad_input_is_refused_saying_what_is_expected(bad):
    with pytest.raises(InvalidParameterError, match="weight_distill run's summary"):
        wd_mix_figure(bad)
    with pytest.raises(InvalidParameterError, match="wd_phase"):
        wd_accuracy_figure(pd.DataFrame({"epoch": [1], "val_acc": [0.5]}))
