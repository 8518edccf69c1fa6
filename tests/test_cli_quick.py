"""`python -m kdcore` in this process (kdcore.cli.main): distill and the runs commands on a toy pair.

The subprocess end-to-end test in test_cli.py is marked slow; this one keeps the CLI in the quick loop.
"""
import json

import pandas as pd

from kdcore.cli import main
from tests.helpers.toys import TOY

FAST = ["--pair", TOY, "--epochs", "1", "--batch-size", "128", "--val-size", "64"]


def _json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_distill_then_list_show_compare_and_export(data_dir, capsys, tmp_path):
    out = _json(capsys, "distill", *FAST, "--temperature", "2", "--json")
    assert out["state"] == "completed" and 0 <= out["metrics"]["final_val_acc"] <= 1
    rid = out["run_id"]
    assert [r["id"] for r in _json(capsys, "runs", "list", "--json")["runs"]] == [rid]
    shown = _json(capsys, "runs", "show", rid, "--json")
    assert shown["run"]["config"]["temperature"] == 2.0 and shown["run"]["config"]["pair"] == TOY
    assert [e["epoch"] for e in shown["epochs"]] == [0, 1]                  # before training, after epoch 1
    assert [r["id"] for r in _json(capsys, "runs", "compare", rid, "--json")["runs"]] == [rid]
    files = _json(capsys, "runs", "export", rid, "--out", str(tmp_path / "exp"), "--json")["files"]
    assert str(tmp_path / "exp" / "metrics_step.parquet") in files
    steps = pd.read_parquet(tmp_path / "exp" / "metrics_step.parquet")
    assert {"loss", "ce", "kl"} <= set(steps.columns) and len(steps) == 2    # 256 samples / 128 per batch


def test_a_command_on_a_missing_run_exits_2_naming_it(data_dir, capsys):
    assert main(["runs", "show", "no-such-run", "--json"]) == 2
    assert "no-such-run" in json.loads(capsys.readouterr().out)["error"]
