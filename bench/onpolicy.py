"""Benchmark of on-policy distillation (issue 18): the time of an on-policy step (the student samples
the completions, then both models run teacher-forced) against an off-policy step (data completions),
both GKD runs of the runner on the same pair, data, batch and lengths (λ = 1 against λ = 0).

    python bench/onpolicy.py [--pair tinylang] [--steps 40] [--prompt 16] [--new 32] [--batch 32] [--device cpu]

Prints one line per setting with the median seconds per step over the repeats and the ratio
on-policy / off-policy (generation of N tokens with a KV cache costs about N small forward passes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from kdcore.jobs import JobConfig, run_job


def step_time(args: argparse.Namespace, lmbda: float, objective: str = "gkd") -> float:
    params = dict(lmbda=lmbda, prompt_tokens=args.prompt, max_new_tokens=args.new)
    if objective != "gkd":
        params.pop("lmbda")
    cfg = JobConfig(
        pair=args.pair,
        objective=objective,
        params=params,
        max_steps=args.steps,
        epochs=1,
        batch_size=args.batch,
        train_size=args.steps * args.batch,
        val_size=64,
        probe_size=16,
        checkpoints=0,
        device=args.device,
        seed=0,
    )
    r = run_job(cfg, use_store=False)
    assert r.state == "completed", r.error
    return 1.0 / r.metrics["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="tinylang")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    os.environ.setdefault("KDWB_HOME", tempfile.mkdtemp(prefix="kdwb_bench_"))
    off = statistics.median(step_time(args, 0.0) for _ in range(args.repeats))
    on = statistics.median(step_time(args, 1.0) for _ in range(args.repeats))
    mini = statistics.median(step_time(args, 1.0, "minillm") for _ in range(args.repeats))
    where = f"{args.pair}, {args.device}, B={args.batch}, P={args.prompt}, N={args.new}, {args.steps} steps"
    print(f"gkd off-policy step (λ=0, data):        {off * 1e3:8.1f} ms  ({where})")
    print(f"gkd on-policy step  (λ=1, student):     {on * 1e3:8.1f} ms  ratio on/off = {on / off:.2f}x")
    print(f"minillm step (α=0.2 mixture, KV cache):{mini * 1e3:8.1f} ms  ratio on/off = {mini / off:.2f}x")


if __name__ == "__main__":
    main()
