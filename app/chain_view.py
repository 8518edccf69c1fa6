"""A chain of runs (TAKD, DGKD, born-again generations) on the Distill page: each stage's accuracy
and the teacher → assistant → student gap (analyses.chains), read back from the run store."""

from __future__ import annotations

import streamlit as st

from analyses.chains import chain_figure, chain_table
from app import ui
from kdcore.jobs.store import RunStore


def chain_summary(store: RunStore, run: dict) -> dict | None:
    """The chain's summary: the one recorded at its end, else one built from the stages run so far;
    None when the run is no chain."""
    summary = run.get("summary") or {}
    if isinstance(summary.get("stages"), list):
        return summary
    stages = store.chain_stages(run["id"])
    if not stages:
        return None
    rows = []
    for r in stages:
        s = r["summary"] or {}
        name = str(r["name"] or "")
        what = name.split(": ", 1)[-1].split(" → ")
        rows.append(
            {
                "stage": r["chain_stage"],
                "run_id": r["id"],
                "state": r["state"],
                "teacher": what[0] if len(what) == 2 else "",
                "student": what[-1],
                "final_val_acc": s.get("final_val_acc"),
                "best_val_acc": s.get("best_val_acc"),
                "teacher_val_acc": s.get("teacher_val_acc"),
            }
        )
    first = rows[0].get("teacher_val_acc")
    return {"chain": run.get("objective"), "stages": rows, "teacher_val_acc": first}


def show_chain(store: RunStore, run: dict, key: str) -> bool:
    """Draw the run as a chain (a stage table and the accuracy along the chain); False when it is none."""
    summary = chain_summary(store, run)
    if summary is None:
        return False
    n = len(summary["stages"])
    st.markdown(f"**A {str(summary.get('chain') or '').upper()} chain: {n} stage(s)**, each a run of its own.")
    st.dataframe(
        chain_table(summary),
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="percent")
            for c in ("final val acc", "best val acc", "gap to teacher", "gap to its teacher")
        },
    )
    ui.show_figure(
        chain_figure(summary),
        f"chain_{key}",
        caption="Validation accuracy of each model of the chain, in training order; each bar is labelled with "
        "its gap to the model that taught it (TAKD: an assistant bridges a large teacher–student gap).",
    )
    if summary.get("ensemble_val_acc") is not None:
        st.caption(f"Born-again ensemble of generations 1…k: {100 * summary['ensemble_val_acc']:.1f} % on validation.")
    return True
