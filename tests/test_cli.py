"""`python -m kdcore`: distill, runs list/show/compare/export, protocol — end to end in subprocesses."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from tests.helpers.toys import TOY

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, home):
    env = dict(os.environ, KDWB_HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "kdcore", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    home = tmp_path / "kdwb"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"pair: '{TOY}'\nobjective: kd\nepochs: 1\nbatch_size: 128\nval_size: 64\nprobe_size: 16\n")
    p = _cli("distill", "--config", str(cfg), "--temperature", "2", "--json", home=home)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["state"] == "completed" and out["metrics"]["final_val_acc"] >= 0
    rid = out["run_id"]
    p = _cli("distill", "--config", str(cfg), "--objective", "dkd", "--seed", "1", home=home)
    assert p.returncode == 0 and p.stdout.startswith("run ") and "step 2/2" in p.stderr
    rid2 = p.stdout.split()[1]
    listed = json.loads(_cli("runs", "list", "--json", home=home).stdout)["runs"]
    assert {r["id"] for r in listed} == {rid, rid2}
    shown = json.loads(_cli("runs", "show", rid, "--json", home=home).stdout)
    assert shown["run"]["config"]["temperature"] == 2.0 and shown["run"]["versions"]["torch"]
    assert len(shown["epochs"]) >= 1
    cmp_ = json.loads(_cli("runs", "compare", rid, rid2, "--json", home=home).stdout)["runs"]
    assert [r["objective"] for r in cmp_] == ["kd", "dkd"]
    p = _cli("runs", "export", rid, "--out", str(tmp_path / "exp"), home=home)
    assert p.returncode == 0, p.stderr
    steps = pd.read_parquet(tmp_path / "exp" / "metrics_step.parquet")
    assert {"loss", "ce", "kl"} <= set(steps.columns) and len(steps) == 2
    assert load_file(str(tmp_path / "exp" / "student.safetensors"))
    p = _cli("protocol", "--config", str(cfg), "--temperatures", "4", "--seeds", "0,1", "--json", home=home)
    assert p.returncode == 0, p.stderr
    table = json.loads(p.stdout)["table"]
    assert [r["variant"] for r in table] == ["baseline (student alone)", "kd T=4"] and table[1]["n_seeds"] == 2


@pytest.mark.parametrize("args, needle", [
    (("distill", "--pair", TOY, "--lam", "2", "--epochs", "0", "--json"), "'epochs'"),
    (("distill", "--pair", TOY, "--objective", "token", "--json"), "causal language models"),
    (("runs", "show", "nope", "--json"), "no run with id"),
])
def test_cli_bad_input_exits_2_with_the_reason(tmp_path, args, needle):
    p = _cli(*args, home=tmp_path / "kdwb")
    assert p.returncode == 2
    out = json.loads(p.stdout)
    assert needle in out["error"]
    if "'epochs'" in needle:
        assert len(out["problems"]) == 2
