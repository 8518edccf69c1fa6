"""One job over many processes: data-parallel training under torchrun (gloo on CPU, NCCL on CUDA).

    torchrun --standalone --nproc-per-node 2 -m kdcore distill --pair digits ...
    result = run_distributed(config, store=RunStore())   # inside each torchrun process

Every rank builds the same job (same seed, same data, same student) and trains its slice of each
step's global batch (data_parallel.py: DataParallelJob, the step and its all_reduce).

Only rank 0 opens the run in the store, validates, checkpoints and writes metrics; the others get the
run id by broadcast and write nothing. Cancels are agreed on by all ranks at each step. The resume
state is the plain student's, so a run resumes with any number of processes.

With `shard: "full"` the job is fsdp.ShardedJob: the same step with a Hugging Face student sharded by FSDP2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from kdcore.jobs.config import JobConfig, with_source_label
from kdcore.jobs.data_parallel import DataParallelJob, DistEnv
from kdcore.jobs.job import RunResult, _Job
from kdcore.jobs.prepare import PreparedRun, prepare_run
from kdcore.jobs.procedures import procedure_name
from kdcore.jobs.reporting import Callback, Cancel, JobCancelled, Reporter
from kdcore.jobs.runner import _open_run, job_class
from kdcore.jobs.store import RunStore, StoreError
from kdcore.pairs import Pair

TIMEOUT_S = 600  # a rank that waits this long on the others fails instead of hanging


def torchrun_env(environ: dict[str, str] | None = None) -> DistEnv | None:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK), or None outside torchrun or with one process."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        rank, world, local = int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError(
            f"torchrun's RANK, WORLD_SIZE and LOCAL_RANK must be integers; got RANK={env.get('RANK')!r}, "
            f"WORLD_SIZE={env.get('WORLD_SIZE')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}."
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"torchrun gave RANK={rank} with WORLD_SIZE={world}; RANK must lie in [0, WORLD_SIZE).")
    return None if world == 1 else DistEnv(rank, world, local)


def check_distributable(config: JobConfig, prep: PreparedRun, world: int) -> None:
    """Refuse what the data-parallel step cannot run: other job classes, and batches smaller than the ranks."""
    from kdcore.methods import get_method

    if procedure_name(config) or get_method(config.objective).chain or job_class(config.objective) is not _Job:
        raise ValueError(
            f"Objective {config.objective!r} runs its own training procedure, which does not run over several "
            f"processes; run it with one process (no --devices, no torchrun)."
        )
    n_train = prep.train.inputs.shape[0]
    last = n_train - (prep.steps_per_epoch - 1) * config.batch_size  # the epoch's last (maybe partial) batch
    if min(config.batch_size, last) < world:
        raise ValueError(
            f"Each of the {world} processes needs at least one sample per step, but a step has only "
            f"{min(config.batch_size, last)} (batch_size {config.batch_size}, {n_train} training samples). "
            f"Use fewer processes, or a batch_size and train_size that leave every step {world} or more samples."
        )


def before_process_group() -> None:
    """Call before init_process_group when you start the group yourself (process_group does it).

    It imports torch._dynamo now, not at the job's first optimizer step: imported while a gloo group is up,
    it keeps that group and its worker threads alive after destroy_process_group (torch 2.13), and a
    process whose gloo workers outlive the interpreter's shutdown can abort at exit ("terminate called
    without an active exception", SIGABRT), failing a run that had completed."""
    import torch._dynamo  # noqa: F401


@contextmanager
def process_group(env: DistEnv, device: str) -> Iterator[torch.device | None]:
    """The default process group for the job (NCCL on CUDA, gloo on CPU), destroyed on exit; yields the
    rank's CUDA device (None on CPU).

    On a normal exit the ranks meet at a barrier first, so no rank shuts down while a gloo worker still
    holds its last collective: with FSDP the group outlives destroy_process_group (torch's DTensor caches
    keep its mesh), and a worker that drops a Python-owned tensor during interpreter shutdown aborts the
    process. The barrier's own work holds no Python tensor."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    gpu = None
    if cuda:
        if env.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"Process {env.rank} wants GPU {env.local_rank}, but this machine has "
                f"{torch.cuda.device_count()} GPU(s). Start at most that many processes per machine."
            )
        gpu = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(gpu)
    initialised_here = not dist.is_initialized()
    if initialised_here:
        before_process_group()
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, timeout=timedelta(seconds=TIMEOUT_S))
    try:
        yield gpu
        if initialised_here:  # the ranks leave together (not after an error: the others may never get here)
            dist.barrier()
    finally:
        if initialised_here:
            dist.destroy_process_group()


class _RankReporter(Reporter):
    """A Reporter whose cancel is agreed on by all ranks (rank 0 asks its caller and the store)."""

    def __init__(self, *args: Any, env: DistEnv, comm_device: torch.device, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.env, self.comm_device = env, comm_device

    def check_cancel(self) -> None:
        wanted = 0.0
        if self.env.main:
            try:
                super().check_cancel()
            except JobCancelled:
                wanted = 1.0
        flag = torch.tensor([wanted], device=self.comm_device)
        dist.all_reduce(flag)
        if float(flag) > 0:
            raise JobCancelled()


def run_distributed(
    config: JobConfig,
    *,
    env: DistEnv | None = None,
    store: RunStore | None = None,
    run_id: str | None = None,
    callback: Callback | None = None,
    cancel: Cancel | None = None,
    pair: Pair | None = None,
    resume: bool = False,
) -> RunResult:
    """Run `config` as one rank of a data-parallel job (call it in every torchrun process).

    env:      this process's rank (default: torchrun's environment variables)
    store:    rank 0's run store (the default RunStore() there; other ranks never write); run_id, resume,
              callback, cancel: as in run_job, used by rank 0 (cancel is shared with all ranks at each step)
    """
    env = env or torchrun_env()
    if env is None:
        raise ValueError("run_distributed runs inside torchrun with WORLD_SIZE > 1; use run_job for one process.")
    with process_group(env, config.device) as gpu:
        config = with_source_label(replace(config, device="cuda") if gpu is not None else config)
        prep = prepare_run(config, pair)
        check_distributable(config, prep, env.world_size)
        job_type = _job_type(config, prep, env.world_size)
        comm = gpu if gpu is not None else torch.device("cpu")
        if env.main and store is None:
            store = RunStore()
        run_id, lease = _open_on_main(config, prep, store if env.main else None, run_id, comm)
        try:
            main_store, main_callback = (store, callback) if env.main else (None, None)
            report = _RankReporter(
                main_store,
                run_id,
                main_callback,
                cancel,
                total_steps=prep.total_steps,
                epochs=config.epochs,
                env=env,
                comm_device=comm,
            )
            return job_type(config, prep, report, env=env, resume=resume).run()
        finally:
            if lease is not None:
                lease.release()


def _job_type(config: JobConfig, prep: PreparedRun, world: int) -> type[DataParallelJob]:
    """DataParallelJob, or (shard "full") fsdp.ShardedJob after its checks."""
    if config.shard != "full":
        return DataParallelJob
    # imported here, one way (fsdp.py builds on data_parallel.py, not on this file): torch's FSDP2
    # modules take ~0.8 s to import, which every `kdcore distill` (torchrun_env) would pay otherwise
    from kdcore.jobs.fsdp import ShardedJob, check_shardable

    check_shardable(prep.pair.student, world)
    return ShardedJob


def _open_on_main(
    config: JobConfig, prep: PreparedRun, store: RunStore | None, run_id: str | None, comm: torch.device
) -> tuple[str | None, Any]:
    """Rank 0 opens the run (under its lease); every rank gets (run id, lease or None) or rank 0's error."""
    lease, error = None, None
    if store is not None:
        try:
            run_id, lease = _open_run(config, prep, store, run_id)
        except Exception as exc:  # sent to the other ranks, raised everywhere
            error = exc
    box: list[Any] = [(run_id, None if error is None else f"{type(error).__name__}: {error}")]
    dist.broadcast_object_list(box, src=0, device=comm)
    run_id, message = box[0]
    if error is not None:
        raise error
    if message is not None:
        raise StoreError(f"Rank 0 could not open the run: {message}")
    return run_id, lease
