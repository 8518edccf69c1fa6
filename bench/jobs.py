"""Benchmark of the distillation runner (issue 6), printed as ratios against baselines run here.

1. steps/s of `kdcore.jobs.run_job` (store, per-step metrics, cancel polling included) against a
   minimal hand-written PyTorch KD loop on the same pair, data, batch size and optimiser
   (goal: ratio >= 0.9). Both time their training loop only (no setup, no validation).
2. wall time of a 5-epoch job without and with the teacher-output cache (cache build included)
   (goal: speed-up >= 1.5x).

    python bench/jobs.py [--pair digits] [--steps 300] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from kdcore.jobs import JobConfig, RunStore, resolve_pair, run_job


def hand_loop(pair, cfg: JobConfig, steps: int, device) -> float:
    """A minimal KD loop: shuffled batches, teacher under no_grad, (1-λ)·CE + λ·T²·KL, Adam. Returns steps/s."""
    train = pair.dataset.split("train")
    x_all, y_all = train.inputs.to(device), train.targets.to(device)
    teacher = pair.teacher.model.to(device).eval()
    student = pair.student.clone(reinit=True, seed=cfg.seed).model.to(device).train()
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    T, lam, bs, n = 4.0, 0.9, cfg.batch_size, x_all.shape[0]
    g = torch.Generator().manual_seed(cfg.seed)
    done = 0
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    while done < steps:
        perm = torch.randperm(n, generator=g).to(device)
        for b in range(0, n, bs):
            if done >= steps:
                break
            idx = perm[b : b + bs]
            x, y = x_all[idx], y_all[idx]
            with torch.no_grad():
                t_logits = teacher(x)
            s_logits = student(x)
            kl = F.kl_div(
                F.log_softmax(s_logits / T, -1), F.log_softmax(t_logits / T, -1), log_target=True, reduction="batchmean"
            )
            loss = (1 - lam) * F.cross_entropy(s_logits, y) + lam * T * T * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
    sync()
    return steps / (time.perf_counter() - t0)


def ours(pair, cfg: JobConfig, store: RunStore) -> float:
    res = run_job(cfg, store=store, pair=pair)
    assert res.state == "completed", res.error
    return res.metrics["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="digits")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pair = resolve_pair(args.pair)
    n = len(pair.dataset.split("train"))
    spe = -(-n // args.batch_size)
    epochs = -(-args.steps // spe)
    home = tempfile.mkdtemp(prefix="kdwb-bench-")
    os.environ["KDWB_HOME"] = home
    store = RunStore(home)
    cfg = JobConfig(
        pair=args.pair,
        objective="kd",
        temperature=4.0,
        lam=0.9,
        epochs=epochs,
        max_steps=args.steps,
        batch_size=args.batch_size,
        device=args.device,
        checkpoints=1,
        val_size=256,
        probe_size=64,
    )
    print(
        f"pair {args.pair}: {n} training samples, batch {args.batch_size}, {args.steps} steps, device {device}, "
        f"torch threads {args.threads}; teacher {pair.teacher.num_parameters():,} / student "
        f"{pair.student.num_parameters():,} parameters"
    )
    hand_loop(pair, cfg, 20, device)  # warm-up both (imports, allocator)
    ours(pair, JobConfig(**{**cfg.to_dict(), "max_steps": 20}), store)
    hs, os_ = [], []
    for _ in range(args.repeats):
        hs.append(hand_loop(pair, cfg, args.steps, device))
        os_.append(ours(pair, cfg, store))
    h, o = statistics.median(hs), statistics.median(os_)
    print(f"1. runner vs hand-written KD loop (median of {args.repeats}):")
    print(f"   hand-written loop : {h:8.1f} steps/s")
    print(f"   kdcore run_job    : {o:8.1f} steps/s")
    print(f"   ratio             : {o / h:8.3f}   (goal >= 0.9)")

    cfg5 = JobConfig(**{**cfg.to_dict(), "epochs": 5, "max_steps": None})
    walls = {False: [], True: []}
    for _ in range(args.repeats):
        for cached in (False, True):
            store_c = RunStore(tempfile.mkdtemp(prefix="kdwb-bench-cache-"))  # fresh: the cache build is timed
            t0 = time.perf_counter()
            res = run_job(JobConfig(**{**cfg5.to_dict(), "teacher_cache": cached}), store=store_c, pair=pair)
            walls[cached].append(time.perf_counter() - t0)
            assert res.state == "completed", res.error
    a, b = statistics.median(walls[False]), statistics.median(walls[True])
    print(
        f"2. teacher-output cache over 5 epochs ({5 * spe} steps; whole job, cache build included; median of {args.repeats}):"
    )
    print(f"   without cache     : {a:8.2f} s")
    print(f"   with cache        : {b:8.2f} s")
    print(f"   speed-up          : {a / b:8.2f}x   (goal >= 1.5x)")


if __name__ == "__main__":
    main()
