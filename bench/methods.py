"""Benchmark of the method table and the method leaderboard (issues 16, 17), printed as ratios against
classic KD run in the same process (these machines are noisy, so absolute times mean little).

1. Wall time per optimizer step of each method that fits the pair, against classic KD (`kd`): every
   method on the leaderboard's budget (the pair's recipe), a few warm steps dropped, then the median
   time per optimizer step between the runner's step events (the optimiser step, the loss and its
   components logged; zskt reports one event per pseudo-batch of n_g generator + n_s student steps, so
   its gap is divided by the steps it spans); methods and KD alternate over the repeats so that a slow
   moment of the machine hits them alike. Methods that do not fit the pair are listed, not timed. The
   kind column says what a step is: a loss step; a chain's (takd, dgkd, ban) one link's step (the chain
   trains several students); a procedure's (methods/14: blockwise's stones, pwkd's stage-k step after
   its stage 0, weight_distill's phase-1 step through the weight generator, zskt's pseudo-batch share).
2. The leaderboard's total wall time: `compare_methods` on the pair with all the methods that fit and
   3 seeds, in a fresh run store (nothing cached, nothing reused), on the recipe's budget (goal on digits:
   under 10 min on 2 CPU cores). --quick runs it on 5 epochs instead of the recipe's; --skip-board not at all.

    python bench/methods.py [--pair digits] [--steps 30] [--warm 5] [--repeats 3] [--seeds 0,1,2] [--quick]
                            [--skip-steps | --skip-board]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace

import torch

from kdcore.jobs import RunStore, resolve_pair, run_job
from kdcore.jobs.leaderboard import _fit_problem, _plan, compare_methods, table_text
from kdcore.methods import methods_for

SECTION_14 = ("mgd", "weight_distill", "blockwise", "famkd", "pwkd", "zskt")  # spec/methods/14 §14.1–14.6
GOAL_S = 600.0  # the leaderboard on digits, 3 seeds, all methods: under 10 minutes


def step_seconds(cfg, pair, steps: int, warm: int) -> float:
    """Median seconds per optimizer step between step events, over `steps` events after `warm` warm-up
    events (no run store); an event that spans several optimizer steps (zskt) counts as that many."""

    def timed(max_steps: int) -> list[tuple[float, int]]:
        stamps: list[tuple[float, int]] = []

        def on_event(ev: dict) -> None:
            if ev.get("event") == "step":
                stamps.append((time.perf_counter(), int(ev["step"])))

        run_cfg = replace(cfg, max_steps=max_steps, epochs=max(cfg.epochs, 1000), checkpoints=0)
        res = run_job(run_cfg, pair=pair, callback=on_event, use_store=False)
        assert res.state == "completed", res.error
        return stamps

    stamps = timed(warm + steps + 1)
    if len(stamps) < warm + 2 and stamps:  # several optimizer steps per event: ask for as many more
        stamps = timed((warm + steps + 1) * max(1, stamps[0][1]))
    gaps = [(b - a) / max(1, sb - sa) for (a, sa), (b, sb) in zip(stamps[warm:], stamps[warm + 1 :])]
    return statistics.median(gaps)


def step_kind(method: str) -> str:
    from kdcore.jobs.chain import is_chain
    from kdcore.methods import get_method

    return "chain link" if is_chain(method) else ("procedure" if get_method(method).procedure else "loss")


def fitting(pair_name: str, methods: list[str], pair) -> tuple[dict, dict[str, str]]:
    """({method: config} of the methods that fit, on the leaderboard's budget; {method: why not} of the rest)."""
    _, _, plan, _ = _plan(pair_name, methods, [0], None)
    configs, refused = {}, {}
    for m, cfg in plan:
        problem = _fit_problem(m, cfg, pair)
        if problem is None:
            configs[m] = cfg
        else:
            refused[m] = " ".join(problem.split())
    return configs, refused


def per_step(pair_name: str, configs: dict, steps: int, warm: int, repeats: int) -> None:
    pair = resolve_pair(pair_name)
    if "kd" not in configs:
        raise SystemExit(f"Classic KD (kd) does not fit {pair_name}: there is nothing to compare against.")
    times: dict[str, list[float]] = {m: [] for m in configs}
    for _ in range(repeats):
        for m, cfg in configs.items():  # kd among them: alternating
            times[m].append(step_seconds(cfg, pair, steps, warm))
    kd = statistics.median(times["kd"])
    print(f"1. seconds per optimizer step vs classic KD ({steps} steps after {warm} warm, median of {repeats}):")
    print(f"   {'method':<14} {'kind':<10} {'ms/step':>9} {'× kd':>7}")
    for m in configs:
        t = statistics.median(times[m])
        print(f"   {m:<14} {step_kind(m):<10} {t * 1e3:9.2f} {t / kd:7.2f}")
    print(f"   methods/14 timed: {', '.join(m for m in SECTION_14 if m in configs)}")


def leaderboard_time(pair_name: str, methods: list[str], seeds: list[int], quick: bool) -> None:
    base = {"epochs": 5} if quick else None
    store = RunStore(tempfile.mkdtemp(prefix="kdwb-bench-board-"))
    t0 = time.perf_counter()
    res = compare_methods(pair_name, methods, seeds, base=base, store=store, reuse=False)
    wall = time.perf_counter() - t0
    assert (res.runs["state"] == "completed").all(), res.runs
    b = res.budget
    print(
        f"2. leaderboard on {pair_name}: {len(res.table)} methods (ce included) × {len(seeds)} seeds = "
        f"{len(res.runs)} runs; budget epochs {b['epochs']}, train_size {b['train_size']}, batch {b['batch_size']}"
        + (" (--quick: 5 epochs, not the recipe's)" if quick else " (the recipe's)")
    )
    print(f"   total wall time   : {wall:8.1f} s   (goal < {GOAL_S:.0f} s on 2 CPU cores for digits, 3 seeds)")
    print(f"   mean per run      : {wall / len(res.runs):8.2f} s")
    print(table_text(res.table))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="digits")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per method and repeat")
    ap.add_argument("--warm", type=int, default=5, help="steps dropped first (allocator, caches)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quick", action="store_true", help="the leaderboard on 5 epochs instead of the recipe's")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    skip = ap.add_mutually_exclusive_group()
    skip.add_argument("--skip-steps", action="store_true", help="only the leaderboard's total time")
    skip.add_argument("--skip-board", action="store_true", help="only the time per step (no leaderboard)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = resolve_pair(args.pair).dataset.task
    configs, refused = fitting(args.pair, [m.name for m in methods_for(task)], resolve_pair(args.pair))
    methods = [m for m in configs if m != "ce"]
    print(f"pair {args.pair} ({task}), torch threads {args.threads}; methods that fit: {', '.join(methods)}")
    for m, why in refused.items():
        print(f"   left out: {m} does not fit {args.pair} ({why[:140]})")
    if not args.skip_steps:
        per_step(args.pair, configs, args.steps, args.warm, args.repeats)
    if not args.skip_board:
        leaderboard_time(args.pair, methods, [int(s) for s in args.seeds.split(",")], args.quick)


if __name__ == "__main__":
    main()
