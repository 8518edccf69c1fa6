"""The Ray executor: each run one Ray task with its CPU/GPU request (`make_executor("ray")` in executors.py).

    ex = RayExecutor()                     # a local Ray started here, as many CPUs as this machine's
    ex = RayExecutor(address="auto")       # the Ray cluster this machine belongs to (`ray start --head`)
    ex = RayExecutor(address="10.0.0.5:6379")

A task runs the worker's body (`run_queued`) against the run store at the submitting process's path,
so results and artifacts land in that store; on a cluster of several machines that path must be a
folder every node mounts (README "Scaling out"). A task is not retried by Ray: a worker that dies
leaves its run interrupted, and `resume` continues it from its last epoch on any executor.
Ray is optional (`pip install -e '.[ray]'`).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from kdcore.jobs.config import JobConfig
from kdcore.jobs.executor_base import Executor, ExecutorError, check_workers, max_workers, queue_runs, run_batch
from kdcore.jobs.store import RunStore

CONNECT_TIMEOUT_S = 4.0  # each step of the address probe (TCP, then Ray's GCS): an error within 10 s
INSTALL_HINT = "Install it with `pip install -e '.[ray]'` (or `pip install 'ray>=2.9'`), or use --executor local."


def import_ray() -> ModuleType:
    """The ray module, or an ExecutorError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed. {INSTALL_HINT}") from None
    return ray


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT (optionally ray://HOST:PORT) as (host, port), or a clear error."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(
            f"A Ray address is 'auto' or HOST:PORT (e.g. 127.0.0.1:6379, the port `ray start --head` prints). Got {address!r}."
        )
    return host, int(port)


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address where nothing answers within `timeout` seconds (before ray.init, which waits long)."""
    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(
            f"No Ray cluster answers at {address} ({exc or 'timed out'} within {timeout:g} s); nothing was queued. "
            "Check the address `ray start --head` printed and that its port is reachable, or drop --ray-address "
            "to start a local Ray."
        ) from None


def probe_gcs(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address whose port answers but is no Ray head (ray.init would wait a minute or more):
    Ray's GCS client asked for one key, in a thread given `timeout` seconds."""
    try:
        gcs_client = importlib.import_module("ray._raylet").GcsClient  # not public API: when it moves,
    except (ImportError, AttributeError):  # only the TCP probe is left
        return
    done: dict[str, object] = {}

    def ask() -> None:
        try:
            gcs_client(address=address).internal_kv_get(b"kdwb-probe", namespace=None, timeout=timeout)
            done["ok"] = True
        except Exception as exc:  # Ray's RpcError and kin
            done["error"] = exc

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout)
    error = str(done.get("error", ""))
    if "InvalidAuthToken" in error or "Unauthenticated" in error:
        raise ExecutorError(
            f"The Ray cluster at {address} requires token authentication and this process has no valid token; "
            "nothing was queued. Set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token "
            "(`ray get-auth-token` on the head), or start the cluster with RAY_AUTH_MODE=disabled."
        )
    if "ok" not in done and (worker.is_alive() or "timed out" in error.lower()):
        why = error or f"no answer within {timeout:g} s"
        raise ExecutorError(
            f"The port at {address} answers but no Ray cluster does ({why}); nothing was queued. "
            "Pass the GCS address `ray start --head` printed (port 6379 by default)."
        )


def connect(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local Ray (num_cpus CPUs) when None; True if started here.
    A Ray already initialised in this process is used as it is."""
    if ray.is_initialized():
        return False
    opts: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, **opts)
        return True
    if address != "auto":
        probe(address)
        if not address.startswith("ray://"):
            probe_gcs(address)
    try:
        ray.init(address=address, **opts)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ExecutorError(
            f"Could not join the Ray cluster at {address!r}: {exc} Nothing was queued. Start one with "
            "`ray start --head`, pass its HOST:PORT, or drop --ray-address to start a local Ray."
        ) from None
    return False


def gpu_request(config: JobConfig) -> int:
    """GPUs a run asks Ray for: 1 when its device is CUDA, else 0 ('auto' takes what the node has)."""
    return 1 if str(config.device).startswith("cuda") else 0


def check_resources(configs: Sequence[JobConfig], resources: dict, threads: int) -> None:
    """Refuse runs the cluster can never place: a GPU run without GPUs, more CPUs than any total."""
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if any(gpu_request(c) for c in configs) and gpus < 1:
        raise ExecutorError(
            "Some runs ask for a GPU (device 'cuda…') but the Ray cluster has none (its resources: "
            f"{int(cpus)} CPUs, 0 GPUs). Nothing was queued. Use --device cpu (or auto), or join a cluster with GPUs."
        )
    if threads > cpus:
        raise ExecutorError(
            f"Each run asks for {threads} CPUs but the Ray cluster has {int(cpus)} in all. Nothing was queued. "
            "Ask for fewer threads per run."
        )


def _task(root: str, run_id: str, threads: int) -> str:
    """The Ray task: run one queued run in the store at `root`; its final state."""
    store = RunStore(root)
    run_batch(store, [run_id], threads)
    return str(store.get_run(run_id)["state"])


@dataclass
class RayExecutor(Executor):
    """Each run a Ray task asking for `threads` CPUs and, for a CUDA device, one GPU. max_running: the
    CPUs of a local Ray started here (default: this machine's cores); with an address the cluster decides."""

    name: str = "ray"
    address: str | None = None
    max_running: int | None = None
    threads: int = 1
    _ray: Any = field(default=None, repr=False)
    _started: bool = field(default=False, repr=False)
    _refs: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        ray = import_ray()
        if self.max_running is not None:
            check_workers(self.max_running)
        if self.address is not None and self.address != "auto":
            parse_address(self.address)
        cpus = self.max_running or (max_workers() if self.address is None else None)
        self._started = connect(ray, self.address, cpus)
        self._ray = ray

    def submit(self, configs: Sequence[JobConfig], *, store: RunStore) -> list[str]:
        check_resources(configs, self._ray.cluster_resources(), self.threads)
        run_ids = queue_runs(configs, store)
        self.start(run_ids, store)
        return run_ids

    def start(self, run_ids: list[str], store: RunStore) -> None:
        remote = self._ray.remote(_task)
        for rid in run_ids:
            gpus = gpu_request(JobConfig.from_dict(store.get_run(rid)["config"]))
            opts = {"num_cpus": self.threads, "num_gpus": gpus, "max_retries": 0}
            self._refs[rid] = remote.options(**opts).remote(str(store.root), rid, self.threads)

    def lost(self, store: RunStore) -> dict[str, str]:
        """Tasks that ended in an error: a run never claimed fails with it; a run left 'running' by a
        dead worker is interrupted (Ray says nobody runs it any more), to be resumed."""
        refs = list(self._refs.values())
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        out: dict[str, str] = {}
        for rid, ref in list(self._refs.items()):
            if ref not in ready:
                continue
            del self._refs[rid]
            try:
                self._ray.get(ref)
            except Exception as exc:  # the task's worker died or it could not start
                out[rid] = f"The Ray task ended without finishing the run: {type(exc).__name__}: {exc}"
                _interrupt_if_running(store, rid, out[rid])
        return out

    def close(self) -> None:
        """Shut down a local Ray that this executor started (one joined or found running is left alone)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def _interrupt_if_running(store: RunStore, run_id: str, why: str) -> None:
    row = store.get_run(run_id)
    if row["state"] == "running" and store.lease_holder(run_id) is None:
        store.update_run(
            run_id, state="interrupted", error=f"{why} Resume it with `python -m kdcore runs resume {run_id}`."
        )
