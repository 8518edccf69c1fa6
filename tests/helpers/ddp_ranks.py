"""Workers for the data-parallel tests: each spawned process is one rank (torch.multiprocessing.spawn)."""

import json
import os


def rank_main(rank: int, world: int, port: int, config: dict, out: str, cancel_after: int | None) -> None:
    """Run `config` as rank `rank` of `world` (gloo, localhost:port); rank 0 writes its RunResult to `out`."""
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
    result = run_distributed(
        JobConfig(**config), env=env, store=RunStore() if rank == 0 else None, callback=on_event, cancel=cancel
    )
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"run_id": result.run_id, "state": result.state, "metrics": result.metrics}, f)
