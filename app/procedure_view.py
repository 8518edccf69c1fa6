"""The procedure methods on the Distill page (methods/14): block-wise KD's stepping-stones, PWKD's stages
and sub-teachers, ZSKT's generated samples and the student's accuracy on real data (analyses.procedures),
read back from the run store."""

from __future__ import annotations

import streamlit as st

from analyses.procedures import (
    pwkd_figure,
    stone_accuracy_figure,
    stone_table,
    zskt_accuracy_figure,
    zskt_samples_figure,
)
from app import ui
from kdcore.jobs.store import RunStore
from kdcore.methods import canonical_name

SAMPLES_FILE = "zskt_samples.safetensors"  # = kdcore.jobs.zskt.SAMPLES_FILE


def zskt_samples(store: RunStore, run_id: str) -> dict | None:
    """{"epoch_<e>": [K, C, H, W] array} of a zskt run (verified against its sha256), None before the first."""
    from safetensors.numpy import load

    if SAMPLES_FILE not in set(store.artifacts(run_id)["name"]):
        return None
    return dict(load(store.read_artifact(run_id, SAMPLES_FILE)))


def show_procedure(store: RunStore, run: dict, key: str) -> bool:
    """Draw a blockwise / pwkd / zskt run's mechanism; False when the run is none of them."""
    method = canonical_name(run.get("objective"))
    if method not in ("blockwise", "pwkd", "zskt"):
        return False
    epochs = store.metrics(run["id"], "epoch")
    summary = run.get("summary") or {}
    if not len(epochs):
        st.caption("The first epoch has not ended yet.")
        return True
    teacher = summary.get("teacher_val_acc")
    if teacher is None and "teacher_val_acc" in epochs.columns:
        teacher = epochs["teacher_val_acc"].dropna().iloc[0] if epochs["teacher_val_acc"].notna().any() else None
    if method == "blockwise":
        st.markdown("**Block-wise KD**: each stepping-stone runs the student's first blocks, a connector and the "
                    "teacher's remaining blocks; all are trained every step (weights 2^−(n−i)).")  # fmt: skip
        st.dataframe(stone_table(epochs, summary), hide_index=True,
                     column_config={"val acc": st.column_config.NumberColumn(format="percent")})  # fmt: skip
        ui.show_figure(stone_accuracy_figure(epochs, teacher), f"stones_{key}")
    elif method == "pwkd" and summary.get("pwkd"):
        st.markdown("**PWKD**: the student learns from sub-teachers of growing width, one stage each.")
        st.dataframe(summary["pwkd"]["stages"], hide_index=True)
        ui.show_figure(pwkd_figure(epochs, summary), f"pwkd_{key}")
    elif method == "zskt":
        samples = zskt_samples(store, run["id"])
        if samples:
            ui.show_figure(zskt_samples_figure(samples), f"zskt_samples_{key}")
        test = (summary.get("zskt") or {}).get("test_acc")
        ui.show_figure(zskt_accuracy_figure(epochs[epochs["epoch"] > 0], teacher, test), f"zskt_acc_{key}",
                       caption="No real training sample was read: the student learned on generated inputs only.")  # fmt: skip
    return True
