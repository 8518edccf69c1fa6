"""Partial-to-whole KD (methods/14 §14.5): the stage plan and the cyclic LR, the slimmable teacher
(width 1.0 is the whole network, c_k = max(1, ⌊r·c + ½⌋), inputs and classes never sliced), bad
input refused, and the run end to end on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.pwkd import check
from kdcore.losses.pwkd import pwkd_schedule, slim_channels, stage_lr
from kdcore.slimmable import slimmable
from kdcore.validation import InvalidParameterError
from sample_models import load_pair


@pytest.mark.parametrize("epochs", [4, 7, 10])
def test_the_plan_covers_every_epoch_once_in_equal_stages_remainder_last(epochs):
    plan = pwkd_schedule(epochs, (0.25, 0.5, 0.75, 1.0))
    assert [w for w, _, _ in plan] == [0.25, 0.5, 0.75, 1.0]
    covered = [e for _, a, b in plan for e in range(a, b)]
    assert covered == list(range(epochs))
    lengths = [b - a for _, a, b in plan]
    assert lengths[:-1] == [epochs // 4] * 3 and lengths[-1] == epochs // 4 + epochs % 4


def test_the_lr_restarts_at_lr0_at_every_stage_and_decreases_inside():
    lrs = [stage_lr(0.1, k, 5) for k in range(5)]
    assert lrs[0] == 0.1 and all(b < a for a, b in zip(lrs, lrs[1:]))
    assert lrs[2] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 2 / 5)), rel=1e-12)


@pytest.mark.parametrize(
    ("widths", "epochs", "needle"),
    [((0.5, 0.25, 1.0), 4, "increase strictly"), ((0.25, 0.5), 4, "end at 1.0"), ((0.0, 1.0), 4, "> 0"),
     ((0.5, 1.0), 1, "at least one epoch per stage")],
)  # fmt: skip
def test_a_bad_plan_is_refused_saying_why(widths, epochs, needle):
    with pytest.raises(InvalidParameterError, match=needle):
        pwkd_schedule(epochs, widths)


def test_slim_channels_rounds_half_up_and_never_drops_below_one():
    for c in (1, 3, 12, 64):
        for r in (0.01, 0.25, 0.5, 0.75, 1.0):
            assert slim_channels(c, r) == max(1, math.floor(r * c + 0.5))
    assert slim_channels(64, 1.0) == 64 and slim_channels(3, 0.01) == 1


def test_width_one_is_the_whole_teacher_and_sub_teachers_keep_inputs_and_classes():
    teacher = load_pair("digits").teacher.model
    net = slimmable(teacher, (0.25, 0.5, 1.0)).eval()
    x = load_pair("digits").dataset.split("val").inputs[:8]
    with torch.no_grad():
        assert torch.allclose(net.set_width(1.0)(x), teacher.eval()(x), atol=1e-5)
        for r in (0.25, 0.5):
            out = net.set_width(r)(x)
            assert out.shape == (8, 10) and torch.isfinite(out).all()
    assert net.conv1.conv.weight.shape[1] == 1 and net.feature_layers == ("conv1", "conv2", "conv3")
    with pytest.raises(InvalidParameterError, match="one of the widths"):
        net.set_width(0.3)
    with pytest.raises(InvalidParameterError, match="conv stages"):
        slimmable(nn.Sequential(nn.Linear(3, 3)))


def test_pwkd_is_refused_on_a_language_model_and_with_fewer_epochs_than_stages():
    with pytest.raises(InvalidParameterError, match="classification"):
        check(JobConfig(pair="tinylang", objective="pwkd", epochs=4))
    with pytest.raises(InvalidParameterError, match="at least one epoch per stage"):
        check(JobConfig(pair="digits", objective="pwkd", epochs=2))


def test_pwkd_runs_on_digits_stage_by_stage(tmp_path):
    store = RunStore(tmp_path)
    cfg = JobConfig(
        pair="digits", objective="pwkd", epochs=4, train_size=64, val_size=64, batch_size=32, checkpoints=1, lr=5e-3,
        teacher_cache=True,  # ignored: the teacher changes width
        params={"teacher_epochs": 1, "widths": [0.25, 0.5, 0.75, 1.0]},
    )  # fmt: skip
    res = run_job(cfg, store=store)
    assert res.state == "completed", res.error
    epochs = store.metrics(res.run_id, "epoch")
    done = epochs[epochs["epoch"] > 0]
    assert done["pwkd_width"].tolist() == [0.25, 0.5, 0.75, 1.0] and done["pwkd_stage"].tolist() == [1, 2, 3, 4]
    lr = store.metrics(res.run_id, "step")["lr"].tolist()  # 2 steps per epoch = per stage
    assert lr[0::2] == [5e-3] * 4 and all(b < a for a, b in zip(lr[0::2], lr[1::2]))
    stages = res.metrics["pwkd"]["stages"]
    assert [s["width"] for s in stages] == [0.25, 0.5, 0.75, 1.0]
    first = epochs.iloc[0]
    for s in stages:
        assert first[f"val_acc_subteacher_{s['width']:g}"] == s["teacher_val_acc"]
    assert res.metrics["teacher_val_acc"] == stages[-1]["teacher_val_acc"]
    assert store.get_run(res.run_id)["config"]["teacher_cache"] is False
    accs = [s["teacher_val_acc"] for s in stages]
    grows = all(b >= a for a, b in zip(accs, accs[1:]))
    assert grows == (not any("does not grow with their width" in n for n in res.notices))


def test_the_leaderboard_refuses_pwkd_with_too_few_epochs_before_anything_runs(tmp_path):
    from kdcore.jobs.leaderboard import compare_methods

    store = RunStore(tmp_path)
    with pytest.raises(InvalidParameterError, match="pwkd: .*at least one epoch per stage"):
        compare_methods("digits", ["pwkd"], [0], base={"epochs": 2}, store=store)
    assert len(store.list_runs()) == 0


def test_stage_0_stops_at_the_jobs_max_steps():
    """A smoke run's max_steps caps the slimmable teacher's training too: 3 steps of 8 samples (one forward
    per width each), one loss entry (the first epoch's batches), however many teacher epochs are asked."""
    from kdcore.jobs.pwkd import train_slimmable

    teacher = load_pair("digits").teacher.model
    net = slimmable(teacher, (0.5, 1.0))
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    x = load_pair("digits").dataset.split("train").inputs[:64]
    y = load_pair("digits").dataset.split("train").targets[:64]
    curve = train_slimmable(net, x, y, epochs=5, lr=1e-3, batch=8, seed=0, max_steps=3)
    assert len(calls) == 3 * 2 and len(curve) == 1 and math.isfinite(curve[0])
    calls.clear()
    assert len(train_slimmable(net, x, y, epochs=2, lr=1e-3, batch=8, seed=0)) == 2 and len(calls) == 2 * 8 * 2
