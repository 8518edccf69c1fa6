"""One job over many processes (kdcore/jobs/distributed.py): 2 gloo ranks train like one process on the
same global batch, a 2-process run resumes with 1 process, bad input is refused."""

import json
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp

from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.distributed import check_distributable, shard_bounds, torchrun_env
from kdcore.jobs.prepare import prepare_run
from tests.helpers.ddp_ranks import rank_main
from tests.helpers.toys import TOY

# 256 toy samples, batch 48: 6 steps an epoch, the last one of 16 samples (unequal slices: 8 and 8; 24 and 24)
CFG = dict(pair=TOY, objective="kd", epochs=3, batch_size=48, val_size=64, probe_size=32, lr=0.01, seed=3)
TOL = 1e-4  # relative: the two ranks' gradient sums differ from one process's only in float32 rounding order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_ranks(tmp_path, config: dict, cancel_after: int | None = None) -> dict:
    out = tmp_path / "rank0.json"
    mp.spawn(rank_main, args=(2, _free_port(), config, str(out), cancel_after), nprocs=2, join=True)
    return json.loads(out.read_text())


def _same_metrics(a: dict, b: dict) -> None:
    for key in ("final_val_loss", "final_train_loss"):
        assert a[key] == pytest.approx(b[key], rel=TOL), key
    assert a["final_val_acc"] == pytest.approx(b["final_val_acc"], abs=1.5 / 64)  # at most one sample flips
    assert a["steps"] == b["steps"] == 18


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_resume_with_one(data_dir, tmp_path):
    one = run_job(JobConfig(**CFG), store=RunStore())
    two = _two_ranks(tmp_path, CFG)
    assert two["state"] == "completed"
    _same_metrics(two["metrics"], one.metrics)
    store = RunStore()
    ours, theirs = store.metrics(two["run_id"], "step"), store.metrics(one.run_id, "step")
    assert len(ours) == len(theirs) == 18  # rank 0 logged each step's loss over the global batch
    np.testing.assert_allclose(ours["loss"].to_numpy(), theirs["loss"].to_numpy(), rtol=TOL)
    # stopped after epoch 1 by 2 processes, finished by 1: the same end as the uninterrupted run
    part = _two_ranks(tmp_path, CFG, cancel_after=6)
    assert part["state"] == "cancelled"
    resumed = run_job(JobConfig(**CFG), store=store, run_id=part["run_id"], resume=True)
    assert resumed.state == "completed" and not resumed.notices  # it continued from the resume state
    _same_metrics(resumed.metrics, one.metrics)


def test_shard_bounds_are_numpy_array_split():
    for n in (1, 5, 16, 48, 49):
        for world in (1, 2, 3, 4):
            if world > n:
                continue
            expect = [(int(p[0]), int(p[-1]) + 1) for p in np.array_split(np.arange(n), world)]
            assert [shard_bounds(n, r, world) for r in range(world)] == expect


def test_torchrun_environment_is_read_and_checked():
    assert torchrun_env({}) is None
    assert torchrun_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None
    env = torchrun_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert env is not None and (env.rank, env.world_size, env.local_rank, env.main) == (3, 4, 1, False)
    with pytest.raises(ValueError, match="RANK must lie in"):
        torchrun_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="must be integers"):
        torchrun_env({"WORLD_SIZE": "two"})


def test_steps_smaller_than_the_ranks_and_own_procedures_are_refused(data_dir):
    cfg = JobConfig(**{**CFG, "batch_size": 84})  # 256 = 3 × 84 + 4: the last step has 4 samples
    check_distributable(cfg, prepare_run(cfg), 4)
    with pytest.raises(ValueError, match="at least one sample per step.*only 4"):
        check_distributable(cfg, prepare_run(cfg), 5)
    chain = JobConfig(**{**CFG, "objective": "takd"})
    with pytest.raises(ValueError, match="one process"):
        check_distributable(chain, prepare_run(chain), 2)
