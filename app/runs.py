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
from typing import Any

import pandas as pd

from kdcore.data import get_dataset
from kdcore.jobs import JobConfig, protocol_configs, protocol_table, submit
from kdcore.jobs.store import FINAL_STATES, RunStore
from kdcore.methods import Method, Param, get_method

ACTIVE = ("queued", "running")


def method_label(name: str) -> str:
    """A method as the menu shows it: name — one-line help (from the method table)."""
    return f"{name} — {get_method(name).help}"


def param_field(container, method: Method, param: Param, default: Any, layers_hint: str = "") -> Any:
    """One widget for a method parameter, built from its table entry; returns the value typed
    (text for layer maps and number lists, parsed by kdcore.jobs.config.config_from_form)."""
    key, label = f"job_{method.name}_{param.name}", param.name
    tip = f"{param.help}. Allowed: {param.range_text()}." + (f" {layers_hint}" if param.kind == "layers" else "")
    if param.kind == "bool":
        return container.checkbox(label, value=bool(default), key=key, help=tip)
    if param.kind == "choice":
        options = list(param.choices)
        return container.selectbox(label, options, index=options.index(default), key=key, help=tip)
    if param.kind in ("float", "int"):
        integer = param.kind == "int"
        value = None if default is None else (int(default) if integer else float(default))
        return container.number_input(label, value=value, step=1 if integer else None, key=key, help=tip,
                                      format=None if integer else "%g", placeholder="not set")
    return container.text_input(label, value=_as_text(default), key=key, help=tip, placeholder=param.range_text())


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{a}: {b}" for a, b in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return ""


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
