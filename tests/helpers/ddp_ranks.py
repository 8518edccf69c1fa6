"""Workers for the data-parallel tests: each spawned process is one rank (torch.multiprocessing.spawn)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rank_main(
    rank: int, world: int, rendezvous: str, config: dict, out: str, cancel_after: int | None, run_id: str | None = None
) -> None:
    """Run `config` as rank `rank` of `world` (gloo, meeting through the file `rendezvous`); rank 0 writes its
    RunResult to `out`. With `run_id`: resume that run.

    The ranks meet through a file rather than a TCP port picked in advance: with the suite on several processes
    another test (Ray, an app server) can take that port before rank 0 binds it. run_distributed keeps a
    process group that is already up."""
    os.environ.update(OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    from kdcore.jobs import job
    from kdcore.jobs.config import JobConfig
    from kdcore.jobs.data_parallel import DistEnv
    from kdcore.jobs.distributed import before_process_group, run_distributed
    from kdcore.jobs.store import RunStore

    job._RESUME_EVERY_S = 0.0  # save the resume state at every epoch end
    seen = {"step": 0}

    def on_event(ev: dict) -> None:
        seen["step"] = ev["step"]

    def cancel() -> bool:
        return cancel_after is not None and seen["step"] >= cancel_after

    env = DistEnv(rank, world, rank)
    store = RunStore() if rank == 0 else None
    resume = run_id is not None
    before_process_group()
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        result = run_distributed(
            JobConfig(**config), env=env, store=store, run_id=run_id, resume=resume, callback=on_event, cancel=cancel
        )
        dist.barrier()  # leave together, as kdcore.jobs.distributed.process_group does
    finally:
        dist.destroy_process_group()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"run_id": result.run_id, "state": result.state, "metrics": result.metrics}, f)


def two_ranks(tmp_path, config: dict, cancel_after: int | None = None, run_id: str | None = None) -> dict:
    """Run `config` as 2 gloo ranks (resuming `run_id` if given); rank 0's run_id, state and metrics.

    The ranks are spawned by a fresh interpreter (`python -m tests.helpers.ddp_ranks SPEC`), not by the test
    process: a pytest process carries state from earlier tests (a generated __main__ left by Streamlit's
    AppTest, threads, signal handlers) that spawn would hand to the ranks."""
    out = tmp_path / "rank0.json"
    rendezvous = tmp_path / f"rendezvous-{run_id or 'new'}"  # a fresh file for each group (file:// needs one)
    spec = tmp_path / f"ranks-{run_id or 'new'}.json"
    spec.write_text(json.dumps([str(rendezvous), config, str(out), cancel_after, run_id]))
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.ddp_ranks", str(spec)],
        cwd=ROOT,  # `tests.helpers` is imported from the checkout's root
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"the 2 ranks failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(out.read_text())


def _spawn_two(spec_path: str) -> None:
    import torch.multiprocessing as mp

    rendezvous, config, out, cancel_after, run_id = json.loads(Path(spec_path).read_text())
    mp.spawn(rank_main, args=(2, rendezvous, config, out, cancel_after, run_id), nprocs=2, join=True)


if __name__ == "__main__":
    _spawn_two(sys.argv[1])
