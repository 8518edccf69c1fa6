"""Partial-to-whole KD's schedule (methods/14 §14.5): the stages of sub-teachers of growing width and
the cyclic learning rate. Zhang, Zhang & Sun, arXiv 2109.12507 (2021); the width set, the equal split
of epochs, the cosine restarted per stage and the momentum reset are our reading (the paper's body
was not readable), marked as choices in the API docs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kdcore.validation import InvalidParameterError

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


def check_widths(widths: Sequence[float], where: str = "pwkd") -> tuple[float, ...]:
    """Widths r_1 < … < r_K = 1, each > 0; raises naming the rule broken."""
    try:
        ws = tuple(float(w) for w in widths)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"The 'widths' of {where} must be a list of numbers. Got {widths!r}.") from None
    if not ws or any(not math.isfinite(w) or w <= 0 for w in ws):
        raise InvalidParameterError(f"The 'widths' of {where} must be numbers > 0. Got {list(widths)!r}.")
    if any(b <= a for a, b in zip(ws, ws[1:])) or ws[-1] != 1.0:
        raise InvalidParameterError(
            f"The 'widths' of {where} must increase strictly and end at 1.0 (the whole teacher), e.g. "
            f"{list(DEFAULT_WIDTHS)}. Got {list(widths)!r}."
        )
    return ws


def slim_channels(channels: int, width: float) -> int:
    """c_k = max(1, ⌊r_k·c + ½⌋): the channels a layer of `channels` keeps at width r_k."""
    return max(1, math.floor(width * channels + 0.5))


def pwkd_schedule(total_epochs: int, widths: Sequence[float] = DEFAULT_WIDTHS) -> list[tuple[float, int, int]]:
    """[(width, start epoch, end epoch)] of the K student stages (end exclusive): epochs split equally,
    the remainder to the last stage; together they cover every epoch once."""
    ws = check_widths(widths, "pwkd_schedule")
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < len(ws):
        raise InvalidParameterError(
            f"pwkd_schedule needs at least one epoch per stage: {len(ws)} widths, got total_epochs={total_epochs!r}. "
            f"Raise epochs to ≥ {len(ws)} or use fewer widths."
        )
    each = total_epochs // len(ws)
    starts = [k * each for k in range(len(ws))]
    ends = starts[1:] + [total_epochs]
    return list(zip(ws, starts, ends))


def stage_lr(lr0: float, step_in_stage: int, stage_steps: int) -> float:
    """Cosine from lr₀ (at the stage's first step) towards 0 over the stage's steps, restarted every stage."""
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * step_in_stage / max(1, stage_steps)))
