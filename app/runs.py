"""Run bookkeeping for the Distill page, read from the run store (never from a browser session), so a
job started in one tab is found again after a reload, in another tab, or after the app restarts.

Protocols are groups of runs queued together; the run store keeps which runs belong to which
protocol (kdcore.jobs.protocols.queue_protocol, RunStore.list_protocols), and each run's total step
count (written by the runner when the run starts).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from app import run_table, safety
from app.widget_state import seeded
from kdcore.jobs import JobConfig, submit
from kdcore.jobs.config import source_label
from kdcore.jobs.own_source import OwnPairSource
from kdcore.jobs.protocols import protocol_status as kd_protocol_status
from kdcore.jobs.protocols import queue_protocol
from kdcore.jobs.recipes import Recipe, workshop_configs
from kdcore.jobs.store import FINAL_STATES, RunStore
from kdcore.methods import Method, Param, get_method

ACTIVE = ("queued", "running")
OWN = "your own models"  # the Distill page's choice of the sidebar's own pair (directories or factories)
STUDENT_INITS = {
    "pretrained": "its own weights (pretrained)",
    "from_teacher": "a copy of some of the teacher's layers (from_teacher)",
    "reinit": "random weights (reinit)",
}
OWN_DEFAULTS = {"epochs": 1, "batch_size": 8, "lr": 1e-4}  # the form's start for the own pair (pretrained LMs)
WORKSHOP = "workshop"  # the preset's mark in a protocol's plan (RunStore.create_protocol)


def method_label(name: str) -> str:
    """A method as the menu shows it: name — one-line help (from the method table)."""
    return f"{name} — {get_method(name).help}"


def param_field(container, method: Method, param: Param, default: Any, layers_hint: str = "") -> Any:
    """One widget for a method parameter, built from its table entry; returns the value typed
    (text for layer maps and number lists, parsed by kdcore.jobs.form.config_from_form)."""
    key, label = f"job_{method.name}_{param.name}", param.name
    tip = f"{param.help}. Allowed: {param.range_text()}." + (f" {layers_hint}" if param.kind == "layers" else "")
    # defaults go in through session_state (app.widget_state): the Distill form resets temperature and λ to a new
    # pair's recipe by deleting their keys, which a widget's own value= would not show in the browser
    if param.kind == "bool":
        return container.checkbox(label, key=seeded(key, bool(default)), help=tip)
    if param.kind == "choice":
        return container.selectbox(label, list(param.choices), key=seeded(key, default), help=tip)
    if param.kind in ("float", "int"):
        integer = param.kind == "int"
        number = {"step": 1 if integer else None, "format": None if integer else "%g", "help": tip}
        if default is None:  # an empty field ("not set") needs value=None
            return container.number_input(label, value=None, key=key, placeholder="not set", **number)
        value = int(default) if integer else float(default)
        return container.number_input(label, key=seeded(key, value), placeholder="not set", **number)
    return container.text_input(label, key=seeded(key, _as_text(default)), help=tip, placeholder=param.range_text())


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


def owner_text(store: RunStore, run_id: str) -> str | None:
    """Who trains a run ("trained by pid P on host H since T"), from its lease; None when nobody does."""
    import time

    holder = store.lease_holder(run_id)
    if holder is None:
        return None
    since = holder.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"trained by pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {when}"


def is_final(state: str) -> bool:
    return state in FINAL_STATES


# ---- the sidebar's own Hugging Face pair -------------------------------------------------------------


def own_job_fields(
    spec: OwnPairSource, student_init: str = "pretrained", student_layers: int | None = None, layer_rule: str = "spread"
) -> dict[str, Any]:
    """The JobConfig fields that distil the sidebar's own pair (kdcore.jobs.own_source.OwnPairSource.job_fields);
    a module:factory pair's factories pass app.safety.check_factory first (ValueError when the server may not
    load them: the run would import them in this server and the worker)."""
    if spec.mode == "factory":
        safety.check_factory(spec.teacher)
        safety.check_factory(spec.student)
    return spec.job_fields(student_init, student_layers, layer_rule)


def own_layer_defaults(method: Method, teacher: list[str], student: list[str], init: tuple) -> dict[str, Any]:
    """The Distill form's start for an own pair's required layer maps (FitNets' ``layers``): the student's
    last numbered block matched to the teacher's, ``{student_layer: teacher_layer}``. ``teacher`` and
    ``student`` are the adapters' ``default_layers()``; ``init`` is (student_init, student_layers, rule):
    a from_teacher student of N layers is the teacher's copy, so its last block is the teacher's block
    name with index N - 1. Empty when a model's layers are not numbered blocks (the user types the map)."""
    blocks = [n for n in teacher if re.search(r"\.\d+$", n)]
    mine = [n for n in student if re.search(r"\.\d+$", n)]
    if init[0] == "from_teacher" and init[1] and blocks:
        mine = [re.sub(r"\d+$", str(int(init[1]) - 1), blocks[-1])]
    if not blocks or not mine:
        return {}
    return {p.name: {mine[-1]: blocks[-1]} for p in method.params if p.kind == "layers" and p.required}


def own_pair_label(spec: OwnPairSource | None) -> str | None:
    """The pair name runs of the sidebar's own pair are listed under ("hf:teacher→student",
    "factory:make_teacher→make_student"), or None."""
    if not isinstance(spec, OwnPairSource):
        return None
    try:
        return source_label(JobConfig(**own_job_fields(spec)))
    except ValueError:
        return None


# ---- protocols (kept in the run store) --------------------------------------------------------------


def start_protocol(store: RunStore, base: JobConfig, *, temperatures=(), lams=(), seeds=(0,), baseline=True) -> str:
    """Queue every run of a protocol on the background worker; returns the protocol's id."""
    return queue_protocol(base, temperatures=temperatures, lams=lams, seeds=seeds, baseline=baseline, store=store)


def protocols(store: RunStore) -> list[dict]:
    """Every protocol started that still has runs, newest first: id, pair, objective, runs (variant,
    seed, run_id, state), ..."""
    return [m for m in store.list_protocols() if m["runs"]]


def protocol_status(store: RunStore, meta: dict) -> tuple[pd.DataFrame, int, int]:
    """(summary table, runs finished, runs in all) of a protocol."""
    return tuple(kd_protocol_status(store, meta["id"]))


# ---- the pair's recipe and the workshop preset --------------------------------------------------------


def recipe_note(pair: str, recipe: Recipe | None) -> str:
    """The sentence above the form: where its defaults come from."""
    if recipe is None:
        return f"The {pair} pair has no recipe: the form starts from the job's defaults."
    who = "KD" if recipe.objective == "kd" else f"distilling ({recipe.objective})"
    text = (
        f"Defaults from the {pair} recipe: {recipe.settings_text()}, under which {who} beats the student "
        f"alone over 3 seeds"
    )
    return text + (f" ({recipe.measured})." if recipe.measured else ".")


def start_workshop(store: RunStore, pair: str, recipe: Recipe | None, *, seed: int = 0, device: str = "cpu") -> str:
    """Queue the workshop preset, the run on the pair's recipe and the student alone with the same
    budget (kdcore.jobs.recipes.workshop_configs), as one protocol marked WORKSHOP; returns its id."""
    kd, alone = workshop_configs(pair, recipe, seed=seed, device=device)
    store.check_room(2)  # a workshop participant's queue limit: both runs or neither
    members = [
        {"variant": variant, "seed": seed, "run_id": submit(cfg, store=store)}
        for variant, cfg in ((kd.objective, kd), ("baseline (student alone)", alone))
    ]
    plan = {"preset": WORKSHOP, "temperatures": [], "lams": [], "seeds": [seed], "baseline": True}
    return store.create_protocol(pair=pair, objective=kd.objective, plan=plan, runs=members)


def latest_workshop(store: RunStore, pair: str) -> dict | None:
    """The newest workshop preset queued on the pair whose runs still exist (a protocol, as
    RunStore.get_protocol returns it), or None."""
    return next(
        (
            m
            for m in store.list_protocols()
            if m.get("preset") == WORKSHOP
            and m["pair"] == pair
            and m["runs"]
            and all(r.get("state") for r in m["runs"])
        ),
        None,
    )


def workshop_summary(store: RunStore, meta: dict) -> tuple[list[dict], dict[str, pd.DataFrame], bool]:
    """(one row per run: id, label, state, metric, final value; {label: epoch metrics}; both finished).

    The metric is the run's own (validation accuracy; the loss for language models, lower is better).
    """
    records = [store.get_run(r["run_id"]) for r in meta["runs"] if r.get("run_id") and r.get("state")]
    labels = run_table.unique_labels(records)
    rows = []
    for label, run in zip(labels, records):
        summary = run.get("summary") or {}
        metric = summary.get("metric", "val_acc")  # written when the run ends
        rows.append(
            {
                "id": run["id"],
                "label": label,
                "state": run["state"],
                "metric": metric,
                "final": summary.get(f"final_{metric}"),
            }
        )
    curves = {label: store.metrics(run["id"], "epoch") for label, run in zip(labels, records)}
    done = bool(records) and all(is_final(r["state"]) for r in records)
    return rows, curves, done
