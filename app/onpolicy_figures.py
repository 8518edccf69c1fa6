"""The view of an on-policy run (gkd, minillm, distillm; methods/15): the share of student-sampled
steps and the validation-loss curve. No Streamlit: the Distill page and the HTML report use it."""

from __future__ import annotations

import pandas as pd

from analyses.onpolicy import onpolicy_figure
from kdcore.methods import canonical_name

ONPOLICY = ("gkd", "minillm", "distillm")


def onpolicy_figures(run: dict, steps: pd.DataFrame, epochs: pd.DataFrame) -> list:
    """[] for other objectives or before the first step; else [the on-policy share and quality figure]."""
    name = canonical_name((run.get("config") or {}).get("objective"))
    if name not in ONPOLICY or not len(steps) or "onpolicy_share" not in steps:
        return []
    return [onpolicy_figure(steps, epochs)]
