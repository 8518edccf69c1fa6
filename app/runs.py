"""Run bookkeeping for the Distill page, read from the run store (never from a browser session), so a
job started in one tab is found again after a reload, in another tab, or after the app restarts.

Protocols are groups of runs queued together; the run store keeps which runs belong to which
protocol (kdcore.jobs.protocols.queue_protocol, RunStore.list_protocols), and each run's total step
count (written by the runner when the run starts).
"""
from __future__ import annotations

import pandas as pd

from kdcore.jobs import JobConfig
from kdcore.jobs.protocols import protocol_status as kd_protocol_status
from kdcore.jobs.protocols import queue_protocol
from kdcore.jobs.store import FINAL_STATES, RunStore

ACTIVE = ("queued", "running")
OBJECTIVE_HELP = {
    "kd": "Classic KD (Hinton 2015): (1 − λ)·CE + λ·T²·KL",
    "dkd": "Decoupled KD: T²·(α·TCKD + β·NCKD) + CE",
    "cakd": "Correlation-aware KD: T²·(BCD + α·SCD + β·WCD) + CE",
    "normkd": "NormKD: per-sample temperatures from the logits' spread",
    "ls": "Label smoothing (KD from a uniform 'teacher'), a baseline",
    "ce": "The student alone, on the labels (the baseline)",
    "feature_l2": "FitNets: match a layer's features (with a projector)",
    "at": "Attention transfer: match conv attention maps",
    "attn_kl": "MiniLM: KL between transformer attention rows",
    "token": "Token-level divergence for language models (fkl, rkl, jsd, …)",
}


def objectives_for(task: str) -> list[str]:
    """The objectives the Start form offers for a task (those needing layer maps are left to config files)."""
    if task == "causal_lm":
        return ["token", "ce"]
    if task == "multilabel":
        return ["kd", "cakd", "normkd", "ce"]
    return ["kd", "dkd", "cakd", "normkd", "ls", "ce"]


def parse_params(text: str) -> dict:
    """The objective's extra parameters from a YAML mapping typed in the form ('' -> {})."""
    import yaml
    if not (text or "").strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"The parameters must be a YAML mapping such as {{beta: 4}}. Could not read {text!r}: "
                         f"{str(exc).splitlines()[0]}.") from None
    if not isinstance(value, dict):
        raise ValueError(f"The parameters must be a YAML mapping such as {{beta: 4}}. Got {text!r}.")
    return value


def active_runs(store: RunStore) -> pd.DataFrame:
    """Queued and running runs, newest first (stale 'running' ones are reaped to 'interrupted' first)."""
    df = store.list_runs()
    return df[df["state"].isin(ACTIVE)].reset_index(drop=True)


def is_final(state: str) -> bool:
    return state in FINAL_STATES


# ---- protocols (kept in the run store) --------------------------------------------------------------

def start_protocol(store: RunStore, base: JobConfig, *, temperatures=(), lams=(), seeds=(0,), baseline=True) -> str:
    """Queue every run of a protocol on the background worker; returns the protocol's id."""
    return queue_protocol(base, temperatures=temperatures, lams=lams, seeds=seeds, baseline=baseline, store=store)


def protocols(store: RunStore) -> list[dict]:
    """Every protocol started, newest first: id, pair, objective, runs (variant, seed, run_id, state), ..."""
    return store.list_protocols()


def protocol_status(store: RunStore, meta: dict) -> tuple[pd.DataFrame, int, int]:
    """(summary table, runs finished, runs in all) of a protocol."""
    return tuple(kd_protocol_status(store, meta["id"]))
