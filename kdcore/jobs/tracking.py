"""Runs in MLflow and TensorBoard (issue 19 item 4): export a stored run, or log a job live.

Both write the same things, so a live log equals a later export:
  params    the run's config, flattened ("params.beta", "data_options.context_length"; lists as JSON)
  metrics   every finite stored metric as "<level>/<name>" (level step, epoch or checkpoint) at its global step
  artifacts config.json, student.safetensors (verified) and any HTML report of the run (MLflow only;
            TensorBoard gets the config as text and the hparams summary)
MLflow: one MLflow run per workbench run in the experiment "KD Workbench", tagged kdw.run_id.
TensorBoard: one folder per run, DIR/<run_id>. Both back-ends are optional dependencies.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from kdcore.jobs.store import RunStore

EXPERIMENT = "KD Workbench"
RUN_TAG = "kdw.run_id"
TARGETS = ("mlflow", "tensorboard")
LEVELS = ("step", "epoch", "checkpoint")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED"}  # anything else (cancelled, ...) is KILLED
Row = tuple[str, int, float]  # (tag "<level>/<name>", global step, value)


class TrackingError(ValueError):
    """MLflow or TensorBoard is missing or cannot be written; the message says how to fix it."""


def flat_params(config: dict, prefix: str = "") -> dict[str, Any]:
    """{dotted key: bool | int | float | str}: nested dicts flattened, other values as JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def metric_tag(level: str, name: str) -> str:
    """ "<level>/<name>" with characters MLflow refuses in names (e.g. "|" of a layer pair) as "_"."""
    return f"{level}/" + re.sub(r"[^\w\-. :/]", "_", name)


def stored_rows(store: RunStore, run_id: str, levels: Iterable[str] = LEVELS) -> list[Row]:
    """Every finite metric of the run at these levels as (tag, step, value)."""
    rows: list[Row] = []
    for level in levels:
        df = store.metrics(run_id, level)
        for name in (c for c in df.columns if c not in ("step", "epoch")):
            for step, value in zip(df["step"], df[name], strict=True):
                if value is not None and math.isfinite(float(value)):
                    rows.append((metric_tag(level, name), int(step), float(value)))
    return rows


def event_rows(ev: dict) -> list[Row]:
    """A "step" event's finite metrics as rows (the same values the runner stores at that step)."""
    out: list[Row] = []
    for name, value in (ev.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            out.append((metric_tag("step", name), int(ev["step"]), float(value)))
    return out


def run_files(store: RunStore, run_id: str, folder: Path) -> list[Path]:
    """config.json, the final student weights (sha256-verified) and HTML reports, written into folder."""
    run = store.get_run(run_id)
    files = [folder / "config.json"]
    files[0].write_text(json.dumps(run["config"], indent=2, sort_keys=True))
    names = set(store.artifacts(run_id)["name"])
    for name in sorted(n for n in names if n == "student.safetensors" or n.endswith(".html")):
        path = folder / Path(name).name
        path.write_bytes(store.read_artifact(run_id, name))
        files.append(path)
    return files


class Sink(Protocol):
    name: str
    where: str

    def start(self, run_id: str, params: dict[str, Any]) -> None: ...
    def log_metrics(self, rows: list[Row]) -> None: ...
    def log_artifacts(self, paths: list[Path]) -> None: ...
    def close(self, state: str) -> None: ...


def _optional(module: str, attr: str, extra: str, package: str) -> Any:
    """`module.attr` of an optional back-end; a TrackingError saying how to install it when it is missing."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise TrackingError(
            f"{package} is not installed. Install it with `pip install -e '.[{extra}]'` (from the project "
            f"folder) or `pip install '{package}'`."
        ) from exc


class MlflowSink:
    """One MLflow run per workbench run, through MlflowClient (no global active run)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None):
        client_cls = _optional("mlflow", "MlflowClient", "mlflow", "mlflow>=2.10")
        self.uri = tracking_uri
        self.where = f"MLflow at {tracking_uri or 'the default tracking URI'}"
        with _guard(self.where, _MLFLOW_FIX):
            self.client = client_cls(tracking_uri=tracking_uri)
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(EXPERIMENT)
        self.mlflow_run: str | None = None

    def start(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        tags = {RUN_TAG: run_id, "mlflow.runName": run_id}
        self.mlflow_run = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.mlflow_run, params=items[i : i + 100])

    def log_metrics(self, rows: list[Row]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(tag, value, now, step) for tag, step, value in rows]
        for i in range(0, len(items), 1000):  # at most 1000 metrics per batch
            self.client.log_batch(self._run(), metrics=items[i : i + 1000])

    def log_artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self._run(), str(path))

    def close(self, state: str) -> None:
        self.client.set_terminated(self._run(), _MLFLOW_STATUS.get(state, "KILLED"))
        self.mlflow_run = None

    def _run(self) -> str:
        if self.mlflow_run is None:
            raise RuntimeError("MlflowSink: start() a run first")
        return self.mlflow_run


_MLFLOW_FIX = (
    "Give a writable --tracking-uri: sqlite:///PATH/mlflow.db, http://HOST:5000 (an MLflow server), or "
    "file:///PATH/mlruns (MLflow 3 wants MLFLOW_ALLOW_FILE_STORE=true for file stores). The run store "
    "is unchanged."
)


class TensorBoardSink:
    """Scalars, the config as text and an hparams summary in DIR/<run_id> (torch's SummaryWriter)."""

    name = "tensorboard"

    def __init__(self, folder: str | Path):
        writer_cls = _optional("torch.utils.tensorboard", "SummaryWriter", "tensorboard", "tensorboard>=2.15")
        self.folder, self._writer_cls = Path(folder), writer_cls
        self.where = f"TensorBoard folder {self.folder}"
        with _guard(self.where, "Give a writable folder. The run store is unchanged."):
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.folder)
            probe.close()
        self.writer: Any = None
        self.params: dict[str, Any] = {}
        self.epoch_tags: dict[str, float] = {}

    def start(self, run_id: str, params: dict[str, Any]) -> None:
        self.writer = self._writer_cls(log_dir=str(self.folder / run_id))
        self.params, self.epoch_tags = params, {}
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=2, sort_keys=True) + "\n```", 0)

    def log_metrics(self, rows: list[Row]) -> None:
        for tag, step, value in rows:
            self.writer.add_scalar(tag, value, step)
            if tag.startswith("epoch/"):
                self.epoch_tags[tag] = value

    def log_artifacts(self, paths: list[Path]) -> None:
        """TensorBoard keeps no files: the config is already there as text."""

    def close(self, state: str) -> None:
        """The hparams summary (the config against the epoch-level metrics), then the writer is closed."""
        from torch.utils.tensorboard.summary import hparams

        params = {**self.params, "state": state}
        writer = self.writer._get_file_writer()
        for summary in hparams(params, self.epoch_tags):
            writer.add_summary(summary)
        self.writer.close()
        self.writer = None


@contextmanager
def _guard(where: str, fix: str) -> Iterator[None]:
    """Turn any error of a tracking back-end into a TrackingError naming where and how to fix it."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"{where} could not be written: {text}. {fix}") from exc


def open_sink(target: str, *, tracking_uri: str | None = None, tb_dir: str | Path | None = None) -> Sink:
    """A back-end, checked writable now (before any run starts)."""
    if target == "mlflow":
        return MlflowSink(tracking_uri)
    if target == "tensorboard":
        return TensorBoardSink(tb_dir if tb_dir is not None else "tensorboard")
    raise TrackingError(f"Tracking target must be one of {', '.join(TARGETS)}. Got {target!r} instead.")


def export_run_to(store: RunStore, run_id: str, sink: Sink) -> str:
    """Write a stored run (params, metrics, artifacts) to a back-end; the store is only read."""
    run = store.get_run(run_id)
    rows = stored_rows(store, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        files = run_files(store, run_id, Path(tmp))
        with _guard(sink.where, "The run store is unchanged; try again once it is writable."):
            sink.start(run_id, flat_params(run["config"]))
            sink.log_metrics(rows)
            sink.log_artifacts(files)
            sink.close(run["state"])
    return sink.where


class LiveLogger:
    """A job callback that logs to back-ends as the run goes (wrap the caller's own callback).

    Step metrics come from the "step" events; epoch and checkpoint rows (and the epoch-0 row the runner
    stores before its first event) are read from the store at each "epoch" and at "end", so the live
    log holds exactly what an export would. A back-end that fails mid-run is dropped with a warning:
    the run itself goes on and stays complete in the run store.
    """

    def __init__(self, store: RunStore, sinks: list[Sink], warn: Callable[[str], Any] | None = None):
        self.store, self.sinks = store, sinks
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr, flush=True))
        self.active: list[Sink] = []
        self.run_id: str | None = None
        self.sent: set[tuple[str, int]] = set()

    def wrap(self, callback: Callable[[dict], Any] | None) -> Callable[[dict], Any]:
        def both(ev: dict) -> None:
            self(ev)
            if callback is not None:
                callback(ev)

        return both

    def __call__(self, ev: dict) -> None:
        try:
            self._dispatch(ev)
        except Exception as exc:  # reading the store failed: stop logging, never fail the run
            self.warn(f"live logging stopped ({type(exc).__name__}: {exc}); the run goes on in the run store.")
            self.run_id, self.active = None, []

    def _dispatch(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start" and ev.get("run_id"):
            self._begin(str(ev["run_id"]))
        elif self.run_id is None or ev.get("run_id") != self.run_id:
            return
        elif kind == "step":
            self._send(event_rows(ev))
        elif kind == "epoch":
            self._send(stored_rows(self.store, self.run_id, ("epoch", "checkpoint")))
        elif kind == "end":
            self._end(str(ev.get("state") or "completed"))

    def __enter__(self) -> LiveLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        """A run that stopped without its "end" event (a crash, Ctrl-C): close it with its stored state."""
        if self.run_id is not None:
            try:
                state = self.store.get_run(self.run_id).get("state")
            except Exception:
                state = "failed"
            self({"event": "end", "run_id": self.run_id, "state": state})

    def _begin(self, run_id: str) -> None:
        if self.run_id is not None:
            self._end(str(self.store.get_run(self.run_id).get("state") or "failed"))
        self.run_id, self.sent, self.active = run_id, set(), list(self.sinks)
        params = flat_params(self.store.get_run(run_id)["config"])
        self._each(lambda s: s.start(run_id, params))

    def _send(self, rows: list[Row]) -> None:
        new = [r for r in rows if (r[0], r[1]) not in self.sent]
        self.sent.update((tag, step) for tag, step, _ in new)
        if new:
            self._each(lambda s: s.log_metrics(new))

    def _end(self, state: str) -> None:
        rid = self.run_id
        assert rid is not None
        self._send(stored_rows(self.store, rid))
        with tempfile.TemporaryDirectory() as tmp:
            files = run_files(self.store, rid, Path(tmp))
            self._each(lambda s: s.log_artifacts(files))
        self._each(lambda s: s.close(state))
        self.run_id, self.active = None, []

    def _each(self, action: Callable[[Sink], Any]) -> None:
        for sink in list(self.active):
            try:
                action(sink)
            except Exception as exc:  # a back-end failing must never fail the run
                self.active.remove(sink)
                self.warn(
                    f"logging to {sink.where} stopped ({type(exc).__name__}: {exc}). The run goes on and is "
                    f"kept in the run store; export it later with `python -m kdcore runs export {self.run_id} "
                    f"--to {sink.name}`."
                )
