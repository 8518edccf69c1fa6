"""Chunked token divergence against a naive computation that materialises every probability.

For (8192 positions, vocabulary 32000) and (2048, 128000), on CPU, and for fkl, rkl, jsd and akl,
prints the peak-memory ratio chunked / naive (goal <= 0.25) and the time ratio (goal <= 1.2).

Memory: each variant runs once in a fresh child process (multiprocessing 'spawn') that builds the
inputs, resets the kernel's peak-RSS counter (/proc/self/clear_refs, else falls back to ru_maxrss),
runs the variant, and reports peak RSS minus the RSS before the call (torch's CPU allocations are
invisible to tracemalloc). Time: naive and chunked timed in one child process per (case, kind),
best of a few repeats, interleaved. Cases run one at a time to keep RAM under ~10 GB. Both variants run
single-threaded (torch.set_num_threads(1)), which is fair to both and steadier on a shared machine.

    python bench/divergences.py            # the two cases above
    python bench/divergences.py --quick    # small shapes, to check the script
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import time
from pathlib import Path

CASES = [(8192, 32000), (2048, 128000)]
QUICK_CASES = [(1024, 32000), (256, 128000)]  # a few chunks each
KINDS = ("fkl", "rkl", "jsd", "akl")
INPUT_DTYPE = "bfloat16"  # LM logits usually come as bf16; both variants compute in float32


def naive(kind, student, teacher):
    """The textbook computation: full [N, V] log-probabilities and probabilities, no chunking."""
    import torch

    log_q = torch.log_softmax(student.float(), dim=-1)  # [N, V]
    log_p = torch.log_softmax(teacher.float(), dim=-1)  # [N, V]
    if kind == "fkl":
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if kind == "rkl":
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    if kind == "jsd":
        log_m = torch.logaddexp(log_p + math.log(0.5), log_q + math.log(0.5))
        return 0.5 * (log_p.exp() * (log_p - log_m)).sum(-1) + 0.5 * (log_q.exp() * (log_q - log_m)).sum(-1)
    if kind == "akl":  # the authors' rule on the whole [N, V] at once; dead tensors dropped early
        p, q = log_p.exp(), log_q.exp()
        p_sorted, order = torch.sort(p, dim=-1, descending=True, stable=True)
        gap = (p - q).abs().gather(-1, order)
        del order
        head = p_sorted.cumsum(-1) <= 0.5
        del p_sorted
        head[:, 0] = True
        g_head, g_tail = (gap * head).sum(-1), (gap * ~head).sum(-1)
        del gap, head
        w = torch.where(g_head + g_tail > 0, g_head / (g_head + g_tail), 0.5)
        return w * (p * (log_p - log_q)).sum(-1) + (1 - w) * (q * (log_q - log_p)).sum(-1)
    raise KeyError(kind)


def chunked(kind, student, teacher):
    from kdcore.divergences import token_divergence

    return token_divergence(student, teacher, kind)


def _inputs(n, v):
    import torch

    torch.manual_seed(0)
    dtype = getattr(torch, INPUT_DTYPE)
    student = torch.randn(n, v, dtype=dtype).mul_(3)  # in place: no temporary
    teacher = torch.randn(n, v, dtype=dtype).mul_(3)
    return student, teacher


def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _memory_child(variant, kind, n, v, queue):
    import torch

    torch.set_num_threads(1)
    import kdcore.divergences  # noqa: F401  (imported before the baseline)

    student, teacher = _inputs(n, v)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        peak_field = "VmHWM"
    except OSError:
        peak_field = None
    before = _rss_kib("VmRSS")
    with torch.no_grad():
        out = (naive if variant == "naive" else chunked)(kind, student, teacher)
    peak = _rss_kib(peak_field) if peak_field else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((peak - before, float(out.double().sum())))


def _time_child(kind, n, v, repeats, queue):
    import torch

    torch.set_num_threads(1)
    import kdcore.divergences  # noqa: F401

    student, teacher = _inputs(n, v)
    best = {"naive": math.inf, "chunked": math.inf}
    with torch.no_grad():
        for _ in range(repeats):  # interleaved, so a slow spell hits both
            for name, fn in (("naive", naive), ("chunked", chunked)):
                start = time.perf_counter()
                fn(kind, student, teacher)
                best[name] = min(best[name], time.perf_counter() - start)
    queue.put(best)


def _in_child(target, *args):
    """Run target(*args, queue) in a fresh 'spawn' process and return what it puts on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, to check the script")
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats, best kept")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of fkl,rkl,jsd,akl")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    started = time.perf_counter()
    print(f"inputs {INPUT_DTYPE}, float32 arithmetic, 1 thread; ratio = chunked / naive")
    for n, v in QUICK_CASES if args.quick else CASES:
        for kind in kinds:
            t = _in_child(_time_child, kind, n, v, args.repeats)
            naive_mem, naive_sum = _in_child(_memory_child, "naive", kind, n, v)
            chunk_mem, chunk_sum = _in_child(_memory_child, "chunked", kind, n, v)
            agree = abs(naive_sum - chunk_sum) <= 1e-4 * max(1.0, abs(naive_sum))
            print(
                f"{kind:<4} {n}x{v}  mem {chunk_mem / naive_mem:.2f} (goal <= 0.25)  "
                f"time {t['chunked'] / t['naive']:.2f} (goal <= 1.2)  "
                f"[peak MiB naive {naive_mem / 1024:.0f} chunked {chunk_mem / 1024:.0f}; "
                f"s naive {t['naive']:.2f} chunked {t['chunked']:.2f}; sums agree {agree}]",
                flush=True,
            )
    print(f"bench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
