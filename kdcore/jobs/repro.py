"""The reproducibility report: one config re-run over seeds, thread counts and devices (CPU, and CUDA
when present), then, per metric, which runs are bit-identical and how far the values spread.

    report = run_repro(ReproSpec(load_config_file("bench/repro_digits.yaml"), seeds=(0, 1), threads=(1, 2)))
    report["metrics"]   # one row per metric: identical_on_rerun, identical_across_threads, ...

Every (device, seed, thread count) trains once, and the first one a second time (the re-run). A metric
is compared as its whole per-epoch series (validation accuracy, loss, agreement; training loss and
accuracy), plus the final student's weights (sha256 of every tensor's bytes). Bit-identical means
equal float64 values (the store keeps float64), no tolerance. Spreads are of the final epoch's value:
across seeds the std (ddof 1) at the first thread count and device; across thread counts (devices)
the largest max − min over seeds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdcore.jobs.config import JobConfig, is_own_pair
from kdcore.jobs.experiment_store import create_experiment, run_member, save_report
from kdcore.jobs.store import RunStore
from kdcore.jobs.sweeps import seed_list
from kdcore.validation import InvalidParameterError

EPOCH_METRICS = ("val_acc", "val_loss", "val_agreement", "train_loss", "train_acc")
WEIGHTS = "final weights (sha256)"


@dataclass(frozen=True)
class ReproSpec:
    config: JobConfig
    seeds: tuple[int, ...] = (0, 1)
    threads: tuple[int, ...] = (1, 2)
    devices: tuple[str, ...] | None = None  # None: cpu, and cuda when present

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "seeds": list(self.seeds),
            "threads": list(self.threads),
            "devices": None if self.devices is None else list(self.devices),
        }


def load_config_file(path: str | Path) -> JobConfig:
    """A job config from a YAML or JSON file (JobConfig fields); the pair's recipe fills the fields the
    file does not set, as `distill --config` does."""
    import yaml

    from kdcore.jobs.recipes import pair_recipe, with_recipe

    p = Path(path)
    if not p.is_file():
        raise InvalidParameterError(f"The config file {str(p)!r} does not exist. Give the path of a YAML or JSON file.")
    data = yaml.safe_load(p.read_text(encoding="utf-8"))  # JSON is YAML
    if not isinstance(data, dict):
        raise InvalidParameterError(
            f"The config file {str(p)!r} must hold a mapping of JobConfig fields (pair, objective, epochs, ...). "
            f"Got {type(data).__name__}."
        )
    cfg = JobConfig.from_dict(data)
    if not is_own_pair(cfg):
        cfg, _ = with_recipe(cfg, pair_recipe(cfg.pair), set(data))
    return cfg.validate()


def _devices(devices: Sequence[str] | None) -> list[str]:
    if devices is None:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    out = list(dict.fromkeys(devices))
    bad = [d for d in out if d not in ("cpu", "cuda")]
    if bad or not out:
        raise InvalidParameterError(f"The repro devices must be 'cpu' and/or 'cuda'. Got {list(devices)!r}.")
    if "cuda" in out and not torch.cuda.is_available():
        raise InvalidParameterError("The repro devices name 'cuda' but no CUDA device is present. Drop it.")
    return out


def check_repro(spec: ReproSpec) -> ReproSpec:
    """The spec checked before anything runs: ≥ 2 seeds, thread counts ≥ 1, devices present."""
    if not isinstance(spec.config, JobConfig):
        raise InvalidParameterError(f"The repro 'config' must be a JobConfig. Got {type(spec.config).__name__}.")
    seeds = seed_list(spec.seeds, what="a reproducibility report (a changed seed must show)", at_least=2)
    threads = list(dict.fromkeys(spec.threads))
    if not threads or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in threads):
        raise InvalidParameterError(
            f"The repro thread counts must be integers ≥ 1 (e.g. --threads 1,2). Got {threads!r}."
        )
    return replace(
        spec,
        config=spec.config.validate(),
        seeds=tuple(seeds),
        threads=tuple(threads),
        devices=tuple(_devices(spec.devices)),
    )


def _grid(spec: ReproSpec) -> list[tuple[str, str, int, int]]:
    """(label, device, seed, threads) of every run, the re-run of the first last."""
    out = [(f"{d} seed={s} threads={t}", d, s, t) for d in spec.devices or () for s in spec.seeds for t in spec.threads]
    first = out[0]
    return [*out, (first[0] + " (re-run)", *first[1:])]


def run_repro(
    spec: ReproSpec, *, store: RunStore | None = None, callback: Callable[[dict], object] | None = None
) -> dict:
    """Train the grid in this process (thread counts set with torch.set_num_threads, restored after);
    returns the report (kept in the store too)."""
    spec = check_repro(spec)
    store = store if store is not None else RunStore()
    grid = _grid(spec)
    eid = create_experiment(store, "repro", spec.config.pair, spec=spec.to_dict(), planned=len(grid))
    before, rows = torch.get_num_threads(), list[dict]()
    try:
        for label, device, seed, threads in grid:
            if callback is not None:
                callback({"event": "experiment_run", "index": len(rows), "variant": label, "seed": seed})
            torch.set_num_threads(threads)
            cfg = replace(spec.config, seed=seed, device=device, name=f"repro {label}")
            row = run_member(store, eid, label, cfg)
            rows.append({**row, "device": device, "threads": threads})
    finally:
        torch.set_num_threads(before)
    report = repro_report(store, eid, spec, pd.DataFrame(rows))
    save_report(store, eid, report)
    return report


def _weights_hash(store: RunStore, run_id: str) -> str:
    h = hashlib.sha256()
    for name, t in sorted(store.load_student(run_id).items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_values(store: RunStore, run_id: str) -> dict[str, Any]:
    """metric -> (the per-epoch series as a tuple of float64, the final value); WEIGHTS -> (hash, NaN)."""
    ep = store.metrics(run_id, "epoch")
    ep = ep[ep["epoch"] >= 1] if "epoch" in ep else ep
    out: dict[str, Any] = {}
    for m in EPOCH_METRICS:
        if m in ep and ep[m].notna().any():
            s = ep[m].dropna().to_numpy(dtype=np.float64)
            out[m] = (tuple(s.tolist()), float(s[-1]))
    try:
        out[WEIGHTS] = (_weights_hash(store, run_id), math.nan)
    except Exception:  # noqa: BLE001 - a run without saved weights: the metric is left out
        pass
    return out


def _same(values: list[Any]) -> bool | None:
    return None if len(values) < 2 else all(v == values[0] for v in values[1:])


def _groups_identical(runs: pd.DataFrame, vals: dict, metric: str, by: list[str], over: str) -> bool | None:
    """True when, within every group of `by`, the runs over `over` are bit-identical (None: nothing to compare)."""
    verdicts = []
    for _, g in runs.groupby(by):
        g = g.drop_duplicates(subset=[over])
        if len(g) > 1:
            verdicts.append(_same([vals[r][metric][0] for r in g["run_id"] if metric in vals[r]]))
    verdicts = [v for v in verdicts if v is not None]
    return None if not verdicts else all(verdicts)


def _spread(runs: pd.DataFrame, vals: dict, metric: str, by: list[str]) -> float:
    """Largest max − min of the final value within the groups of `by`."""
    spans = []
    for _, g in runs.groupby(by):
        v = [vals[r][metric][1] for r in g["run_id"] if metric in vals[r]]
        if len(v) > 1:
            spans.append(float(np.max(v) - np.min(v)))
    return max(spans) if spans else math.nan


def _metric_row(runs: pd.DataFrame, rerun: pd.DataFrame, vals: dict, metric: str, spec: ReproSpec) -> dict:
    main = runs[~runs["variant"].str.endswith("(re-run)")]
    first = main[(main["threads"] == spec.threads[0]) & (main["device"] == main["device"].iloc[0])]
    finals = [vals[r][metric][1] for r in first["run_id"] if metric in vals[r]]
    pair = [vals[r][metric][0] for r in (first["run_id"].iloc[0], rerun["run_id"].iloc[0]) if metric in vals[r]]
    return {
        "metric": metric,
        "identical_on_rerun": _same(pair),
        "identical_across_threads": _groups_identical(main, vals, metric, ["device", "seed"], "threads"),
        "identical_across_devices": _groups_identical(main, vals, metric, ["threads", "seed"], "device"),
        "differs_across_seeds": None if len(first) < 2 else not _same([vals[r][metric][0] for r in first["run_id"]]),
        "seed_std": float(np.std(finals, ddof=1)) if metric != WEIGHTS and len(finals) > 1 else math.nan,
        "thread_spread": math.nan if metric == WEIGHTS else _spread(main, vals, metric, ["device", "seed"]),
        "device_spread": math.nan if metric == WEIGHTS else _spread(main, vals, metric, ["threads", "seed"]),
    }


def repro_report(store: RunStore, eid: str, spec: ReproSpec, runs: pd.DataFrame) -> dict:
    done = runs[runs["state"] == "completed"]
    if len(done) < len(runs):
        raise InvalidParameterError(
            "Some repro runs did not complete: "
            + ", ".join(runs.loc[runs["state"] != "completed", "variant"])
            + ". Look at their errors (`python -m kdcore runs list`); the report needs every run."
        )
    vals = {r: run_values(store, r) for r in runs["run_id"]}
    rerun = runs[runs["variant"].str.endswith("(re-run)")]
    metrics = sorted({m for v in vals.values() for m in v}, key=lambda m: (m == WEIGHTS, m))
    rows = [_metric_row(runs, rerun, vals, m, spec) for m in metrics]
    return {
        "kind": "repro",
        "experiment_id": eid,
        "pair": spec.config.pair,
        "state": "completed",
        "spec": spec.to_dict(),
        "metrics": rows,
        "runs": runs.to_dict(orient="records"),
        "torch": torch.__version__,
    }


def repro_text(report: dict) -> str:
    """The report as plain text: one row per metric; yes/no/- for bit-identical, spreads in the metric's unit."""
    df = pd.DataFrame(report["metrics"])

    def yn(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else ("yes" if v else "no")

    for c in ("identical_on_rerun", "identical_across_threads", "identical_across_devices", "differs_across_seeds"):
        df[c] = df[c].map(yn)
    for c in ("seed_std", "thread_spread", "device_spread"):
        df[c] = df[c].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.3g}")
    spec = report["spec"]
    head = (
        f"pair {report['pair']} · seeds {spec['seeds']} · threads {spec['threads']} · devices {spec['devices']} · "
        f"torch {report['torch']} · experiment {report['experiment_id']}"
    )
    return head + "\n" + df.to_string(index=False)
