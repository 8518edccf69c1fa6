"""The Distill form's schedule on the loss (kdcore.jobs.schedules): the widgets of one schedule, and the
preview of what the run will log (`sched_*`), drawn before the run from the form's values.

The widgets sit outside the `st.form`, so the preview redraws as soon as a value changes.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import run_figures
from kdcore.jobs.prepare import step_plan
from kdcore.jobs.schedules import KINDS, UNITS, WEIGHT_PREFIX
from kdcore.methods import Method

NONE = "(none)"


def targets(method: Method) -> list[str]:
    """What a single-method objective can schedule: its temperature and λ, its weight and the CE's."""
    own = [t for t in ("temperature", "lam") if method.takes(t)]
    return [NONE, *own, WEIGHT_PREFIX + method.name, WEIGHT_PREFIX + "ce"]


def schedule_controls(method: Method, defaults: dict) -> dict:
    """One schedule's widgets; returns the job's `schedules` ({} when none is chosen)."""
    with st.expander("Schedule the loss (temperature, λ or a weight over the run)", expanded=False):
        c1, c2, c3, c4, c5, c6 = st.columns([2, 2, 1, 1, 1, 1])
        options = targets(method)
        target = c1.selectbox(
            "Schedule", options, key=f"sched_target_{method.name}", help=_TARGET_HELP.format(method=method.name)
        )
        kind = c2.selectbox("Kind", KINDS, index=KINDS.index("cosine"), key="sched_kind", help=_KIND_HELP)
        first = float(defaults.get(target) or (4.0 if target == "temperature" else 1.0))
        start = c3.number_input("Start", value=first, key=f"sched_start_{target}", format="%.4g")
        end = c4.number_input("End", value=first / 4 if target == "temperature" else first, key=f"sched_end_{target}")
        length = c5.number_input("Length", 1, 100_000, 5, key="sched_length", help="warmup: the ramp; step: the switch")
        unit = c6.selectbox("Unit", UNITS, key="sched_unit", help="steps of the run, or its epochs")
    if target == NONE:
        return {}
    spec = {"kind": kind, "start": float(start), "end": float(end), "unit": unit}
    return {target: {**spec, "length": int(length)} if kind in ("warmup", "step") else spec}


def preview_frame(schedules: dict, method: Method, values: dict, n_train: int, plan: dict) -> pd.DataFrame:
    """The `sched_*` columns the run will log (at ≤ 2000 steps): the schedules, CTKD's λ_e, a
    curriculum's pool size. `plan`: epochs, batch_size, train_size, max_steps from the form."""
    from kdcore.jobs import JobConfig

    n = min(n_train, plan.get("train_size") or n_train)
    cfg = JobConfig(epochs=plan["epochs"], batch_size=plan["batch_size"], max_steps=plan.get("max_steps") or None)
    spe, total, _ = step_plan(cfg, n)
    frame = run_figures.schedule_frame(schedules, total, spe, -(-total // spe))  # the epochs the run has
    epoch = frame["step"] // spe + 1
    if method.name == "ctkd":
        from kdcore.losses import ctkd_lambda

        frame["sched_ctkd_lambda"] = [ctkd_lambda(int(e), int(values.get("loops") or 10)) for e in epoch]
    if method.paced:
        from kdcore.losses import pool_size

        k = (float(values["start"]), float(values["inc"]), int(values["step"]))
        frame["sched_pool"] = [pool_size(int(t), n, *k) for t in frame["step"]]
    return frame


def n_train(pair) -> int:
    """The size of the pair's training split."""
    return int(pair.dataset.split("train").inputs.shape[0])


def show_preview(frame: pd.DataFrame) -> None:
    """The preview figure, or nothing when nothing is scheduled."""
    from app import ui

    fig = run_figures.scheduled_values(frame, title="The schedule this run will follow (before it starts)")
    if fig is not None:
        ui.show_figure(fig, "schedule_preview", caption=_CAPTION)


_TARGET_HELP = (
    "temperature and lam replace the method's value at every step; weight:{method} is the weight of its term, "
    "weight:ce the hard-label CE's. The CLI: --loss-schedule TARGET=KIND:START[:END[:LENGTH]][@epoch]."
)
_KIND_HELP = (
    "constant; linear and cosine from Start (first step) to End (last step); warmup: a linear ramp over "
    "Length, then End (DKD's warm-up: 0 → 1 over 20 epochs); step: Start until Length, then End."
)
_CAPTION = (
    "What the run will log as sched_* at each step. During and after the run, the Live tab draws the "
    "values it really used (CTKD's temperature is learned, so only its λ_e is known in advance)."
)
