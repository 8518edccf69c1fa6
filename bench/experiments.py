"""Benchmark of the experiment plan (issue 20): the floor, the T sweep (1, 2, 5, 10) and the λ sweep
(0.1, 0.5, 0.9) at the winning T on the digits pair's recipe, 3 seeds, with the local executor (runs
one after another in this process). Goal: total wall time under 10 minutes on 2 cores. Prints the
machine's load average before and after (the machine is shared) and the report's table.

    python bench/experiments.py [--pair digits] [--seeds 0,1,2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from kdcore.jobs import RunStore
from kdcore.jobs.experiment import PlanSpec, run_plan, table_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="digits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: 2 cores shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    with tempfile.TemporaryDirectory() as home:
        load = os.getloadavg()
        t0 = time.perf_counter()
        report = run_plan(PlanSpec(args.pair, seeds=seeds), store=RunStore(home))
        wall = time.perf_counter() - t0
        print(table_text(report))
        runs = len({r["run_id"] for r in report["runs"]})
        print(
            f"plan on {args.pair}, {len(seeds)} seeds, {runs} runs: {wall:.1f} s wall ({wall / 60:.2f} min; goal < 10 min)"
        )
        print(f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
