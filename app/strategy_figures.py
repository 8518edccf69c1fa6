"""The views of a run whose objective has one of its own (methods/13): per-exit accuracy of a BYOT
run, grades over time of an education run. No Streamlit: the Distill page and the HTML report use them."""

from __future__ import annotations

import pandas as pd

from analyses import self_distill as sd
from kdcore.methods import canonical_name


def grades_from_epochs(epochs: pd.DataFrame) -> list[tuple[int, int]]:
    """The grades' class ranges [(m_g, n_g), …] the run has reached, from its `grade` and `active_classes` columns."""
    ep = epochs[(epochs["epoch"] > 0) & epochs["grade"].notna()].sort_values("epoch")
    ends = ep.groupby("grade")["active_classes"].max().sort_index()
    bounds = [0, *(int(n) for n in ends)]
    return list(zip(bounds[:-1], bounds[1:]))


def strategy_figures(run: dict, epochs: pd.DataFrame) -> list:
    """[] for other objectives, or before the first epoch ended."""
    name = canonical_name((run.get("config") or {}).get("objective"))
    if not len(epochs) or "epoch" not in epochs or not (epochs["epoch"] > 0).any():
        return []
    if name == "byot" and sd.exit_columns(epochs):
        return [sd.exit_accuracy_figure(epochs)]
    if name == "education" and "grade" in epochs and "active_classes" in epochs:
        return [sd.grades_figure(epochs, grades_from_epochs(epochs))]
    return []
