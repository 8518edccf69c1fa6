"""`python -m kdcore distill --devices N ...`: start the job under torchrun with N processes.

torchrun_command(["distill", "--pair", "digits", "--devices", "2"], 2)
# [python, -m, torch.distributed.run, --standalone, --nproc-per-node, 2, -m, kdcore, distill, --pair, digits]
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch


def check_devices(n: int, device: str) -> None:
    """Refuse N processes that this machine cannot give each a device (a GPU each, or a CPU core each)."""
    if n < 1:
        raise ValueError(f"--devices must be 1 or more; got {n}.")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and n > torch.cuda.device_count():
        raise ValueError(
            f"--devices {n} asks for {n} GPUs, but this machine has {torch.cuda.device_count()}. "
            f"Use --devices {max(1, torch.cuda.device_count())} or fewer, or --device cpu."
        )
    cores = os.cpu_count() or 1
    if not cuda and n > cores:
        raise ValueError(
            f"--devices {n} asks for {n} CPU processes, but this machine has {cores} CPU cores. "
            f"Use --devices {cores} or fewer."
        )


def without_devices(argv: list[str]) -> list[str]:
    """The command line with its --devices flag (and value) removed."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--devices":
            skip = True
        elif not arg.startswith("--devices="):
            out.append(arg)
    return out


def torchrun_command(argv: list[str], n: int) -> list[str]:
    """The torchrun command that runs `python -m kdcore <argv>` (without --devices) in n processes."""
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
    return [*run, "-m", "kdcore", *without_devices(argv)]


def launch(argv: list[str], n: int) -> int:
    """Run the command under torchrun (OMP_NUM_THREADS=1 unless set) and return its exit status."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(torchrun_command(argv, n), env=env)
