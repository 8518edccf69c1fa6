"""The class leaderboard of a workshop: each workspace's best validation accuracy per pair and method
(kdcore/jobs/workspace.py names the workspaces; the Instructor page shows the board).

    board = class_leaderboard(RunStore())   # columns BOARD_COLUMNS
"""

from __future__ import annotations

import pandas as pd

from kdcore.jobs.store import RunStore

BOARD_COLUMNS = ["pair", "method", "workspace", "rank", "best val acc", "runs", "best run"]


def _accuracy(summary: dict | None) -> float | None:
    """A run's validation accuracy for the board: its best epoch's, else its final one's."""
    s = summary or {}
    value = s.get("best_val_acc", s.get("final_val_acc"))
    return None if value is None else float(value)


def class_leaderboard(store: RunStore) -> pd.DataFrame:
    """The class leaderboard: per pair and method (objective), each workspace's best validation accuracy
    over its completed runs, ranked (1 = best, ties share a rank); columns BOARD_COLUMNS. Runs of no
    workspace, and runs without a validation accuracy, are left out."""
    rows = []
    for run_id in store.list_runs(state="completed")["id"]:
        run = store.get_run(run_id)
        acc = _accuracy(run.get("summary"))
        if run.get("workspace") and acc is not None:
            rows.append((run["pair"], run["objective"], run["workspace"], acc, run_id))
    runs = pd.DataFrame(rows, columns=["pair", "method", "workspace", "acc", "id"])
    if runs.empty:
        return pd.DataFrame(columns=BOARD_COLUMNS)
    keys = ["pair", "method", "workspace"]
    best = runs.sort_values("acc", ascending=False, kind="stable").groupby(keys, sort=False)
    board = best.agg(**{"best val acc": ("acc", "first"), "runs": ("id", "size"), "best run": ("id", "first")})
    board = board.reset_index()
    board["rank"] = board.groupby(["pair", "method"])["best val acc"].rank(method="min", ascending=False).astype(int)
    board = board.sort_values(["pair", "method", "rank", "workspace"], kind="stable").reset_index(drop=True)
    return board[BOARD_COLUMNS]
