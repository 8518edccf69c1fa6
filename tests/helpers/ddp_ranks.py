"""Workers for the data-parallel tests: each spawned process is one rank (torch.multiprocessing.spawn)."""

import json
import os
import socket
import sys
import types


def rank_main(
    rank: int, world: int, port: int, config: dict, out: str, cancel_after: int | None, run_id: str | None = None
) -> None:
    """Run `config` as rank `rank` of `world` (gloo, localhost:port); rank 0 writes its RunResult to `out`.
    With `run_id`: resume that run."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch

    torch.set_num_threads(1)
    from kdcore.jobs import runner
    from kdcore.jobs.config import JobConfig
    from kdcore.jobs.distributed import DistEnv, run_distributed
    from kdcore.jobs.store import RunStore

    runner._RESUME_EVERY_S = 0.0  # save the resume state at every epoch end
    seen = {"step": 0}

    def on_event(ev: dict) -> None:
        seen["step"] = ev["step"]

    def cancel() -> bool:
        return cancel_after is not None and seen["step"] >= cancel_after

    env = DistEnv(rank, world, rank)
    store = RunStore() if rank == 0 else None
    resume = run_id is not None
    result = run_distributed(
        JobConfig(**config), env=env, store=store, run_id=run_id, resume=resume, callback=on_event, cancel=cancel
    )
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"run_id": result.run_id, "state": result.state, "metrics": result.metrics}, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_ranks(tmp_path, config: dict, cancel_after: int | None = None, run_id: str | None = None) -> dict:
    """Run `config` as 2 gloo ranks (spawned processes; resuming `run_id` if given); rank 0's run_id, state
    and metrics."""
    import torch.multiprocessing as mp

    out = tmp_path / "rank0.json"
    # spawn re-runs the parent's __main__ file in each child; inside a pytest process an earlier test (Streamlit's
    # AppTest) can leave a generated script there, so the children get a bare __main__ (rank_main is importable)
    bare = types.ModuleType("__main__")
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = bare
    try:
        mp.spawn(rank_main, args=(2, _free_port(), config, str(out), cancel_after, run_id), nprocs=2, join=True)
    finally:
        sys.modules["__main__"] = saved
    return json.loads(out.read_text())
