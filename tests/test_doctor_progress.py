"""The doctor tells undertraining from failure: optim.still_improving, capacity.kl_plateau only on a
term that stopped falling, capacity.no_gain only against a student-alone run of the same budget."""

import pandas as pd
import pytest

from kdcore.doctor import RunRecord, diagnose, diagnose_run, load_record
from kdcore.doctor.capacity import same_budget
from kdcore.jobs import JobConfig, RunStore, run_job
from tests.helpers.doctor_toys import CALIBRATED, calibrated_pair

TERM = [8.0, 7.8, 7.65]  # the KD term: −2 % over the last epoch, 92 % of its start left


def _record(val_acc, val_loss, term=TERM, **cfg):
    config = JobConfig(
        pair="digits", objective="kd", temperature=4.0, lam=0.9, epochs=len(term), lr=3e-3, **cfg
    ).to_dict()
    epochs = pd.DataFrame(
        {"epoch": range(1, len(term) + 1), "train_kl": term, "val_acc": val_acc, "val_loss": val_loss}
    )
    steps = pd.DataFrame(
        {
            "step": range(1, 13),
            "epoch": [1] * 4 + [2] * 4 + [3] * 4,
            "loss": [9.0 - 0.1 * i for i in range(12)],
            "kl": [8.3] + [8.0] * 11,
        }
    )
    return RunRecord(config, steps=steps, epochs=epochs)


def _ids(record, **kw):
    report = diagnose_run(record, checks=["optim.still_improving", "capacity.kl_plateau", "capacity.no_gain"], **kw)
    assert report.checks["optim.still_improving"] == "ran" and report.checks["capacity.kl_plateau"] == "ran"
    return report


def test_an_undertrained_run_still_improving_is_not_a_capacity_plateau():
    """The issue's run: 3 epochs, validation accuracy 15 % → 26 % → 52 %, the KD term barely moving."""
    report = _ids(_record([0.15, 0.26, 0.52], [2.1, 1.9, 1.4]))
    assert "capacity.kl_plateau" not in report.ids()
    f = report.get("optim.still_improving")
    assert f is not None and f.severity == "warning"
    assert f.evidence["val_acc_last_epoch_rise"] == pytest.approx(0.26)
    longer, faster = f.runs
    assert longer.changes["epochs"] == 9 and faster.changes["lr"] == pytest.approx(9e-3)
    assert longer.config(_record([0.1] * 3, [1.0] * 3).config).epochs == 9
    assert "train longer" in f.fix.lower() and "learning rate" in f.fix


def test_the_evidence_figure_puts_the_kd_term_on_its_own_axis():
    """Accuracy (0-1) and the KD term (about 8 nats) are of different scales: two y axes, not one."""
    from analyses.doctor import figure

    f = _ids(_record([0.15, 0.26, 0.52], [2.1, 1.9, 1.4])).get("optim.still_improving")
    fig = figure(f)
    axes = {t.name: t.yaxis for t in fig.data}
    assert axes == {"val_acc": "y", "train_kl": "y2"}
    assert fig.layout.yaxis2.overlaying == "y" and "nats" in fig.layout.yaxis2.title.text


def test_a_falling_kd_term_alone_marks_the_run_as_still_improving():
    report = _ids(_record([0.50, 0.52, 0.52], [1.0, 1.0, 1.0], term=[8.0, 6.0, 4.5]))
    f = report.get("optim.still_improving")
    assert f is not None and f.evidence["train_kl_last_epoch_relative_fall"] == pytest.approx(0.25)
    assert "capacity.kl_plateau" not in report.ids()


def test_a_plateaued_run_still_gets_kl_plateau():
    report = _ids(_record([0.50, 0.52, 0.52], [1.0, 0.99, 0.99]))
    assert "optim.still_improving" not in report.ids()
    f = report.get("capacity.kl_plateau")
    assert f is not None and f.evidence["last_epoch_relative_change"] < 0.05


def test_accuracy_rising_while_the_loss_rises_is_not_improvement():
    report = _ids(_record([0.20, 0.23, 0.27], [1.5, 1.55, 1.6]))
    assert "optim.still_improving" not in report.ids() and "capacity.kl_plateau" in report.ids()


def test_same_budget_compares_epochs_training_size_lr_and_seed():
    a = JobConfig(objective="kd", epochs=5, lr=1e-2, train_size=512, seed=1).to_dict()
    assert same_budget(a, {**a, "objective": "ce", "temperature": None})
    for k, v in {"epochs": 6, "lr": 3e-2, "train_size": None, "seed": 2}.items():
        assert not same_budget(a, {**a, k: v}), k


def _cfg(**kw):
    base = {
        "pair": CALIBRATED,
        "objective": "kd",
        "temperature": 4.0,
        "lam": 0.9,
        "epochs": 3,
        "lr": 3e-2,
        "train_size": 96,
        "batch_size": 32,
        "checkpoints": 0,
        "val_size": 128,
    }
    return JobConfig(**{**base, **kw})


def test_no_gain_uses_only_a_student_alone_run_of_the_same_budget(data_dir):
    pair, store = calibrated_pair(scale=1.6), RunStore()
    run_job(_cfg(objective="ce", epochs=40), store=store, pair=pair)  # longer: not comparable
    kd = run_job(_cfg(), store=store, pair=pair).run_id
    f = diagnose(kd, store=store, pair=pair).get("capacity.no_gain")
    assert f is not None and f.severity == "info" and f.evidence["baseline"] == "none with this run's budget"
    alone = run_job(f.runs[0].config(store.get_run(kd)["config"]), store=store, pair=pair)
    assert alone.state == "completed"
    assert load_record(store, kd).baseline["run_id"] == alone.run_id  # the same-budget run, not the longer one
    report = diagnose(kd, store=store, pair=pair)
    assert report.checks["capacity.no_gain"] == "ran"
    f = report.get("capacity.no_gain")
    kd_acc = store.get_run(kd)["summary"]["final_val_acc"]
    alone_acc = store.get_run(alone.run_id)["summary"]["final_val_acc"]
    if kd_acc - alone_acc > 0.005:  # distilling helped: silent
        assert f is None
    else:  # a like-for-like verdict
        assert f.severity == "warning" and f.evidence["baseline"] == f"run {alone.run_id}"
        assert f.evidence["student_alone_val_acc"] == pytest.approx(alone_acc, abs=1e-6)
