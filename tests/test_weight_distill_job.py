"""Weight distillation as a method-table procedure (methods/14 §14.2, kdcore/jobs/weight_distill_job.py):
the default groups of the sample pairs, §14.2's stride rule where it fits (k = 2, mixing weights
recorded), the run end to end on digits from the API, the CLI and the worker, the pair's models
unchanged, and bad input refused before anything runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.weight_distill_groups import parse_groups, rule_groups, tensor_groups
from kdcore.jobs.weight_distill_job import check
from kdcore.validation import InvalidParameterError
from sample_models import load_pair
from tests.helpers.wd_pairs import DEEP_MLP, deep_mlp_pair

BASE = {"pair": "digits", "objective": "weight_distill", "epochs": 2, "train_size": 64, "val_size": 64,
        "batch_size": 32, "checkpoints": 0, "lr": 3e-3}  # fmt: skip


def _spread(n_t: int, n_s: int) -> list[int]:
    """rint(i·(L_t − 1)/(L_s − 1)) with numpy's round half to even (the layer-subset rule)."""
    return [0] if n_s == 1 else [int(np.rint(i * (n_t - 1) / (n_s - 1))) for i in range(n_s)]


@pytest.mark.parametrize(("name", "n_t"), [("digits", 3), ("shapes", 4)])
def test_the_sample_pairs_get_spread_groups_and_every_student_tensor_is_generated(name, n_t):
    pair = load_pair(name)
    t, s = pair.teacher.model, pair.student.model
    groups = rule_groups(t, s, "auto")  # stride does not fit: 3 -> 2 does not divide; 4 -> 2 mixes widths
    want = {f"conv{i + 1}": [f"conv{j + 1}"] for i, j in enumerate(_spread(n_t, 2))}
    assert groups == {**want, "head": ["head"]}
    tensors = tensor_groups(t, s, groups)
    assert set(tensors) == {n for n, _ in s.named_parameters()}
    assert tensors["conv2.0.weight"] == [f"{want['conv2'][0]}.0.weight"]
    assert check(JobConfig(**{**BASE, "pair": name})).groups == groups


def test_the_stride_rule_groups_k_teacher_layers_where_the_shapes_agree():
    pair = deep_mlp_pair()
    groups = rule_groups(pair.teacher.model, pair.student.model, "stride")
    assert groups == {"fc1": ["fc1", "fc2"], "fc2": ["fc3", "fc4"], "head": ["head"]}
    assert rule_groups(pair.teacher.model, pair.student.model, "auto") == groups
    assert parse_groups({"fc1": "fc1 + fc2", "head": "head"}) == {"fc1": ["fc1", "fc2"], "head": ["head"]}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    pair = load_pair("digits")
    before = {k: v.clone() for k, v in {**pair.student.model.state_dict(), **pair.teacher.model.state_dict()}.items()}
    store = RunStore(tmp_path_factory.mktemp("wd"))
    res = run_job(JobConfig(**BASE), store=store)
    return pair, before, store, res


def test_weight_distill_runs_on_digits_phase_by_phase_and_records_each_phase(digits_run):
    _, _, store, res = digits_run
    assert res.state == "completed", res.error
    epochs = store.metrics(res.run_id, "epoch")
    done = epochs[epochs["epoch"] > 0]
    assert done["wd_phase"].tolist() == [1.0, 2.0] and done["val_acc"].between(0, 1).all()
    wd = res.metrics["weight_distill"]
    assert [(p["phase"], p["start_epoch"], p["end_epoch"]) for p in wd["phases"]] == [(1, 1, 1), (2, 2, 2)]
    assert [p["val_acc"] for p in wd["phases"]] == done["val_acc"].tolist()
    assert wd["grouping"] == "auto" and wd["groups"] == {"conv1": ["conv1"], "conv2": ["conv3"], "head": ["head"]}
    assert wd["mix"] == {
        n: [1.0] for n in ("conv1.0.weight", "conv1.1.weight", "conv2.0.weight", "conv2.1.weight", "head.weight")
    }  # fmt: skip  (k = 1: c = 1)
    lr = store.metrics(res.run_id, "step")["lr"].tolist()  # 2 steps per phase; the schedule restarts per phase
    assert lr == [3e-3] * 4 and "ce_teacher" in store.metrics(res.run_id, "step").columns


def test_the_pairs_models_are_unchanged_and_the_teacher_gets_no_gradient(digits_run):
    pair, before, store, res = digits_run
    after = {**pair.student.model.state_dict(), **pair.teacher.model.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in pair.teacher.model.parameters())
    assert store.metrics(res.run_id, "epoch")["teacher_params_with_grad"].dropna().eq(0).all()


def test_phase_one_trains_the_generator_and_records_its_mixing_weights_k2(tmp_path):
    cfg = JobConfig(pair=DEEP_MLP, objective="weight_distill", epochs=3, batch_size=32, lr=1e-2, checkpoints=0,
                    params={"phase1_epochs": 2})  # fmt: skip
    store = RunStore(tmp_path)
    res = run_job(cfg, store=store)
    assert res.state == "completed", res.error
    wd = res.metrics["weight_distill"]
    assert wd["grouping"] == "auto" and wd["groups"]["fc1"] == ["fc1", "fc2"]
    assert set(wd["mix"]) == {"fc1.weight", "fc2.weight", "head.weight"} and len(wd["mix"]["fc1.weight"]) == 2
    epochs = store.metrics(res.run_id, "epoch")
    done = epochs[epochs["epoch"] > 0]
    assert done["wd_phase"].tolist() == [1.0, 1.0, 2.0]
    e1, e2 = done.iloc[0], done.iloc[1]
    c_end = [e2[f"wd_mix_fc1.weight_{j}"] for j in (0, 1)]  # the last phase-1 epoch = the switch
    np.testing.assert_allclose(c_end, wd["mix"]["fc1.weight"], rtol=1e-6)
    assert c_end != [e1[f"wd_mix_fc1.weight_{j}"] for j in (0, 1)]  # Λ, ω trained in phase 1
    assert np.isnan(done.iloc[2]["wd_mix_fc1.weight_0"])  # phase 2: no generator


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"epochs": 1}, "each at least one epoch"),
        ({"epochs": 3, "params": {"phase1_epochs": 3}}, "1 <= phase1_epochs < epochs"),
        ({"params": {"groups": {"conv9": "conv1"}}}, "the student has no module 'conv9'"),
        ({"params": {"groups": {"conv2": "conv2+conv3"}}}, "mixed shapes.*Name the groups"),
        ({"params": {"groups": {"conv2": "head"}}}, "has no tensor '0.weight'"),
        ({"params": {"grouping": "stride"}}, "stride grouping needs"),
        ({"pair": "tinylang"}, "classification"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path, extra, needle):
    store = RunStore(tmp_path)
    cfg = JobConfig(**{**BASE, **extra})
    with pytest.raises(InvalidParameterError, match=needle):
        run_job(cfg, store=store)
    assert len(store.list_runs()) == 0


def test_cli_distill_runs_weight_distill(data_dir, capsys):
    argv = ["distill", "--pair", "digits", "--objective", "weight_distill", "--epochs", "2", "--train-size", "32"]
    argv += ["--val-size", "32", "--batch-size", "32", "--param", "target=kd", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed" and [p["phase"] for p in out["metrics"]["weight_distill"]["phases"]] == [1, 2]


def test_a_queued_weight_distill_run_is_run_by_the_worker_as_the_procedure(tmp_path):
    from kdcore.jobs.worker import run_queued, submit

    store = RunStore(tmp_path)
    cfg = JobConfig(**{**BASE, "train_size": 32, "val_size": 32})
    rid = submit(cfg, store=store, start_worker=False)  # what the Distill form does
    run_queued(rid, store)
    run = store.get_run(rid)
    assert run["state"] == "completed", run["error"]
    assert run["summary"]["weight_distill"]["phase1_epochs"] == 1
    assert "wd_phase" in store.metrics(rid, "epoch").columns


def test_the_leaderboard_refuses_weight_distill_with_one_epoch_before_anything_runs(tmp_path):
    from kdcore.jobs.leaderboard import compare_methods

    store = RunStore(tmp_path)
    with pytest.raises(InvalidParameterError, match="weight_distill: .*each at least one epoch"):
        compare_methods("digits", ["weight_distill"], [0], base={"epochs": 1}, store=store)
    assert len(store.list_runs()) == 0


def test_cli_takes_explicit_groups(data_dir, capsys):
    groups = '{"conv1": "conv1", "conv2": "conv2", "head": "head"}'  # conv2 <- conv2: P_in, P_out shrink 16->12, 32->24
    argv = ["distill", "--pair", "digits", "--objective", "weight_distill", "--epochs", "2", "--train-size", "32"]
    argv += ["--val-size", "32", "--batch-size", "32", "--param", f"groups={groups}", "--json"]
    assert main(argv) == 0
    wd = json.loads(capsys.readouterr().out)["metrics"]["weight_distill"]
    assert wd["grouping"] == "explicit" and wd["groups"]["conv2"] == ["conv2"]


@pytest.mark.parametrize("stop_epoch", [2, 3])  # inside phase 1 (the switch runs after resuming), inside phase 2
def test_a_resumed_run_continues_exactly_where_it_stopped(tmp_path, stop_epoch):
    import pandas as pd

    store = RunStore(tmp_path)
    cfg = JobConfig(**{**BASE, "epochs": 4, "train_size": 64, "val_size": 32})  # 2 steps per epoch, 2 + 2 epochs
    full = run_job(cfg, store=store)
    seen = {"n": 0}

    def count(e):
        seen["n"] += e["event"] == "step" and e["epoch"] == stop_epoch

    part = run_job(cfg, store=store, callback=count, cancel=lambda: seen["n"] >= 1)
    assert part.state == "cancelled" and part.step == 2 * (stop_epoch - 1) + 1
    resumed = run_job(cfg, store=store, run_id=part.run_id, resume=True)
    assert resumed.state == "completed" and resumed.step == full.step
    cols = ["step", "loss", "lr"]
    pd.testing.assert_frame_equal(store.metrics(full.run_id, "step")[cols], store.metrics(part.run_id, "step")[cols])
    torch.testing.assert_close(store.load_student(full.run_id), store.load_student(part.run_id), rtol=0, atol=0)
    assert resumed.metrics["weight_distill"]["phases"] == full.metrics["weight_distill"]["phases"]
