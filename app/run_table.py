"""The runs table of the Distill page and the names runs go by in legends (no Streamlit here)."""

from __future__ import annotations

import pandas as pd

from kdcore.jobs import JobConfig
from kdcore.jobs.store import RunStore

COLUMNS = ["id", "name", "state", "pair", "objective", "T", "λ", "epochs", "final val acc", "created"]


def effective_settings(cfg: dict) -> tuple[float | None, float | None]:
    """(T, λ) the run trained with: the config's own values, or the defaults its objective filled in
    (kd with no T set trains at T = 4). (None, None) for objectives without them or an unreadable config."""
    try:
        terms = JobConfig.from_dict(cfg).resolved_terms()
    except Exception:  # noqa: BLE001 — an old or foreign config: show what it says
        return cfg.get("temperature"), cfg.get("lam")
    params = terms[0].params if len(terms) == 1 else {}
    return params.get("temperature"), params.get("lam")


def run_label(run: dict) -> str:
    """How a run is named in a legend: its name, else its objective and settings (e.g. "kd T=4 λ=0.9").

    run: a run-store record (``RunStore.get_run``) with ``name`` and ``config``.
    """
    name = (run.get("name") or "").strip()
    if name:
        return name
    cfg = run.get("config") or {}
    parts = [str(cfg.get("objective", run.get("objective", "run")))]
    temperature, lam = effective_settings(cfg) if cfg else (None, None)
    if temperature is not None:
        parts.append(f"T={temperature:g}")
    if lam is not None:
        parts.append(f"λ={lam:g}")
    if cfg.get("seed"):
        parts.append(f"seed {cfg['seed']}")
    return " ".join(parts)


def unique_labels(runs: list[dict]) -> list[str]:
    """run_label of each run; runs that would share a label get their id appended, so legends stay apart."""
    labels = [run_label(r) for r in runs]
    return [f"{lab} ({r['id']})" if labels.count(lab) > 1 else lab for lab, r in zip(labels, runs)]


def runs_table(store: RunStore, *, with_workspace: bool = False) -> pd.DataFrame:
    """One row per run, newest first: what it is (name, pair, objective, T, λ, epochs) and how it ended
    (state, final validation accuracy). Settings an objective does not have are left empty.
    with_workspace: a first column naming each run's workshop workspace (the instructor's view)."""
    rows = []
    listed = store.list_runs()
    for rid, created in listed[["id", "created"]].itertuples(index=False):
        r = store.get_run(rid)
        cfg, summary = r.get("config") or {}, r.get("summary") or {}
        temperature, lam = effective_settings(cfg)
        rows.append(
            {
                "id": rid,
                "name": run_label(r),
                "state": r["state"],
                "pair": cfg.get("pair"),
                "objective": cfg.get("objective"),
                "T": temperature,
                "λ": lam,
                "epochs": cfg.get("epochs"),
                "final val acc": summary.get("final_val_acc"),
                "created": created,
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    if with_workspace:
        table.insert(0, "workspace", listed["workspace"].to_numpy())
    return table
