"""The command line of MLflow and TensorBoard (kdcore.jobs.tracking): `runs export RUN_ID --to mlflow
[--tracking-uri URI]` / `--to tensorboard [DIR]`, and `distill ... --log-to mlflow,tensorboard`."""

from __future__ import annotations

import argparse
from typing import Any

from kdcore.jobs.store import RunStore
from kdcore.jobs.tracking import TARGETS, LiveLogger, TrackingError, export_run_to, open_sink

DEFAULT_TB_DIR = "tensorboard"
_URI_HELP = "MLflow's tracking URI (sqlite:///mlflow.db, http://HOST:5000, ...); default: MLflow's own"


def add_export_flags(p: argparse.ArgumentParser) -> None:
    """`runs export RUN_ID --to mlflow|tensorboard [DIR]` (without --to: the folder export, --out)."""
    p.add_argument(
        "--to",
        nargs="+",
        metavar="TARGET",
        help="export: write the run to 'mlflow' or to 'tensorboard [DIR]' (DIR default ./tensorboard; "
        "the run goes to DIR/RUN_ID) instead of a folder",
    )
    p.add_argument("--tracking-uri", dest="tracking_uri", help=_URI_HELP)


def add_live_flags(p: argparse.ArgumentParser) -> None:
    """`distill ... --log-to mlflow,tensorboard [--tracking-uri URI] [--tb-dir DIR]`."""
    g = p.add_argument_group("live logging to MLflow and TensorBoard")
    g.add_argument("--log-to", dest="log_to", metavar="TARGETS", help="comma-separated: mlflow, tensorboard")
    g.add_argument("--tracking-uri", dest="tracking_uri", help=_URI_HELP)
    g.add_argument("--tb-dir", dest="tb_dir", help=f"TensorBoard's folder (default ./{DEFAULT_TB_DIR}; DIR/RUN_ID)")


def export_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """(target, TensorBoard folder) of --to, checked."""
    to = list(args.to)
    if len(to) > 2 or to[0] not in TARGETS or (to[0] == "mlflow" and len(to) > 1):
        raise TrackingError(
            f"--to takes 'mlflow' or 'tensorboard [DIR]'. Got {' '.join(to)!r} instead "
            f"(put RUN_ID before --to: `runs export RUN_ID --to tensorboard DIR`)."
        )
    return to[0], (to[1] if len(to) == 2 else None)


def runs_export_to(store: RunStore, args: argparse.Namespace) -> dict[str, Any]:
    """Export args.ids[0] to the back-end of --to; {"run_id", "to", "where"}."""
    target, folder = export_target(args)
    rid = args.ids[0]
    store.get_run(rid)  # an unknown run is said before any back-end is touched
    sink = open_sink(target, tracking_uri=args.tracking_uri, tb_dir=folder or DEFAULT_TB_DIR)
    return {"run_id": rid, "to": target, "where": export_run_to(store, rid, sink)}


def live_logger(store: RunStore, args: argparse.Namespace) -> LiveLogger | None:
    """The live logger of --log-to, its back-ends checked writable before the job starts (None without it)."""
    if not getattr(args, "log_to", None):
        return None
    targets = [t.strip() for t in args.log_to.split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise TrackingError(f"--log-to takes a comma-separated list of {', '.join(TARGETS)}. Got {args.log_to!r}.")
    tb_dir = args.tb_dir or DEFAULT_TB_DIR
    sinks = [open_sink(t, tracking_uri=args.tracking_uri, tb_dir=tb_dir) for t in dict.fromkeys(targets)]
    return LiveLogger(store, sinks)
