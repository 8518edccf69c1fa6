"""A torchrun worker for test_distributed: a short job inside process_group, then the gloo worker threads
left once the group is destroyed (written to OUT_DIR/rank<R>.json).

    torchrun --standalone --nproc-per-node 2 -m tests.helpers.gloo_exit CONFIG.json OUT_DIR
"""

import json
import os
import sys
from pathlib import Path


def gloo_worker_threads() -> int:
    """This process's ProcessGroupGloo worker threads (Linux thread names)."""
    tasks = Path("/proc/self/task")
    return sum((t / "comm").read_text().strip() == "pt_gloo_runloop" for t in tasks.iterdir())


def main(config_path: str, out_dir: str) -> None:
    from kdcore.jobs import JobConfig, RunStore
    from kdcore.jobs.distributed import process_group, run_distributed, torchrun_env

    env = torchrun_env()
    assert env is not None, "run this under torchrun with 2 or more processes"
    config = JobConfig(**json.loads(Path(config_path).read_text()))
    with process_group(env, "cpu"):
        result = run_distributed(config, env=env, store=RunStore() if env.main else None)
        up = gloo_worker_threads()  # after the job: a worker names itself once it runs, not at once
    report = {"state": result.state, "threads_up": up, "threads_after": gloo_worker_threads()}
    Path(out_dir, f"rank{env.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1], sys.argv[2])
