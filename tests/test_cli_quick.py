"""`python -m kdcore` in this process (kdcore.cli.main): distill and the runs commands on a toy pair.

The subprocess end-to-end test in test_cli.py is marked slow; this one keeps the CLI in the quick loop.
"""

import json

import pandas as pd
import pytest

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
    assert [e["epoch"] for e in shown["epochs"]] == [0, 1]  # before training, after epoch 1
    assert [r["id"] for r in _json(capsys, "runs", "compare", rid, "--json")["runs"]] == [rid]
    files = _json(capsys, "runs", "export", rid, "--out", str(tmp_path / "exp"), "--json")["files"]
    assert str(tmp_path / "exp" / "metrics_step.parquet") in files
    steps = pd.read_parquet(tmp_path / "exp" / "metrics_step.parquet")
    assert {"loss", "ce", "kl"} <= set(steps.columns) and len(steps) == 2  # 256 samples / 128 per batch


def test_a_command_on_a_missing_run_exits_2_naming_it(data_dir, capsys):
    assert main(["runs", "show", "no-such-run", "--json"]) == 2
    assert "no-such-run" in json.loads(capsys.readouterr().out)["error"]


# ---- the pair's recipe fills what the user does not set ------------------------------------------------


@pytest.fixture
def recipe_pairs(monkeypatch):
    """A registry holding the toy pair twice: 'toyr' with a recipe (1 step a run), 'toyn' without one."""
    from kdcore import pair_registry
    from kdcore.jobs.recipes import Recipe
    from tests.helpers.toys import toy_pair

    monkeypatch.setattr(pair_registry, "_REGISTRY", {})
    monkeypatch.setattr(pair_registry, "_DISCOVERY", {"done": True, "found": 1, "errors": []})
    recipe = Recipe(
        objective="kd",
        temperature=2.0,
        lam=0.5,
        lr=2e-2,
        schedule="cosine",
        epochs=1,
        train_size=128,
        batch_size=128,
        teacher_cache=False,
        measured="made up for the test",
    )
    pair_registry.register_pair("toyr", toy_pair, recipe=recipe, description="toy with a recipe")
    pair_registry.register_pair("toyn", toy_pair, description="toy without a recipe")
    return recipe


def _config(rid: str) -> dict:
    from kdcore.jobs import RunStore

    return RunStore().get_run(rid)["config"]


def test_the_recipe_fills_every_field_not_set(data_dir, capsys, recipe_pairs):
    out = _json(capsys, "distill", "--pair", "toyr", "--val-size", "64", "--json")
    assert out["state"] == "completed", out["error"]
    expected = {k: v for k, v in recipe_pairs.settings().items()}
    assert out["recipe_fields"] == expected
    cfg = _config(out["run_id"])
    assert {k: cfg[k] for k in expected} == expected


def test_fields_set_by_flag_param_or_config_file_are_kept(data_dir, capsys, recipe_pairs, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("batch_size: 64\nschedule: constant\nparams: {lam: 0.7}\n")
    out = _json(
        capsys,
        "distill",
        "--config",
        str(job),
        "--pair",
        "toyr",
        "--lr",
        "0.05",
        "--param",
        "temperature=3",
        "--no-teacher-cache",
        "--val-size",
        "64",
        "--json",
    )
    assert out["state"] == "completed", out["error"]
    assert sorted(out["recipe_fields"]) == ["epochs", "objective", "train_size"]
    cfg = _config(out["run_id"])
    assert (cfg["batch_size"], cfg["schedule"], cfg["lr"]) == (64, "constant", 0.05)
    assert cfg["params"] == {"lam": 0.7, "temperature": 3} and cfg["temperature"] is None and cfg["lam"] is None
    assert (cfg["epochs"], cfg["train_size"]) == (1, 128)


def test_the_student_alone_gets_the_budget_but_not_t_or_lambda(data_dir, capsys, recipe_pairs):
    out = _json(capsys, "distill", "--pair", "toyr", "--objective", "ce", "--val-size", "64", "--json")
    assert sorted(out["recipe_fields"]) == ["batch_size", "epochs", "lr", "schedule", "train_size"]
    cfg = _config(out["run_id"])
    assert cfg["temperature"] is None and cfg["lam"] is None and cfg["lr"] == 2e-2


def test_a_pair_without_a_recipe_runs_on_the_defaults(data_dir, capsys, recipe_pairs):
    from kdcore.jobs import JobConfig

    defaults = JobConfig().to_dict()
    for pair in ("toyn", TOY):
        out = _json(
            capsys, "distill", "--pair", pair, "--epochs", "1", "--batch-size", "128", "--val-size", "64", "--json"
        )
        assert out["recipe_fields"] == {}
        cfg = _config(out["run_id"])
        assert {
            k: cfg[k] for k in ("objective", "lr", "schedule", "train_size", "temperature", "lam", "teacher_cache")
        } == {
            k: defaults[k] for k in ("objective", "lr", "schedule", "train_size", "temperature", "lam", "teacher_cache")
        }


def test_the_recipe_fields_are_printed_and_the_help_says_so(data_dir, capsys, recipe_pairs):
    from kdcore.cli import build_parser

    capsys.readouterr()
    assert main(["distill", "--pair", "toyr", "--epochs", "1", "--val-size", "64"]) == 0
    err = capsys.readouterr().err
    assert "from the toyr recipe: objective=kd, temperature=2.0, lam=0.5, lr=0.02, schedule=cosine" in err
    assert "epochs=" not in err.split("(set a field")[0]
    distill = build_parser()._subparsers._group_actions[0].choices["distill"]
    text = " ".join(distill.format_help().split())
    assert "come from the pair's recipe" in text and "recipe_fields" in text and "kdcore pairs" in text
    pairs = _json(capsys, "pairs", "--json")["pairs"]
    assert [p["name"] for p in pairs] == ["toyr", "toyn"] and pairs[1]["recipe"] is None
    assert pairs[0]["recipe"]["lr"] == 2e-2 and pairs[0]["recipe"]["measured"] == "made up for the test"
    main(["pairs"])
    assert "    recipe: kd, lr 0.02 cosine, 1 epochs" in capsys.readouterr().out
