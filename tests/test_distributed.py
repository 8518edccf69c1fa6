"""One job over many processes (kdcore/jobs/distributed.py): 2 gloo ranks train like one process on the
same global batch, a 2-process run resumes with 1 process, bad input is refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, distributed, run_job
from kdcore.jobs.data_parallel import DistEnv, shard_bounds
from kdcore.jobs.distributed import check_distributable, torchrun_env
from kdcore.jobs.launch import torchrun_command
from kdcore.jobs.prepare import prepare_run
from tests.helpers.ddp_ranks import ROOT, two_ranks
from tests.helpers.toys import TOY

# 256 toy samples, batch 49: 6 steps an epoch, the last of 11 samples; the ranks take unequal slices (25|24, 6|5)
CFG = dict(pair=TOY, objective="kd", epochs=3, batch_size=49, val_size=64, probe_size=32, lr=0.01, seed=3)
TOL = 1e-4  # relative: the two ranks' gradient sums differ from one process's only in float32 rounding order


def _same_metrics(a: dict, b: dict) -> None:
    for key in ("final_val_loss", "final_train_loss"):
        assert a[key] == pytest.approx(b[key], rel=TOL), key
    assert a["final_val_acc"] == pytest.approx(b["final_val_acc"], abs=1.5 / 64)  # at most one sample flips
    assert a["steps"] == b["steps"] == 18


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_resume_with_one(data_dir, tmp_path):
    """2 ranks train epochs 1-2 (then a cancel), 1 process finishes epoch 3: the same steps' losses, the
    same epoch-2 metrics and the same end as one process on its own."""
    one = run_job(JobConfig(**CFG), store=RunStore())
    part = two_ranks(tmp_path, CFG, cancel_after=12)
    assert part["state"] == "cancelled" and part["metrics"]["steps"] == 12
    store = RunStore()
    ours, theirs = store.metrics(part["run_id"], "step"), store.metrics(one.run_id, "step")
    assert len(ours) == 12 and len(theirs) == 18  # rank 0 logged each step's loss over the global batch
    np.testing.assert_allclose(ours["loss"].to_numpy(), theirs["loss"].to_numpy()[:12], rtol=TOL)
    e_ours, e_theirs = store.metrics(part["run_id"], "epoch"), store.metrics(one.run_id, "epoch")
    for key in ("val_loss", "train_loss"):  # epoch 2, the last one the 2 processes trained
        assert e_ours[key].iloc[2] == pytest.approx(e_theirs[key].iloc[2], rel=TOL), key
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


def _flags(tmp_path, config: dict) -> list[str]:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(config))
    return ["--config", str(path)]


@pytest.mark.slow
def test_cli_devices_2_runs_the_job_under_torchrun_like_one_process(data_dir, tmp_path, capfd):
    one = run_job(JobConfig(**CFG), store=RunStore())
    capfd.readouterr()
    assert main(["distill", *_flags(tmp_path, CFG), "--devices", "2", "--json"]) == 0
    out = capfd.readouterr().out.strip().splitlines()
    got = json.loads(out[-1])  # rank 0's line; the other rank prints nothing
    assert got["state"] == "completed" and len(out) == 1
    _same_metrics(got["metrics"], one.metrics)
    assert RunStore().get_run(got["run_id"])["state"] == "completed"


def test_process_group_meets_at_a_barrier_on_a_normal_exit_only(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: calls.append("init"))
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    env = DistEnv(1, 2, 1)
    with distributed.process_group(env, "cpu"):
        calls.append("job")
    assert calls == ["init", "job", "barrier", "destroy"]
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"), distributed.process_group(env, "cpu"):
        raise RuntimeError("boom")  # the other ranks may never reach a barrier: none is waited for
    assert calls == ["init", "destroy"]


@pytest.mark.slow
def test_no_gloo_worker_outlives_the_process_group(data_dir, tmp_path):
    """After a job, destroying the group stops its gloo workers: a worker left running when the interpreter
    shuts down aborts the process ("terminate called without an active exception"), which failed
    completed runs. The optimizer step imports torch._dynamo; imported while the group was up, it kept the
    group alive (process_group now imports it first)."""
    config = tmp_path / "job.json"
    config.write_text(json.dumps({**CFG, "epochs": 1}))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command = [*torchrun, "-m", "tests.helpers.gloo_exit", str(config), str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["state"] == "completed"
        assert report["threads_up"] > 0, "no gloo worker thread seen while the group was up: the check is blind"
        assert report["threads_after"] == 0, report


@pytest.mark.parametrize(
    ("devices", "device", "message"),
    [("0", "cpu", "--devices must be 1 or more; got 0"), ("100000", "cpu", "CPU cores")]
    + ([] if torch.cuda.is_available() else [("2", "cuda", "asks for 2 GPUs, but this machine has 0")]),
)
def test_cli_devices_beyond_the_machine_are_refused(data_dir, tmp_path, capsys, devices, device, message):
    code = main(["distill", *_flags(tmp_path, CFG), "--device", device, "--devices", devices])
    assert code == 2 and message in capsys.readouterr().err
    assert len(RunStore().list_runs()) == 0  # nothing started


def test_torchrun_command_drops_devices():
    cmd = torchrun_command(["distill", "--pair", "digits", "--devices", "2", "--devices=3", "--json"], 2)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert cmd[5:] == ["-m", "kdcore", "distill", "--pair", "digits", "--json"]
