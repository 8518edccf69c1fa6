"""The procedure methods on the Distill page (methods/14): block-wise KD's stepping-stones, PWKD's stages
and sub-teachers, ZSKT's generated samples and the student's accuracy on real data
(app/procedure_figures.py, analyses.procedures), read back from the run store."""

from __future__ import annotations

import streamlit as st

from analyses.procedures import stone_table
from app import ui
from app.procedure_figures import procedure_figures, procedure_of
from kdcore.jobs.store import RunStore

_TEXT = {
    "blockwise": "**Block-wise KD**: each stepping-stone runs the student's first blocks, a connector and the "
    "teacher's remaining blocks; all are trained every step (weights 2^−(n−i)).",
    "pwkd": "**PWKD**: the student learns from sub-teachers of growing width, one stage each.",
    "zskt": "**Zero-shot KT**: no real training sample was read; the student learned on the generator's samples.",
    "weight_distill": "**Weight distillation**: phase 1 runs the student with weights generated from the teacher's "
    "(c = Λω mixes each group's teacher tensors); phase 2 trains the plain student from the materialised weights.",
}


def show_procedure(store: RunStore, run: dict, key: str) -> bool:
    """Draw a blockwise / pwkd / zskt run's mechanism; False when the run is none of them."""
    method = procedure_of(run)
    if method is None:
        return False
    st.markdown(_TEXT[method])
    figs = procedure_figures(store, run)
    if not figs:
        st.caption("The first epoch has not ended yet.")
        return True
    summary = run.get("summary") or {}
    if method == "blockwise":
        table = stone_table(store.metrics(run["id"], "epoch"), summary)
        st.dataframe(table, hide_index=True, column_config={"val acc": st.column_config.NumberColumn(format="percent")})
    elif method == "pwkd":
        st.dataframe(summary["pwkd"]["stages"], hide_index=True)
    elif method == "weight_distill" and summary.get("weight_distill"):
        st.dataframe(summary["weight_distill"]["phases"], hide_index=True)
    for i, fig in enumerate(figs):
        ui.show_figure(fig, f"{method}_{i}_{key}")
    return True
