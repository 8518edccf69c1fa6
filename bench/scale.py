"""Executors' scaling (issue 19): a 12-run protocol on the local executor with 1 and 2 workers and on a
local Ray with 2 workers; wall time and the speed-up against 1 worker (goal ≥ 1.7× with 2 workers on 2
cores for CPU-bound runs). The machine's load average is printed beside each figure: on a shared,
loaded machine the ratios say more about the load than about the executors.

    python bench/scale.py [--epochs 15] [--no-ray] [--no-fsdp]

The protocol: digits, kd at T 2, 4, 8 and the student alone, seeds 0, 1, 2 (12 runs), one torch
thread per run. Ray's start-up (once per session) is timed apart from the protocol.
Last, one job with its student sharded (FSDP, `--shard full`) over 2 processes against 1 process
unsharded: samples/s and their ratio (bench/ddp.py's fsdp_throughput, a tiny Llama pair).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pandas as pd

from kdcore.jobs import JobConfig, RunStore, run_protocol
from kdcore.jobs.executors import LocalExecutor


def _load() -> str:
    return "load avg " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _train_s(summary: dict) -> float:
    """A run's training time: steps / steps per second (what the runner measured)."""
    return summary["steps"] / summary["steps_per_s"] if summary.get("steps_per_s") else float("nan")


def _timed(label: str, executor, base: JobConfig, root: str) -> tuple[float, pd.DataFrame]:
    t0 = time.perf_counter()
    store = RunStore(root)
    res = run_protocol(base, temperatures=[2, 4, 8], seeds=[0, 1, 2], store=store, executor=executor)
    wall = time.perf_counter() - t0
    assert len(res.runs) == 12 and (res.runs["state"] == "completed").all(), res.runs
    train = sum(_train_s(store.get_run(rid)["summary"]) for rid in res.runs["run_id"])
    print(f"{label:<22} {wall:7.1f} s wall, {train:6.1f} s training summed over runs   ({_load()})", flush=True)
    return wall, res.table.drop(columns=["run_ids"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray figure")
    ap.add_argument("--no-fsdp", action="store_true", help="skip the FSDP 2-process figure")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    base = JobConfig(pair="digits", objective="kd", epochs=args.epochs, train_size=512, batch_size=64)
    print(f"12-run protocol, digits, {args.epochs} epochs, {os.cpu_count()} cores; {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        one, t1 = _timed("local, 1 worker", LocalExecutor(workers=1), base, f"{d}/l1")
        two, t2 = _timed("local, 2 workers", LocalExecutor(workers=2), base, f"{d}/l2")
        print(f"speed-up local 2 vs 1: {one / two:.2f}x (goal >= 1.7x); tables equal: {t1.equals(t2)}", flush=True)
        if not args.no_ray:
            _ray(one, t1, base, d)
    if not args.no_fsdp:
        from ddp import fsdp_line, fsdp_throughput

        print(fsdp_line(fsdp_throughput(devices=2)) + f"   ({_load()})", flush=True)


def _ray(one: float, t1: pd.DataFrame, base: JobConfig, d: str) -> None:
    """The protocol on a local Ray with 2 workers, against the local executor's 1-worker wall time."""
    from kdcore.jobs.ray_executor import RayExecutor

    t0 = time.perf_counter()
    ray_ex = RayExecutor(max_running=2)
    print(f"ray start-up           {time.perf_counter() - t0:7.1f} s", flush=True)
    try:
        r, tr = _timed("ray, 2 workers", ray_ex, base, f"{d}/r2")
    finally:
        ray_ex.close()
    print(f"speed-up ray 2 vs local 1: {one / r:.2f}x (goal >= 1.7x); tables equal: {t1.equals(tr)}", flush=True)


if __name__ == "__main__":
    main()
