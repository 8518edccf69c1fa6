"""DDP throughput (issue 19): training samples/s of one distill job with N processes against 1 process.

Both run `python -m kdcore distill` on the same pair, global batch and steps (N processes through
`--devices N`, i.e. torchrun with gloo on CPU or NCCL on GPUs); samples/s is the run's steps/s (rank 0's
training loop, collectives included, no setup or validation) × the global batch size. Wall time of the
whole command (process start, imports, validation) is printed too.

    python bench/ddp.py [--pair digits] [--devices 2] [--epochs 10] [--batch-size 256] [--train-size 1024]
    python bench/ddp.py --shard full [--devices 2]   # FSDP: a tiny Llama pair built offline, sharded student

`ddp_throughput(...)` and `fsdp_throughput(...)` return the figures as a dict, for bench/scale.py. The FSDP
figure compares N processes with `--shard full` against 1 process unsharded, on a Llama-style pair built
from configs (tests/helpers/hf_pairs.py; teacher 4 layers, student 2, hidden 32) and a generated corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _distill(flags: list[str], devices: int, home: str) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "kdcore", "distill", *flags, "--json"]
    cmd += ["--devices", str(devices)] if devices > 1 else []
    env = {**os.environ, "KDWB_HOME": home, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1]), wall


def _throughput(flags: list[str], devices: int, batch_size: int, label: str, flags_n: tuple[str, ...] = ()) -> dict:
    """The figures of the same job in 1 process and in `devices` processes (with `flags_n` added)."""
    with tempfile.TemporaryDirectory() as home:
        one, wall_1 = _distill(flags, 1, home)
        many, wall_n = _distill([*flags, *flags_n], devices, home)
    s1 = one["metrics"]["steps_per_s"] * batch_size
    sn = many["metrics"]["steps_per_s"] * batch_size
    return {
        "pair": label,
        "devices": devices,
        "samples_per_s_1": s1,
        "samples_per_s_n": sn,
        "ratio": sn / s1,
        "wall_s_1": wall_1,
        "wall_s_n": wall_n,
        "final_val_acc_1": one["metrics"].get("final_val_acc"),
        "final_val_acc_n": many["metrics"].get("final_val_acc"),
        "final_val_loss_1": one["metrics"].get("final_val_loss"),
        "final_val_loss_n": many["metrics"].get("final_val_loss"),
    }


def ddp_throughput(
    pair: str = "digits", devices: int = 2, epochs: int = 10, batch_size: int = 256, train_size: int = 1024
) -> dict:
    """{"samples_per_s_1", "samples_per_s_n", "ratio", "wall_s_1", "wall_s_n", ...} of the same job."""
    flags = [f"--pair={pair}", f"--epochs={epochs}", f"--batch-size={batch_size}", f"--train-size={train_size}"]
    flags += ["--no-teacher-cache", "--seed=0"]
    return _throughput(flags, devices, batch_size, pair)


def fsdp_throughput(devices: int = 2, epochs: int = 3, batch_size: int = 32, train_size: int = 256) -> dict:
    """As ddp_throughput, N processes with --shard full against 1 unsharded, on a tiny Llama pair."""
    from _test_helpers import hf_pairs

    with tempfile.TemporaryDirectory() as root:
        teacher, student = hf_pairs().llama_pair(Path(root))
        corpus = Path(root) / "corpus.txt"
        corpus.write_text(" ".join(f"line {i}: the cat {i % 7} sat on mat {i * 3}." for i in range(3000)))
        flags = [f"--teacher={teacher}", f"--student={student}", f"--data={corpus}", "--context-length=32"]
        flags += [f"--epochs={epochs}", f"--batch-size={batch_size}", f"--train-size={train_size}"]
        flags += ["--objective=token", "--no-lm-chunked", "--seed=0"]
        return _throughput(flags, devices, batch_size, "tiny llama (fsdp)", ("--shard=full",))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="digits")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--train-size", type=int, default=1024)
    ap.add_argument("--shard", choices=("none", "full"), default="none", help="full: FSDP on a tiny Llama pair")
    a = ap.parse_args()
    if a.shard == "full":
        print(fsdp_line(fsdp_throughput(a.devices)))
        return
    r = ddp_throughput(a.pair, a.devices, a.epochs, a.batch_size, a.train_size)
    print(
        f"ddp {r['pair']}: 1 process {r['samples_per_s_1']:.0f} samples/s, {r['devices']} processes "
        f"{r['samples_per_s_n']:.0f} samples/s, ratio {r['ratio']:.2f}x "
        f"(wall {r['wall_s_1']:.1f} s vs {r['wall_s_n']:.1f} s; final val_acc "
        f"{r['final_val_acc_1']:.4f} vs {r['final_val_acc_n']:.4f})"
    )


def fsdp_line(r: dict) -> str:
    """The FSDP figures as one line."""
    return (
        f"fsdp {r['pair']}: 1 process {r['samples_per_s_1']:.0f} samples/s, {r['devices']} processes sharded "
        f"{r['samples_per_s_n']:.0f} samples/s, ratio {r['ratio']:.2f}x (wall {r['wall_s_1']:.1f} s vs "
        f"{r['wall_s_n']:.1f} s; final val_loss {r['final_val_loss_1']:.4f} vs {r['final_val_loss_n']:.4f})"
    )


if __name__ == "__main__":
    main()
