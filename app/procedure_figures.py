"""The figures of a procedure run (methods/14: blockwise, pwkd, zskt) read back from the run store. No
Streamlit: the Distill page (app/procedure_view.py) and the HTML run report use them."""

from __future__ import annotations

import pandas as pd

from analyses.procedures import pwkd_figure, stone_accuracy_figure, zskt_accuracy_figure, zskt_samples_figure
from analyses.weight_distill import wd_accuracy_figure, wd_mix_figure
from kdcore.jobs.store import RunStore
from kdcore.methods import canonical_name

SAMPLES_FILE = "zskt_samples.safetensors"  # = kdcore.jobs.zskt.SAMPLES_FILE
PROCEDURES = ("blockwise", "pwkd", "zskt", "weight_distill")


def procedure_of(run: dict) -> str | None:
    """The run's procedure method (blockwise, pwkd, zskt), else None."""
    name = canonical_name(run.get("objective") or (run.get("config") or {}).get("objective"))
    return name if name in PROCEDURES else None


def zskt_samples(store: RunStore, run_id: str) -> dict | None:
    """{"epoch_<e>": [K, C, H, W] array} of a zskt run (verified against its sha256), None before the first."""
    from safetensors.numpy import load

    if SAMPLES_FILE not in set(store.artifacts(run_id)["name"]):
        return None
    return dict(load(store.read_artifact(run_id, SAMPLES_FILE)))


def teacher_accuracy(run: dict, epochs: pd.DataFrame) -> float | None:
    summary = run.get("summary") or {}
    if summary.get("teacher_val_acc") is not None:
        return float(summary["teacher_val_acc"])
    if "teacher_val_acc" in epochs.columns and epochs["teacher_val_acc"].notna().any():
        return float(epochs["teacher_val_acc"].dropna().iloc[0])
    return None


def procedure_figures(store: RunStore, run: dict) -> list:
    """The mechanism's figures of a procedure run ([] for other runs, or before its first epoch row)."""
    method = procedure_of(run)
    epochs = store.metrics(run["id"], "epoch") if method else None
    if method is None or epochs is None or not len(epochs):
        return []
    summary, teacher = run.get("summary") or {}, teacher_accuracy(run, epochs)
    if method == "blockwise":
        return [stone_accuracy_figure(epochs, teacher)]
    if method == "pwkd":
        return [pwkd_figure(epochs, summary)] if summary.get("pwkd") else []
    if method == "weight_distill":
        acc = [wd_accuracy_figure(epochs, teacher)] if "wd_phase" in epochs.columns else []
        return acc + ([wd_mix_figure(summary)] if (summary.get("weight_distill") or {}).get("mix") else [])
    samples = zskt_samples(store, run["id"])
    test = (summary.get("zskt") or {}).get("test_acc")
    done = epochs[epochs["epoch"] > 0]
    return ([zskt_samples_figure(samples)] if samples else []) + [zskt_accuracy_figure(done, teacher, test)]
