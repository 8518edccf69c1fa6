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


def _cli(*args, home, path=()):
    env = dict(os.environ, KDWB_HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), *path]))
    return subprocess.run(
        [sys.executable, "-m", "kdcore", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


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
    assert shown["run"]["total_steps"] == 2 and shown["run"]["step"] == 2  # 256 samples, batches of 128
    assert "total_steps: 2" in _cli("runs", "show", rid, home=home).stdout
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


@pytest.mark.parametrize(
    "args, needle",
    [
        (("distill", "--pair", TOY, "--lam", "2", "--epochs", "0", "--json"), "'epochs'"),
        (("distill", "--pair", TOY, "--objective", "token", "--json"), "causal language models"),
        (("runs", "show", "nope", "--json"), "no run with id"),
        (("distill", "--pair", TOY, "--objective", "dkdd", "--json"), "Did you mean 'dkd'?"),
        (("distill", "--pair", TOY, "--objective", "dkd", "--param", "alpha=-1", "--json"), "[0, inf); got -1"),
    ],
)
def test_cli_bad_input_exits_2_with_the_reason(tmp_path, args, needle):
    p = _cli(*args, home=tmp_path / "kdwb")
    assert p.returncode == 2
    out = json.loads(p.stdout)
    assert needle in out["error"]
    if "'epochs'" in needle:
        assert len(out["problems"]) == 2


def test_cli_methods_lists_the_table(tmp_path):
    from kdcore.methods import all_methods

    p = _cli("methods", "--json", home=tmp_path / "kdwb")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["methods"]
    assert [r["name"] for r in rows] == [m.name for m in all_methods()]
    at = next(r for r in rows if r["name"] == "at")
    assert at["aliases"] == ["attention_transfer"] and at["tasks"] == ["classification"]
    assert at["loss"] == "kdcore.losses:attention_transfer_loss" and at["section"] == "METHODS.md §7"
    assert at["params"][1] == {
        "name": "p",
        "kind": "float",
        "default": 2.0,
        "range": "a number in (0, inf)",
        "required": False,
        "shared": False,
        "help": "exponent p of the attention map mean_c |F_c|^p",
    }
    text = _cli("methods", home=tmp_path / "kdwb").stdout
    assert "    --param beta: a number in [0, inf) (default 8.0) — weight β of the non-target term NCKD" in text
    assert "a method of the table: kd (hinton), dkd," in _cli("distill", "--help", home=tmp_path / "kdwb").stdout


def test_an_unknown_pair_names_the_registered_ones(tmp_path):
    """The sample pairs reach the CLI through their entry point (a dist-info as `pip install -e .`
    leaves one); kdcore itself never names them. (Without any entry point the message says to
    install: tests/test_pairs.py.)"""
    info = tmp_path / "site" / "kd_workbench-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kd-workbench\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[kdworkbench.pairs]\nsample_models = sample_models:register_pairs\n")
    p = _cli("distill", "--pair", "digts", "--json", home=tmp_path / "kdwb", path=[str(tmp_path / "site")])
    assert p.returncode == 2
    msg = json.loads(p.stdout)["error"]
    assert "Registered pairs: digits, shapes, shapes_multilabel, tinylang." in msg and "Did you mean 'digits'?" in msg
    assert "pip install" not in msg


def test_runs_has_one_handler_per_action():
    from kdcore.cli import RUNS_ACTIONS, build_parser

    runs = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "runs")[1]
    action = next(a for a in runs._actions if a.dest == "action")
    assert list(action.choices) == list(RUNS_ACTIONS) and all(callable(f) for f in RUNS_ACTIONS.values())
    assert len(set(RUNS_ACTIONS.values())) == len(RUNS_ACTIONS)
