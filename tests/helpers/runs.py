"""Short completed runs of the digits pair for the tests that need a run in a store, two-step jobs on a tiny
Llama pair, and a run cancelled and resumed."""

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


def llama_job(dirs: tuple, **fields: Any) -> Any:
    """A JobConfig of two steps in one epoch on a Llama pair's (teacher_dir, student_dir, corpus) as
    tests/helpers/hf_pairs.py's llama_pair_with_corpus makes them; `fields` add to it or override it."""
    from kdcore.jobs import JobConfig

    teacher, student, data = dirs
    paths = {"teacher": str(teacher), "student": str(student), "data": str(data)}
    return JobConfig(**{**paths, "max_steps": 2, "epochs": 1, **fields})


def cancel_and_resume(cfg: Any, store: Any, monkeypatch: Any, *, epoch: int, steps: int) -> tuple[Any, Any, Any]:
    """(full, part, resumed): `cfg` run to its end in `store`; run again and cancelled after `steps` steps of
    epoch `epoch`; that run resumed (run_id part.run_id) from its resume state, saved here at every epoch end."""
    import kdcore.jobs.job as job
    from kdcore.jobs import run_job

    monkeypatch.setattr(job, "_RESUME_EVERY_S", 0.0)
    full = run_job(cfg, store=store)
    seen = {"n": 0}

    def count(ev: dict) -> None:
        seen["n"] += ev["event"] == "step" and ev["epoch"] == epoch

    part = run_job(cfg, store=store, callback=count, cancel=lambda: seen["n"] >= steps)
    assert part.state == "cancelled", part.error
    resumed = run_job(cfg, store=store, run_id=part.run_id, resume=True)
    return full, part, resumed
