"""The distillation runner: trains a fresh student against a frozen teacher, records every loss
component, and reports through a callback and into the run store.

    result = run_job(JobConfig(pair="digits", objective="kd", epochs=3))

The teacher stays in eval mode and builds no graph (its outputs come from `torch.no_grad()`);
the runner records evidence of both (metrics `teacher_training`, `teacher_logits_grad`). The
student is a clone of `pair.student`, re-initialised under config.seed (student_init "reinit", the
default of registered pairs) or keeping its weights ("pretrained", "from_teacher"): the pair's own
adapters are never trained or mutated. Same config and seed give identical metrics on CPU: the data order of epoch e
comes from a generator seeded by (seed, e), dropout from the global generator seeded once and
saved with each epoch's resume state, so a resumed run continues exactly where it stopped.

Memory and speed options (performance.py: precision, grad_accum, grad_checkpointing,
attn_implementation; lm_step.py: the chunked token objective; lm_eval.py: streamed causal-LM
validation and probes) act on the job's own copies only.

Pieces live beside it: job.py (the job class `_Job` that trains, `RunResult`; `job_class` here picks it
or a strategy's subclass), prepare.py (checks and the step plan, `prepare_run` -> `PreparedRun`),
resolve.py (pair and device), run_options.py (`RunOptions`: run_job's keyword arguments as one bundle, which
run_with_job and the procedures take), resume_state.py (optimizer and resume file), evaluation.py
(validation, probes, eval scope), reporting.py (metric buffer, callback, cancel, heartbeat),
schedules.py (schedules on the loss, logged as `sched_*`), curriculum_pool.py (a curriculum's paced pool).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from kdcore.cka import linear_cka
from kdcore.jobs.byot_job import ByotJob
from kdcore.jobs.config import JobConfig, with_source_label
from kdcore.jobs.education_job import EducationJob
from kdcore.jobs.job import RunResult, _Job, lr_factor
from kdcore.jobs.lease import Lease
from kdcore.jobs.onpolicy_checks import ONPOLICY
from kdcore.jobs.onpolicy_job import OnPolicyJob
from kdcore.jobs.perf_options import SHARD_NEEDS_PROCESSES
from kdcore.jobs.prepare import PreparedRun, prepare_run
from kdcore.jobs.procedures import procedure_name, run_procedure
from kdcore.jobs.reporting import Callback, Cancel, JobCancelled, JobInterrupted, Reporter
from kdcore.jobs.resolve import (
    device_label,
    hostname,
    library_versions,
    resolve_device,
    resolve_pair,
)
from kdcore.jobs.run_options import RunOptions
from kdcore.jobs.sequence_job import sequence_job_class
from kdcore.jobs.store import RunStore, StoreError
from kdcore.methods import canonical_name
from kdcore.pairs import Pair

__all__ = [
    "JobCancelled",
    "PreparedRun",
    "RunResult",
    "library_versions",
    "linear_cka",
    "lr_factor",
    "prepare_run",
    "resolve_device",
    "resolve_pair",
    "run_job",
]


def job_class(objective: str) -> type[_Job]:
    """The class that trains a job of this objective: the runner's _Job, or a strategy's own."""
    name = canonical_name(objective)
    if name == "byot":  # methods/13 §13.4b: auxiliary exits on the student
        return ByotJob
    if name == "education":  # methods/13 §13.5: grade by grade
        return EducationJob
    if name in ONPOLICY:  # methods/14: each step's sequences chosen by the method
        return OnPolicyJob
    if name in ("seqkd", "hybrid"):  # methods/15: trained on the teacher's generated completions
        return sequence_job_class(name)
    return _Job


def run_job(
    config: JobConfig,
    *,
    store: RunStore | None = None,
    run_id: str | None = None,
    callback: Callback | None = None,
    cancel: Cancel | None = None,
    pair: Pair | None = None,
    resume: bool = False,
    use_store: bool = True,
) -> RunResult:
    """Run a distillation job to the end, a cancel, or a failure.

    config:   the job (validated first: a ConfigError lists every problem, before anything runs)
    store:    the run store (default: RunStore() in $KDWB_HOME); `use_store=False` runs without one
    run_id:   an existing run to execute (queued by the worker) or to resume (`resume=True`)
    callback: called with a dict per event: {"event": "start"|"step"|"epoch"|"checkpoint"|"end", ...}
    cancel:   a threading.Event or a callable; when set/true, the job stops at the next step
    pair:     a Pair to use instead of resolving `config.pair` (must be the pair that name loads)
    """
    if config.shard == "full" and not resume:  # a sharded run resumes in one process, whole (fsdp.py)
        raise ValueError(SHARD_NEEDS_PROCESSES)
    options = RunOptions(store, run_id, callback, cancel, pair, resume, use_store)
    if procedure_name(config):  # blockwise, pwkd, zskt: a whole training procedure (kdcore/jobs/procedures.py)
        return run_procedure(config, options)
    return run_with_job(
        lambda c, p, r, res: job_class(c.objective)(c, p, r, resume=res),  # _Job, or BYOT's / education's
        config,
        options,
    )


def run_with_job(
    make_job: Callable[[JobConfig, PreparedRun, Reporter, bool], Any],
    config: JobConfig,
    options: RunOptions,
    prep: PreparedRun | None = None,
) -> Any:
    """The run's frame (its row, lease, reporter, crash and Ctrl-C handling) around a job object built by
    `make_job(config, prep, reporter, resume)` whose run() returns the RunResult: run_job's, and the
    procedures' (blockwise, pwkd, zskt, weight distillation)."""
    config = with_source_label(config)
    prep = prep if prep is not None else prepare_run(config, options.pair)
    store, run_id = options.store, options.run_id
    if options.use_store and store is None:
        store = RunStore()
    lease: Lease | None = None
    if store is not None:
        run_id, lease = _open_run(config, prep, store, run_id)
    try:
        report = Reporter(
            store, run_id, options.callback, options.cancel, total_steps=prep.total_steps, epochs=config.epochs
        )
        try:
            job = make_job(config, prep, report, options.resume)
        except (Exception, KeyboardInterrupt) as exc:
            report.mark_crash(exc, 0, 0)
            raise
        return job.run()
    except KeyboardInterrupt as exc:
        if isinstance(exc, JobInterrupted):
            raise
        raise JobInterrupted(run_id) from exc
    finally:
        if lease is not None:
            lease.release()


def _open_run(config: JobConfig, prep: PreparedRun, store: RunStore, run_id: str | None) -> tuple[str, Lease]:
    """Create the run's row (or take over a queued/resumed one) under the run's lease (RunBusyError when
    another process trains it), and record what it runs on."""
    device, versions = device_label(prep.device), library_versions()
    if run_id is None:
        run_id = store.create_run(
            config,
            state="running",
            seed=config.seed,
            device=device,
            versions=versions,
            data_fingerprint=prep.fingerprint,
        )
        lease = store.acquire_lease(run_id)
    else:
        lease = store.acquire_lease(run_id)
        try:
            _check_startable(store, run_id)
        except BaseException:
            lease.release()
            raise
        store.update_run(
            run_id,
            state="running",
            error=None,
            cancel_requested=0,
            seed=config.seed,
            device=device,
            versions=versions,
            data_fingerprint=prep.fingerprint,
        )
    store.update_run(run_id, pid=os.getpid(), host=hostname(), heartbeat=time.time(), total_steps=prep.total_steps)
    return run_id, lease


def _check_startable(store: RunStore, run_id: str) -> None:
    """Under the lease: refuse a run that is completed, or that another live process took (a second
    resume that came after the first one finished)."""
    run = store.get_run(run_id)
    mine = run["pid"] == os.getpid() and run["host"] == hostname()
    if run["state"] == "completed" or (run["state"] == "running" and not mine and _owner_alive(run)):
        raise StoreError(
            f"Run {run_id} is {run['state']}: only queued, interrupted, cancelled or failed runs "
            f"can be started or resumed."
        )


def _owner_alive(run: dict) -> bool:
    from kdcore.jobs.store import _pid_alive

    return run["host"] != hostname() or _pid_alive(run["pid"])
