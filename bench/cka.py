"""Benchmark: a 12-layer × 6-layer CKA heatmap over n = 4096 inputs (widths 768 and 384), on CPU.

Time (same process): ``analyses.cka.cka_matrix`` (linear; each layer centred once, feature-space
form ‖YᵀX‖²_F since n > d) and the streaming ``MinibatchCKA`` against a naive loop that builds the
two n×n Gram matrices for every layer pair. Goal: ≥ 5× faster.
Memory (one spawned child per path, peak RSS growth over the child's RSS after imports): the
streaming path, which only ever holds one batch of features, against the full path, which holds
every layer's features for all n inputs. Goal: streaming/full ≤ 0.3.

Features are synthetic: every layer is a random linear map of a shared latent code plus noise, so
the layers are related but not identical. All computation is float64 torch on CPU, the same
thread settings on both sides.

    python bench/cka.py [--n 4096] [--batch 256]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import torch

from analyses import cka

LAYERS_A, WIDTH_A = 12, 768
LAYERS_B, WIDTH_B = 6, 384
LATENT = 64


def _maps():
    g = torch.Generator().manual_seed(0)
    wa = [torch.randn(LATENT, WIDTH_A, generator=g, dtype=torch.float64) for _ in range(LAYERS_A)]
    wb = [torch.randn(LATENT, WIDTH_B, generator=g, dtype=torch.float64) for _ in range(LAYERS_B)]
    return wa, wb


def _batch(start: int, size: int, maps) -> tuple[dict, dict]:
    """Features of inputs [start, start + size) for both models (deterministic per input block)."""
    wa, wb = maps
    g = torch.Generator().manual_seed(1000 + start)
    z = torch.randn(size, LATENT, generator=g, dtype=torch.float64)  # shared latent code [b, k]
    fa = {
        f"teacher.{i}": z @ w + 2.0 * torch.randn(size, WIDTH_A, generator=g, dtype=torch.float64)
        for i, w in enumerate(wa)
    }
    fb = {
        f"student.{i}": torch.tanh(z @ w / 8) + 0.5 * torch.randn(size, WIDTH_B, generator=g, dtype=torch.float64)
        for i, w in enumerate(wb)
    }
    return fa, fb


def _all_features(n: int, batch: int, maps) -> tuple[dict, dict]:
    parts = [_batch(s, batch, maps) for s in range(0, n, batch)]
    fa = {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]}
    fb = {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]}
    return fa, fb


def naive_cka_matrix(fa: dict, fb: dict) -> torch.Tensor:
    """The baseline: for every layer pair, build K = XXᵀ and L = YYᵀ (n×n), centre, take traces."""
    out = torch.zeros(len(fa), len(fb), dtype=torch.float64)
    for i, x in enumerate(fa.values()):
        for j, y in enumerate(fb.values()):
            k, l = x @ x.T, y @ y.T  # [n, n] each
            k = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
            l = l - l.mean(0, keepdim=True) - l.mean(1, keepdim=True) + l.mean()
            out[i, j] = (k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum())
    return out


def _stream(n: int, batch: int, maps):
    acc = None
    for s in range(0, n, batch):
        fa, fb = _batch(s, batch, maps)
        acc = acc or cka.MinibatchCKA(list(fa), list(fb))
        acc.update(fa, fb)
    return acc.result()


def _status_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, KiB, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); ru_maxrss would carry the parent's peak over exec."""
    Path("/proc/self/clear_refs").write_text("5")


def _memory_child(path: str, n: int, batch: int, queue) -> None:
    torch.set_num_threads(1)
    maps = _maps()
    _stream(8 * 4, 8, maps)  # warm up allocator and kernels with a tiny run
    before = _status_kib("VmRSS")
    _reset_peak()
    if path == "stream":
        _stream(n, batch, maps)
    else:
        fa, fb = _all_features(n, batch, maps)
        cka.cka_matrix(fa, fb)
    queue.put(_status_kib("VmHWM") - before)


def _peak_growth_mib(path: str, n: int, batch: int) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_memory_child, args=(path, n, batch, q))
    p.start()
    kib = q.get()
    p.join()
    return kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4096, help="inputs (default 4096)")
    ap.add_argument("--batch", type=int, default=256, help="streaming batch size (default 256)")
    args = ap.parse_args()
    n, b = args.n, args.batch
    if n % b:
        raise SystemExit("--n must be a multiple of --batch")
    maps = _maps()
    fa, fb = _all_features(n, b, maps)
    print(
        f"CKA heatmap {LAYERS_A}×{LAYERS_B} layers, widths {WIDTH_A}/{WIDTH_B}, n = {n}, float64 CPU, "
        f"torch threads = {torch.get_num_threads()}"
    )

    t0 = time.perf_counter()
    ours = cka.cka_matrix(fa, fb)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = _stream(n, b, maps)
    t_stream = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = naive_cka_matrix(fa, fb)
    t_naive = time.perf_counter() - t0

    err = (torch.tensor(ours.to_numpy()) - naive).abs().max().item()
    gap = (
        (torch.tensor(stream.to_numpy()) - torch.tensor(cka.cka_matrix(fa, fb, debiased=True).to_numpy()))
        .abs()
        .max()
        .item()
    )
    print(f"naive n×n Gram loop      : {t_naive:8.2f} s")
    print(
        f"cka_matrix (full, linear): {t_ours:8.2f} s   speed-up vs naive {t_naive / t_ours:6.1f}×  (goal ≥ 5×)"
        f"   max |Δ| vs naive {err:.1e}"
    )
    print(
        f"MinibatchCKA (b = {b:4d})   : {t_stream:8.2f} s   speed-up vs naive {t_naive / t_stream:6.1f}×"
        f"   max |Δ| vs full debiased {gap:.1e} (an estimate of it)"
    )
    del fa, fb
    m_stream = _peak_growth_mib("stream", n, b)
    m_full = _peak_growth_mib("full", n, b)
    print(
        f"peak RSS growth: streaming {m_stream:7.1f} MiB, full {m_full:7.1f} MiB, "
        f"ratio {m_stream / m_full:.3f}  (goal ≤ 0.3; one spawned child per path)"
    )


if __name__ == "__main__":
    main()
