"""Schedules on the loss (kdcore.jobs.schedules): values against closed forms in float64 numpy,
validation against the method table's ranges, the config round trip and the CLI flag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdcore.cli import build_parser, config_from_args
from kdcore.jobs import JobConfig
from kdcore.jobs.config import ConfigError, LossTerm
from kdcore.jobs.schedules import (
    KINDS,
    Schedule,
    apply_values,
    parse_flag,
    schedule_problems,
    scheduled_values,
)
from kdcore.losses import warmup_weight


def _closed_form(kind: str, a: float, b: float, t: np.ndarray, n: int, length: int) -> np.ndarray:
    """The module docstring's formulas, written again in numpy float64."""
    p = np.clip(t / (n - 1), 0.0, 1.0) if n > 1 else np.zeros_like(t)
    if kind == "constant":
        return np.full_like(t, a)
    if kind == "linear":
        return a + (b - a) * p
    if kind == "cosine":
        return b + 0.5 * (a - b) * (1.0 + np.cos(np.pi * p))
    if kind == "warmup":
        return a + (b - a) * np.minimum((t + 1.0) / length, 1.0)
    return np.where(t < length, a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_values_match_the_closed_forms_on_random_schedules(kind):
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.uniform(0.1, 10.0, size=2)
        n, length = int(rng.integers(2, 200)), int(rng.integers(1, 60))
        s = Schedule(kind, a, b, length if kind in ("warmup", "step") else None)
        t = np.arange(n, dtype=np.float64)
        got = np.array([s.value(int(i), n) for i in t])
        np.testing.assert_allclose(got, _closed_form(kind, a, b, t, n, length), rtol=1e-12, atol=1e-12)
        assert got.min() >= min(a, b) - 1e-12 and got.max() <= max(a, b) + 1e-12  # between start and end


def test_endpoints_and_the_middle():
    for kind in ("linear", "cosine"):
        s = Schedule(kind, 8.0, 2.0)
        assert s.value(0, 11) == 8.0 and s.value(10, 11) == pytest.approx(2.0, abs=1e-12)
        assert s.value(5, 11) == pytest.approx(5.0, abs=1e-12)  # both pass the midpoint at p = ½
    assert Schedule("cosine", 8.0, 2.0).value(1, 11) == pytest.approx(2 + 3 * (1 + math.cos(math.pi / 10)))
    assert Schedule("linear", 8.0, 2.0).value(0, 1) == 8.0  # a one-step run stays at start
    assert Schedule("constant", 3.0, 9.0).value(7, 10) == 3.0
    assert Schedule("step", 1.0, 5.0, 4).value(3, 10) == 1.0 and Schedule("step", 1.0, 5.0, 4).value(4, 10) == 5.0
    assert Schedule("linear", 2.0).value(9, 10) == 2.0  # end unset: constant at start


def test_epoch_warmup_is_mdistillers_dkd_warmup():
    s = Schedule("warmup", 0.0, 1.0, 20, unit="epoch")
    for e in range(1, 41):
        assert s.at(step=123, epoch=e, total_steps=999, epochs=40) == pytest.approx(warmup_weight(e, 20), abs=1e-15)
    assert s.at(0, 1, 999, 40) == 0.05 and s.at(0, 20, 999, 40) == 1.0


def test_step_and_epoch_units():
    s = {"lam": {"kind": "linear", "start": 0.1, "end": 0.9, "unit": "epoch"}, "temperature": {"kind": "linear"}}
    v = scheduled_values(s, step=37, epoch=3, total_steps=100, epochs=5)
    assert v["lam"] == pytest.approx(0.1 + 0.8 * 2 / 4) and v["temperature"] == 1.0
    made = scheduled_values({"lam": Schedule("linear", 0.1, 0.9, unit="epoch")}, 37, 3, 100, 5)  # objects too
    assert made == {"lam": v["lam"]}


def test_apply_values_replaces_the_configured_values_without_touching_the_terms():
    terms = JobConfig(objective="kd", temperature=4.0).validate().resolved_terms()
    out, ce = apply_values(terms, 0.0, {"temperature": 2.5, "lam": 0.3, "weight:kd": 0.5, "weight:ce": 0.7})
    assert out[0].params["temperature"] == 2.5 and out[0].params["lam"] == 0.3 and out[0].weight == 0.5
    assert ce == 0.7 and terms[0].params["temperature"] == 4.0 and terms[0].weight == 1.0
    sum_terms = [LossTerm("dkd", 2.0, {"temperature": 4.0}), LossTerm("at", 1.0, {"p": 2})]
    out, _ = apply_values(sum_terms, 1.0, {"temperature": 3.0})
    assert out[0].params["temperature"] == 3.0 and "temperature" not in out[1].params  # only who takes it


# ---- validation -------------------------------------------------------------------------------------


def test_unknown_kind_and_target_are_refused_listing_the_known_ones():
    (p,) = JobConfig(objective="kd", schedules={"temperature": {"kind": "wobble", "start": 4}}).problems()
    assert "kind must be one of constant, linear, cosine, warmup, step; got 'wobble'" in p
    (p,) = JobConfig(objective="kd", schedules={"weight:dkd": {"kind": "constant"}}).problems()
    assert "has no value 'weight:dkd'" in p and "targets it has: temperature, lam, weight:kd, weight:ce" in p
    (p,) = JobConfig(objective="ctkd", schedules={"temperature": {"start": 4}}).problems()
    assert "targets it has: weight:ctkd, weight:ce" in p  # CTKD learns its temperature


def test_values_outside_the_targets_range_are_refused_with_the_range():
    bad = {"temperature": {"kind": "linear", "start": 4, "end": 0}, "lam": {"kind": "cosine", "start": 1.5, "end": 0.5}}
    problems = JobConfig(objective="kd", schedules=bad).problems()
    assert problems == [
        "schedules['temperature'].end must be a number in (0, inf); got 0.0 (the range of 'temperature' of method 'kd')",
        "schedules['lam'].start must be a number in [0, 1]; got 1.5 (the range of 'lam' of method 'kd')",
    ]
    (p,) = JobConfig(objective="dkd", schedules={"weight:dkd": {"start": -1}}).problems()
    assert "must be a number in [0, inf); got -1.0" in p


def test_malformed_specs_are_refused():
    problems = schedule_problems(
        {"temperature": {"kind": "warmup", "start": "4", "unit": "hour", "colour": 1}, "lam": 0.5}, ["kd"]
    )
    text = "\n".join(problems)
    assert "unknown key 'colour'" in text and "unit must be one of step, epoch; got 'hour'" in text
    assert "start must be a finite number; got '4'" in text and "length (the ramp's length)" in text
    assert "schedules['lam'] must be a mapping" in text
    assert schedule_problems([], ["kd"]) == ["'schedules' must be a mapping of targets to schedules; got list"]
    assert "length is only used by kinds warmup and step" in schedule_problems({"lam": {"length": 3}}, ["kd"])[0]


def test_sum_objectives_schedule_their_terms():
    cfg = JobConfig(
        objective="sum",
        terms=[{"name": "kd", "weight": 1.0}, {"name": "attention_transfer", "params": {"layers": {"a": "b"}}}],
        schedules={"weight:at": {"kind": "linear", "start": 0, "end": 2}, "temperature": {"start": 2}},
    )
    assert cfg.problems() == []


# ---- round trip and CLI -------------------------------------------------------------------------------


def test_schedules_round_trip_through_dict_json_and_yaml(tmp_path):
    s = {
        "temperature": {"kind": "cosine", "start": 8.0, "end": 2.0},
        "weight:dkd": Schedule("warmup", 0, 1, 5).to_dict(),
    }
    cfg = JobConfig(objective="dkd", schedules=s).validate()
    assert JobConfig.from_dict(cfg.to_dict()) == cfg
    assert JobConfig.from_json(cfg.to_json()) == cfg and JobConfig.from_yaml(cfg.to_yaml()) == cfg
    cfg.save(tmp_path / "job.yaml")
    assert JobConfig.load(tmp_path / "job.yaml").schedules == s
    assert JobConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "schedules"}).schedules == {}


def test_the_flag_parses_into_specs():
    assert parse_flag("temperature=cosine:8:2") == ("temperature", {"kind": "cosine", "start": 8.0, "end": 2.0})
    assert parse_flag("weight:dkd=warmup:0:1:20@epoch") == (
        "weight:dkd",
        {"kind": "warmup", "start": 0.0, "end": 1.0, "length": 20, "unit": "epoch"},
    )
    assert parse_flag("lam=constant:0.5") == ("lam", {"kind": "constant", "start": 0.5})
    for bad in ("temperature", "temperature=", "temperature=cosine:a:b", "t=linear:1:2:3:4:5", "t=linear:1@"):
        with pytest.raises(ValueError, match=r"--loss-schedule expects"):
            parse_flag(bad)


def test_cli_flags_reach_the_config(tmp_path):
    path = tmp_path / "job.yaml"
    JobConfig(objective="kd", schedules={"lam": {"kind": "linear", "start": 0.2, "end": 0.8}}).save(path)
    args = build_parser().parse_args(
        ["distill", "--config", str(path), "--loss-schedule", "temperature=linear:6:2", "--schedule", "cosine"]
    )
    cfg = config_from_args(args)
    assert cfg.schedule == "cosine"  # --schedule stays the learning rate's
    assert cfg.schedules == {
        "lam": {"kind": "linear", "start": 0.2, "end": 0.8},
        "temperature": {"kind": "linear", "start": 6.0, "end": 2.0},
    }
    with pytest.raises(ConfigError, match="--loss-schedule expects"):
        config_from_args(build_parser().parse_args(["distill", "--loss-schedule", "temperature:cosine"]))
