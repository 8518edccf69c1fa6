"""An experiment's numbers from its runs: per-seed values, per-variant statistics with intervals, mean
curves. Every gain is paired by seed against a floor variant (the same-size student alone) and is
positive when better (for a loss, where lower is better, the floor minus the variant).

    per_seed = seed_values(store, runs)                  # variant, seed, metric, best, final, wall_s
    rows = variant_stats(per_seed, ["floor", "T=2"], floor="floor", rule_metric="best")
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdcore.jobs.leaderboard import seed_values, t_interval
from kdcore.jobs.store import RunStore
from kdcore.jobs.sweeps import interval_text, mean_std, mean_std_text

__all__ = ["curves", "gain", "lower_is_better", "seed_values", "variant_stats"]


def lower_is_better(per_seed: pd.DataFrame) -> bool:
    """True when the runs' metric is a loss (language models' val_loss)."""
    return bool((per_seed["metric"] == "val_loss").any())


def gain(per_seed: pd.DataFrame, variant: str, floor: str, column: str = "best") -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t-interval of the variant's gain over the floor, paired by seed."""
    return t_interval(np.asarray(_paired_diffs(per_seed, variant, floor, column), dtype=float))


def _row(per_seed: pd.DataFrame, variant: str, floor: str | None, rule_metric: str) -> dict:
    d = per_seed[per_seed["variant"] == variant]
    (bm, bs), (fm, fs) = mean_std(d["best"].tolist()), mean_std(d["final"].tolist())
    sm, slo, shi = t_interval(d[rule_metric].to_numpy(dtype=float))
    gm, glo, ghi = gain(per_seed, variant, floor, rule_metric) if floor is not None else (math.nan,) * 3
    gains = [] if floor is None else _paired_diffs(per_seed, variant, floor, rule_metric)
    gstd = float(np.std(gains, ddof=1)) if len(gains) > 1 else math.nan
    return {
        "variant": variant,
        "n_seeds": int(len(d)),
        "best_mean": bm,
        "best_std": bs,
        "final_mean": fm,
        "final_std": fs,
        "best": mean_std_text(bm, bs),
        "final": mean_std_text(fm, fs),
        "score_mean": sm,
        "score_low": slo,
        "score_high": shi,
        "score": interval_text(sm, slo, shi),
        "gain_mean": gm,
        "gain_std": gstd,
        "gain_low": glo,
        "gain_high": ghi,
        "gain": interval_text(gm, glo, ghi, signed=True) if floor is not None else "",
        "wall_s": float(d["wall_s"].mean()) if len(d) else math.nan,
    }


def _paired_diffs(per_seed: pd.DataFrame, variant: str, floor: str, column: str) -> list[float]:
    mine, base = (per_seed[per_seed["variant"] == v].set_index("seed")[column] for v in (variant, floor))
    both = mine.index.intersection(base.index)
    diffs = (base[both] - mine[both]) if lower_is_better(per_seed) else (mine[both] - base[both])
    return [float(v) for v in diffs]


def variant_stats(per_seed: pd.DataFrame, order: Sequence[str], *, floor: str | None, rule_metric: str) -> list[dict]:
    """One row per variant (in `order`): mean ± std (ddof 1) over seeds of the best and final epoch's
    metric; score: the rule metric's mean with its 95 % t-interval; gain over `floor` (paired by seed,
    mean, std and 95 % t-interval; empty for the floor itself); wall_s, the mean seconds of training."""
    return [_row(per_seed, v, None if v == floor else floor, rule_metric) for v in order]


def curves(store: RunStore, runs: pd.DataFrame, metric: str) -> dict[str, dict[str, list[float]]]:
    """Per variant, the mean and std over seeds of `metric` per epoch (epochs ≥ 1, those every seed has):
    {variant: {"epoch": [...], "mean": [...], "std": [...]}}."""
    out: dict[str, dict[str, list[float]]] = {}
    for variant, group in runs.dropna(subset=["run_id"]).groupby("variant", sort=False):
        series = []
        for rid in dict.fromkeys(group["run_id"]):
            ep = store.metrics(rid, "epoch")
            if metric in ep and "epoch" in ep:
                ep = ep[(ep["epoch"] >= 1) & ep[metric].notna()]
                series.append(ep[metric].to_numpy(dtype=float))
        if not series:
            continue
        n = min(len(s) for s in series)
        stack = np.stack([s[:n] for s in series])  # [seeds, epochs]
        std = stack.std(axis=0, ddof=1) if len(series) > 1 else np.full(n, np.nan)
        out[str(variant)] = {
            "epoch": list(range(1, n + 1)),
            "mean": stack.mean(axis=0).tolist(),
            "std": [float(v) for v in std],
        }
    return out
