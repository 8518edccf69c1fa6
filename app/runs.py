"""Run bookkeeping for the Distill page, read from the run store (never from a browser session), so a
job started in one tab is found again after a reload, in another tab, or after the app restarts.

Protocols are groups of runs queued together; their membership is a small JSON file per protocol
under $KDWB_HOME/protocols (the run store has no notion of a protocol).
"""
from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path

import pandas as pd

from kdcore.data import get_dataset
from kdcore.jobs import JobConfig, protocol_configs, protocol_table, submit
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


def total_steps(config: dict) -> int | None:
    """Steps the run will take, from its config (None when the pair is not a sample pair)."""
    try:
        n = len(get_dataset(config["pair"]).split("train"))
    except Exception:  # noqa: BLE001 — a module:factory pair: unknown without loading it
        return None
    if config.get("train_size"):
        n = min(n, int(config["train_size"]))
    spe = math.ceil(n / int(config.get("batch_size") or 64))
    steps = int(config.get("epochs") or 1) * spe
    return min(steps, int(config["max_steps"])) if config.get("max_steps") else steps


def is_final(state: str) -> bool:
    return state in FINAL_STATES


# ---- protocols ------------------------------------------------------------------------------------

def _protocol_dir(store: RunStore) -> Path:
    d = store.root / "protocols"
    d.mkdir(parents=True, exist_ok=True)
    return d


def start_protocol(store: RunStore, base: JobConfig, *, temperatures=(), lams=(), seeds=(0,), baseline=True) -> str:
    """Queue every run of a protocol on the background worker; returns the protocol's id."""
    plan = protocol_configs(base, temperatures=temperatures, lams=lams, seeds=seeds, baseline=baseline)
    pid = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    records = []
    for i, (variant, cfg) in enumerate(plan):
        run_id = submit(cfg, store=store, start_worker=(i == len(plan) - 1))
        records.append({"variant": variant, "seed": cfg.seed, "run_id": run_id})
    meta = {"id": pid, "created": time.time(), "pair": base.pair, "objective": base.objective,
            "temperatures": list(temperatures), "lams": list(lams), "seeds": list(seeds), "runs": records}
    path = _protocol_dir(store) / f"{pid}.json"
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(path)
    return pid


def protocols(store: RunStore) -> list[dict]:
    """Every protocol started, newest first."""
    out = []
    for p in sorted(_protocol_dir(store).glob("*.json"), reverse=True):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue                                   # a half-written or damaged file: skip it
    return out


def protocol_status(store: RunStore, meta: dict) -> tuple[pd.DataFrame, int, int]:
    """(summary table, runs finished, runs in all) of a protocol."""
    runs = pd.DataFrame(meta["runs"], columns=["variant", "seed", "run_id"])
    states = [store.get_run(r)["state"] for r in runs["run_id"]]
    done = sum(is_final(s) for s in states)
    return protocol_table(store, runs), done, len(runs)
