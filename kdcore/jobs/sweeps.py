"""What every experiment shares: its inputs checked before anything runs, the selection rule that
picks a sweep's winner, and the per-variant statistics over seeds (pure functions, no training).

    rule = SelectionRule(metric="best", ties="lower")
    rule.choose({1.0: [0.91, 0.92], 2.0: [0.93, 0.93]}, lower_better=False)   # -> 2.0

A sweep's value wins by the mean over seeds of the rule's metric (the best epoch's validation metric,
or the final epoch's); means within `tolerance` of the best are a tie, settled by `ties` (the lower
value by default: the survey's "ties to the lower T").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kdcore.validation import InvalidParameterError

RULE_METRICS = ("best", "final")  # the best epoch's validation metric, or the last epoch's
RULE_TIES = ("lower", "higher")  # which sweep value a tie goes to
TIE_EPS = 1e-12  # means this close are equal (the same accuracies summed in another order differ in the last bit)


@dataclass(frozen=True)
class SelectionRule:
    """How a sweep's winner is chosen: by the mean over seeds of `metric`; ties to `ties`."""

    metric: str = "best"  # "best" | "final"
    ties: str = "lower"  # "lower" | "higher"
    tolerance: float = 0.0  # means within this of the best mean count as a tie (≥ 0)

    def __post_init__(self) -> None:
        if self.metric not in RULE_METRICS:
            raise InvalidParameterError(
                f"The selection rule's 'metric' must be one of {RULE_METRICS}. Got {self.metric!r}; "
                f"use 'best' (best-epoch validation metric) or 'final' (last epoch's)."
            )
        if self.ties not in RULE_TIES:
            raise InvalidParameterError(
                f"The selection rule's 'ties' must be one of {RULE_TIES}. Got {self.ties!r}; "
                f"'lower' gives a tie to the lower sweep value."
            )
        if not (isinstance(self.tolerance, (int, float)) and math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise InvalidParameterError(
                f"The selection rule's 'tolerance' must be a finite number ≥ 0. Got {self.tolerance!r}; use 0 "
                f"for exact ties only."
            )

    def choose(self, scores: Mapping[float, Sequence[float]], *, lower_better: bool) -> float:
        """The winning sweep value. scores: value -> the rule metric of each seed (NaN-free lists)."""
        means = {v: float(np.mean(s)) for v, s in scores.items() if len(s)}
        if not means:
            raise InvalidParameterError(
                "The selection rule has no finished run to choose from: every run of the sweep failed or was "
                "cancelled. Look at the runs' errors (`python -m kdcore runs list`) and run the experiment again."
            )
        best = min(means.values()) if lower_better else max(means.values())
        tied = [v for v, m in means.items() if abs(m - best) <= self.tolerance + TIE_EPS]
        return min(tied) if self.ties == "lower" else max(tied)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "ties": self.ties, "tolerance": float(self.tolerance)}


def seed_list(seeds: Iterable[int], *, what: str, at_least: int = 1) -> list[int]:
    """Seeds as distinct ints ≥ 0, at least `at_least` of them; refused with the fix otherwise."""
    out = list(seeds)
    ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in out)
    distinct = list(dict.fromkeys(int(s) for s in out)) if ok else []
    if not ok or len(distinct) < at_least:
        example = ",".join(str(i) for i in range(max(at_least, 2)))
        raise InvalidParameterError(
            f"The seeds of {what} must be at least {at_least} distinct integer(s) ≥ 0. Got {out!r}; "
            f"give e.g. --seeds {example}."
        )
    return distinct


def sweep_values(values: Iterable[float], *, name: str, low: float, high: float, low_open: bool) -> list[float]:
    """A sweep's values: at least two distinct finite numbers in the range (low, high] or [low, high]."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidParameterError(f"The {name} sweep must be a list of numbers. Got {values!r}.") from None
    distinct = list(dict.fromkeys(out))
    if len(distinct) < 2:
        raise InvalidParameterError(
            f"A {name} sweep needs at least two values to choose between. Got {out!r}; give two or more "
            f"(e.g. --{'temperatures 1,2,5,10' if name == 'temperature' else 'lams 0.1,0.5,0.9'}), or run one "
            f"job with `python -m kdcore distill`."
        )
    bad = [v for v in distinct if not math.isfinite(v) or v > high or v < low or (low_open and v == low)]
    if bad:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise InvalidParameterError(f"Every {name} of the sweep must lie in {span}. Got {bad}; drop or fix them.")
    return distinct


def lam_value(lam: float, *, what: str) -> float:
    """One λ, checked to lie in [0, 1]."""
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0.0 <= float(lam) <= 1.0:
        raise InvalidParameterError(
            f"{what} must be a number in [0, 1] (KD's weight; CE gets 1 − λ). Got {lam!r}; e.g. 0.9."
        )
    return float(lam)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, std with ddof 1); NaN where undefined (no value; one value's std)."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean()) if a.size else float("nan")
    return mean, float(a.std(ddof=1)) if a.size > 1 else float("nan")


def interval_text(mean: float, low: float, high: float, *, signed: bool = False) -> str:
    """ "0.9120 [0.9010, 0.9230]" (or "+0.0100 [...]"); "(1 seed)" without bounds; "n/a" without a value."""
    f = "{:+.4f}" if signed else "{:.4f}"
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(low):
        return f.format(mean) + " (1 seed)"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def mean_std_text(mean: float, std: float, *, signed: bool = False) -> str:
    f = "{:+.4f}" if signed else "{:.4f}"
    if not math.isfinite(mean):
        return "n/a"
    return f.format(mean) + (f" ± {std:.4f}" if math.isfinite(std) else " (1 seed)")
