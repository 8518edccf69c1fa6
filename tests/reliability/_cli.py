"""Helpers of the reliability tests: `python -m kdcore` in a subprocess, and tiny job configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.toys import TOY

ROOT = Path(__file__).resolve().parents[2]
TINY = {"pair": TOY, "objective": "kd", "epochs": 1, "batch_size": 128, "val_size": 64, "probe_size": 16}


def env(home: Path) -> dict:
    before = os.environ.get("PYTHONPATH")
    path = os.pathsep.join([str(ROOT)] + ([before] if before else []))
    return dict(os.environ, KDWB_HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=path)


def cli(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m kdcore ARGS` to the end (cwd the worktree, the worktree on PYTHONPATH)."""
    return subprocess.run(
        [sys.executable, "-m", "kdcore", *args],
        cwd=ROOT,
        env=env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str, home: Path) -> subprocess.Popen:
    """Start `python -m kdcore ARGS` without waiting (stdout/stderr piped, text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "kdcore", *args],
        cwd=ROOT,
        env=env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_config(path: Path, **fields: object) -> Path:
    """A YAML job config: the tiny toy job with `fields` on top."""
    import yaml

    path.write_text(yaml.safe_dump({**TINY, **fields}))
    return path
