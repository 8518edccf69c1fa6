"""Warnings about values that validate but are far outside what training tolerates (said before a run).

A temperature of 1e200 or a learning rate of 50 is a number the config accepts, but the run will
end in NaN: the user hears which value is odd before the run, and again if the loss blows up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdcore.jobs.config import JobConfig

TEMPERATURE_RANGE = (0.05, 100.0)  # softmax temperatures used in practice lie well inside this
LR_RANGE = (1e-7, 1.0)  # peak learning rates for adam/adamw/sgd


def _outside(value: Any, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not lo <= float(value) <= hi


def sanity_warnings(config: JobConfig) -> list[str]:
    """One sentence per value outside its sane range: what it is, the range, what to do."""
    out: list[str] = []
    temps: set[Any] = {config.temperature} if config.temperature is not None else set()
    try:
        temps |= {t.params.get("temperature") for t in config.resolved_terms()} - {None}
    except Exception:  # an invalid config: validate() reports it
        pass
    for t in sorted(temps, key=float):
        if _outside(t, *TEMPERATURE_RANGE):
            out.append(
                f"The temperature {t:g} is outside the usual range [{TEMPERATURE_RANGE[0]:g}, "
                f"{TEMPERATURE_RANGE[1]:g}]: the softened probabilities underflow or become uniform; "
                f"use a temperature between 1 and 20."
            )
    if _outside(config.lr, *LR_RANGE):
        out.append(
            f"The learning rate (lr) {config.lr:g} is outside the usual range [{LR_RANGE[0]:g}, "
            f"{LR_RANGE[1]:g}]; try 1e-3 for adam or 0.1 for sgd."
        )
    return out
