"""The workbench's KD step on a Llama-style pair against a plain PyTorch/transformers loop.

Pair (built from configs, random weights, nothing downloaded): teacher ~96M parameters (hidden 768,
10 layers, 12 heads, MLP 2048), student ~23M (hidden 384, 6 layers, 6 heads, MLP 1024), vocabulary
32000, tied input/output embeddings. One KD step = teacher forward (no grad) + student forward +
forward KL (T = 1) + next-token CE + backward + Adam step, on random token ids [batch, seq].

- plain: the loop a practitioner writes: ``teacher(ids).logits`` and ``student(ids).logits`` in
  float32 ([B, L, V] each), ``F.kl_div(log_softmax(s), log_softmax(t))`` + ``F.cross_entropy``.
- workbench: what a job runs with its defaults plus ``precision: bf16`` where the device supports
  it: ``kdcore.jobs.performance.configure_models`` (SDPA attention), ``torch.autocast(bf16)``
  around the forward passes and the loss, and ``kdcore.jobs.lm_step.chunked_token_loss`` (hidden
  states + heads, chunk by chunk, never the [B, L, V] logits); float32 master weights and Adam.

Each variant runs in its own child process (this script, ``--child``): it builds the models, runs
one warm-up step (Adam's state is then allocated), resets the peak counter, and times ``--steps``
steps. Peak memory: CPU, the process's peak resident set (VmHWM, reset through /proc/self/clear_refs
after the warm-up, so it is the peak *during the timed steps*, weights and optimizer state included;
ru_maxrss where the reset is unavailable); CUDA, torch.cuda.max_memory_allocated. On CUDA the
chunked divergence alone (forward + backward) is also timed against the memory-bandwidth floor:
the bytes of both models' float32 logits read once, divided by the bandwidth of a large device copy.
Both steps free the last step's gradients first (``zero_grad(set_to_none=True)``), as the job does.

"Between steps" is VmRSS (CUDA: allocated) after the warm-up step; on CPU it includes freed heap
pages glibc keeps for reuse, which no tensor holds, so each variant also reports what it holds once
those are handed back (gc + ``malloc_trim(0)`` after the timed steps). The load average is printed
before and after: on a shared machine other work skews tokens/s and, through the allocator, VmRSS.

    python bench/llm.py                      # CPU: batch 4, sequence 512, 2 timed steps per variant
    python bench/llm.py --steps 4 --seq 256  # shorter sequences, more steps
    python bench/llm.py --device cuda        # sequence 1024 by default on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32000
TEACHER = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=10, num_attention_heads=12)
STUDENT = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6)


def build(shape: dict, seed: int, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        num_key_value_heads=shape["num_attention_heads"],
        **shape,
    )
    return LlamaForCausalLM(config).to(device)


def plain_step(teacher, student, opt, ids, labels):
    """The plain loop: full float32 logits of both models."""
    import torch
    import torch.nn.functional as F

    opt.zero_grad(set_to_none=True)  # first, as the job's step does: last step's gradients freed
    with torch.no_grad():
        t_logits = teacher(input_ids=ids, use_cache=False).logits  # [B, L, V]
    s_logits = student(input_ids=ids, use_cache=False).logits  # [B, L, V]
    log_q = F.log_softmax(s_logits.flatten(0, 1), dim=-1)  # [B·L, V]
    log_p = F.log_softmax(t_logits.flatten(0, 1), dim=-1)
    loss = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") + F.cross_entropy(
        s_logits.flatten(0, 1), labels.flatten()
    )
    loss.backward()
    opt.step()
    return float(loss.detach())


def workbench_setup(teacher, student, precision: str):
    from kdcore.adapters import wrap
    from kdcore.jobs.config import JobConfig
    from kdcore.jobs.performance import configure_models

    cfg = JobConfig(pair="bench", objective="token", precision=precision)
    t, s = wrap(teacher, name="teacher", kind="causal_lm"), wrap(student, name="student", kind="causal_lm")
    t, s = configure_models(cfg, t, s, needs_attn=False)
    return t, s, cfg.resolved_terms()[0]


def workbench_step(t, s, term, precision: str, opt, ids, labels):
    """The job's step: autocast, chunked token divergence + CE from hidden states, float32 Adam."""
    from kdcore.jobs.lm_step import chunked_token_loss
    from kdcore.jobs.performance import autocast

    opt.zero_grad(set_to_none=True)  # first, as kdcore.jobs.runner's _train_step does
    with autocast(precision, ids.device):
        loss, _ = chunked_token_loss(s, t, ids, labels, term, ce_weight=1.0)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _reset_peak(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_bytes(device: str, reset: bool) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    if reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rest_bytes(device: str) -> int:
    """Memory held between steps (weights, gradients, Adam state, the runtime): VmRSS, or CUDA allocated."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.memory_allocated())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _held_bytes(device: str) -> int:
    """Memory still held after a step once freed memory is handed back: CUDA, allocated; CPU, VmRSS after
    gc and glibc's malloc_trim(0) (freed heap pages that glibc keeps for reuse count in VmRSS but are
    no tensor's). Without glibc, VmRSS as it is."""
    import ctypes
    import gc

    gc.collect()
    if not device.startswith("cuda"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
    return _rest_bytes(device)


def _load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes, and its CPU count (other work skews CPU figures)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unavailable"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def child(variant: str, args: argparse.Namespace) -> dict:
    """One variant: build, warm up one step, reset the peak, time ``args.steps`` steps."""
    import torch

    device = args.device
    teacher, student = build(TEACHER, 1, device).eval(), build(STUDENT, 2, device).train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (args.batch, args.seq + 1), generator=g).to(device)
    ids, labels = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    if variant == "plain":

        def step():
            return plain_step(teacher, student, opt, ids, labels)
    else:
        t, s, term = workbench_setup(teacher, student, args.precision)

        def step():
            return workbench_step(t, s, term, args.precision, opt, ids, labels)

    step()  # warm-up: kernels chosen, Adam state allocated
    reset = _reset_peak(device)
    rest = _rest_bytes(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    sync()
    seconds = time.perf_counter() - start
    peak = _peak_bytes(device, reset)
    return {
        "variant": variant,
        "tokens_per_s": args.steps * args.batch * args.seq / seconds,
        "peak_bytes": peak,
        "rest_bytes": rest,
        "held_bytes": _held_bytes(device),
        "loss": losses[-1],
        "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "student_params": sum(p.numel() for p in student.parameters()),
    }


def divergence_vs_floor(args: argparse.Namespace) -> dict:
    """CUDA: the chunked divergence (fwd + bwd) alone, against the bandwidth floor of reading both
    models' float32 logits once."""
    import torch

    from kdcore.lm_chunked import hidden_divergence_loss

    n, dev = args.batch * args.seq, args.device
    g = torch.Generator(device=dev).manual_seed(0)
    hs = torch.randn(n, STUDENT["hidden_size"], device=dev, generator=g, dtype=torch.bfloat16, requires_grad=True)
    ws = (torch.randn(VOCAB, STUDENT["hidden_size"], device=dev, generator=g) * 0.05).bfloat16().requires_grad_()
    ht = torch.randn(n, TEACHER["hidden_size"], device=dev, generator=g, dtype=torch.bfloat16)
    wt = (torch.randn(VOCAB, TEACHER["hidden_size"], device=dev, generator=g) * 0.05).bfloat16()

    def run() -> None:
        hidden_divergence_loss(hs, (ws, None), ht, (wt, None), "fkl").backward()

    big = torch.empty(2**28, device=dev, dtype=torch.float32)  # 1 GiB
    best_copy, best_div = float("inf"), float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        big.clone()
        torch.cuda.synchronize()
        best_copy = min(best_copy, time.perf_counter() - t0)
        run()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        best_div = min(best_div, time.perf_counter() - t0)
    bandwidth = 2 * big.numel() * 4 / best_copy  # bytes read + written per second
    floor = 2 * n * VOCAB * 4 / bandwidth
    return {"divergence_s": best_div, "floor_s": floor, "bandwidth_gbs": bandwidth / 1e9}


def _spawn(kind: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--device", args.device, "--steps", str(args.steps)]
    cmd += ["--seq", str(args.seq), "--batch", str(args.batch), "--precision", args.precision]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench/llm.py child {kind!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--seq", type=int, default=None, help="sequence length (default 512 on CPU, 1024 on CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default 4 on CPU, 8 on CUDA)")
    ap.add_argument("--precision", default=None, help="the workbench's precision (default bf16 where supported)")
    ap.add_argument("--child", choices=("plain", "workbench", "divergence"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = args.device.startswith("cuda")
    args.seq = args.seq or (1024 if gpu else 512)
    args.batch = args.batch or (8 if gpu else 4)
    if args.precision is None:
        from kdcore.jobs.performance import bf16_supported

        args.precision = "bf16" if bf16_supported(torch.device(args.device)) else "fp32"
    if args.child:
        result = divergence_vs_floor(args) if args.child == "divergence" else child(args.child, args)
        print(json.dumps(result))
        return 0
    return report(args, gpu)


def report(args: argparse.Namespace, gpu: bool) -> int:
    load_before = _load_average()
    plain, bench = _spawn("plain", args), _spawn("workbench", args)
    mib = 2**20
    print(f"{load_before} before the run; {_load_average()} after")
    print(
        f"llm KD step on {args.device}: teacher {plain['teacher_params'] / 1e6:.0f}M, student "
        f"{plain['student_params'] / 1e6:.0f}M, vocab {VOCAB}, batch {args.batch} x seq {args.seq}, "
        f"{args.steps} timed steps; workbench: chunked + {args.precision} + sdpa"
    )
    for r in (plain, bench):
        print(
            f"  {r['variant']:<9} {r['tokens_per_s']:9.1f} tokens/s   peak {r['peak_bytes'] / mib:6.0f} MiB "
            f"(between steps {r['rest_bytes'] / mib:6.0f} MiB, {r['held_bytes'] / mib:6.0f} MiB once freed memory "
            f"is handed back)   loss {r['loss']:.3f}"
        )
    print(f"peak memory ratio (workbench/plain) {bench['peak_bytes'] / plain['peak_bytes']:.2f} (goal <= 0.5)")
    step_mem = (bench["peak_bytes"] - bench["rest_bytes"]) / max(1, plain["peak_bytes"] - plain["rest_bytes"])
    print(f"  of which the step's own memory (peak - between steps), workbench/plain {step_mem:.2f}")
    goal = 1.3 if gpu else 1.0
    print(
        f"tokens/s ratio {bench['tokens_per_s'] / plain['tokens_per_s']:.2f} (goal >= {goal} {'GPU' if gpu else 'CPU'})"
    )
    if gpu:
        d = _spawn("divergence", args)
        print(
            f"chunked divergence {d['divergence_s'] * 1e3:.2f} ms vs bandwidth floor {d['floor_s'] * 1e3:.2f} ms "
            f"({d['bandwidth_gbs']:.0f} GB/s): ratio {d['divergence_s'] / d['floor_s']:.2f} (goal <= 3)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
