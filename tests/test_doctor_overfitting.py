"""The doctor's overfit.teacher check: flags a run made to overfit (a tiny training subset, many epochs),
silent on a healthy run; its evidence matches the run's own per-epoch metrics (train_acc logged by the runner)."""

from __future__ import annotations

import numpy as np
import pytest

from kdcore.doctor import RunRecord, diagnose_run, load_record
from kdcore.doctor.overfitting import GAP_MIN, GAP_RISE, TERM_FALL
from kdcore.jobs import JobConfig, RunStore, run_job

KD = dict(pair="digits", objective="kd", temperature=4.0, lam=0.9, lr=1e-2, checkpoints=0, val_size=256)


def _check(store: RunStore, run_id: str):
    report = diagnose_run(load_record(store, run_id), checks=["overfit.teacher"])
    assert report.checks["overfit.teacher"] == "ran", report.checks
    return report.get("overfit.teacher")


def test_runner_logs_training_accuracy_and_agreement_each_epoch(data_dir):
    store = RunStore()
    res = run_job(JobConfig(**KD, epochs=2, train_size=64, batch_size=32), store=store)
    ep = store.metrics(res.run_id, "epoch")
    assert {"train_acc", "train_agreement"} <= set(ep.columns)
    rows = ep[ep["train_acc"].notna()]
    assert list(rows["epoch"]) == [0, 1, 2] and rows["train_acc"].between(0, 1).all()


def test_overfitting_run_is_flagged_with_the_fix_and_the_evidence_curve(data_dir):
    store = RunStore()
    res = run_job(JobConfig(**KD, epochs=30, train_size=32, batch_size=8), store=store)
    finding = _check(store, res.run_id)
    assert finding is not None and finding.severity == "warning"
    ep = store.metrics(res.run_id, "epoch")
    ep = ep[ep["epoch"] >= 1]
    gap = (ep["train_acc"] - ep["val_acc"]).to_numpy()
    lo = int(np.argmin(gap[:-1]))
    ev = finding.evidence
    assert ev["gap_smallest_epoch"] == lo + 1 and ev["gap_last"] == pytest.approx(gap[-1])
    assert ev["gap_rise"] == pytest.approx(gap[-1] - gap[lo]) and gap[-1] - gap[lo] >= GAP_RISE and gap[-1] >= GAP_MIN
    kl = ep["train_kl"].to_numpy()
    fall = (kl[lo] - kl[-1]) / kl[lo]
    assert ev["term_relative_fall"] == pytest.approx(fall) and fall >= TERM_FALL
    assert "more data" in finding.fix and "lower λ" in finding.fix and "stop earlier" in finding.fix
    labels = [r.label for r in finding.runs]
    assert any("train_size 128" in x for x in labels) and any("lam 0.45" in x for x in labels)
    fig = finding.figure
    assert fig.series["train accuracy"] == pytest.approx(list(ep["train_acc"])) and "train_kl" in fig.right


def test_healthy_run_is_silent(data_dir):
    store = RunStore()
    res = run_job(JobConfig(**KD, epochs=8, train_size=512, batch_size=64, schedule="cosine"), store=store)
    assert _check(store, res.run_id) is None


def test_gap_growing_without_the_kd_term_falling_is_not_flagged_and_missing_metrics_skip():
    epochs = {"epoch": [0, 1, 2, 3, 4], "train_acc": [0.1, 0.5, 0.7, 0.9, 1.0], "val_acc": [0.1, 0.5, 0.55, 0.6, 0.6]}
    flat = diagnose_run(
        RunRecord(JobConfig(**KD).to_dict(), epochs=_df({**epochs, "train_kl": [9, 2.0, 2.0, 2.0, 2.0]})),
        checks=["overfit.teacher"],
    )
    assert flat.checks["overfit.teacher"] == "ran" and flat.get("overfit.teacher") is None
    falling = diagnose_run(
        RunRecord(JobConfig(**KD).to_dict(), epochs=_df({**epochs, "train_kl": [9, 4.0, 3.0, 2.0, 1.0]})),
        checks=["overfit.teacher"],
    )
    assert falling.get("overfit.teacher") is not None
    old = diagnose_run(RunRecord(JobConfig(**KD).to_dict(), epochs=_df({"epoch": [1, 2], "val_acc": [0.1, 0.2]})))
    assert old.checks["overfit.teacher"].startswith("skipped")


def _df(d):
    import pandas as pd

    return pd.DataFrame(d)
