"""Short completed runs of the digits pair for the tests that need a run in a store."""

from __future__ import annotations

from typing import Any

# one epoch of KD on 32 samples, no checkpoints: a second or so of CPU
QUICK = {
    "pair": "digits",
    "objective": "kd",
    "epochs": 1,
    "train_size": 32,
    "batch_size": 32,
    "val_size": 32,
    "probe_size": 16,
    "checkpoints": 0,
}


def digits_run(store: Any, **fields: Any) -> Any:
    """Run QUICK with `fields` overriding it into `store` (a RunStore); the run must complete."""
    from kdcore.jobs import JobConfig, run_job

    res = run_job(JobConfig(**{**QUICK, **fields}), store=store)
    assert res.state == "completed", res.error
    return res
