"""kdcore.doctor: every check flags a deliberately broken run and stays silent on a healthy one.

Healthy runs go through the real runner (a calibrated linear teacher, an LM bigram teacher); broken
runs are short real runs where that is cheap, else run records written in memory (as a trainer
other than ours would record them) with tiny pairs of known weights (tests/helpers/doctor_toys.py).
"""

import copy

import pandas as pd
import pytest
import torch

from kdcore.adapters import wrap
from kdcore.data.base import Dataset, SplitData
from kdcore.doctor import CHECK_IDS, RunRecord, diagnose, diagnose_run
from kdcore.jobs import JobConfig, RunStore, run_job
from tests.helpers.doctor_toys import (
    CALIBRATED,
    GAP,
    Augmented,
    Bigram,
    Dropped,
    Rolled,
    Scaled,
    V,
    bigram_table,
    calibrated_pair,
    capacity_gap_pair,
    lm_dataset,
    lm_pair,
    lm_student,
)

LM_PAIR = "tests.helpers.doctor_toys:lm_pair"
LM_ONLY = [c for c in CHECK_IDS if c.startswith("lm.") and c != "lm.temperature_mismatch"]
CLASSIFICATION_CHECKS = [c for c in CHECK_IDS if c not in LM_ONLY]
LM_CHECKS = [
    c for c in CHECK_IDS if not c.startswith(("teacher.wrong", "soft_labels.", "capacity.no_gain", "lm.hybrid_gate"))
]
_FAST = dict(batch_size=32, checkpoints=1, val_size=256, probe_size=64)


def _cfg(**kw) -> JobConfig:
    base = dict(pair=CALIBRATED, objective="kd", temperature=4.0, lam=0.9, epochs=6, lr=3e-2, train_size=96, **_FAST)
    base.update(kw)
    return JobConfig(**base)


def _record(cfg: JobConfig | dict, steps=None, epochs=None, **kw) -> RunRecord:
    cfg = cfg.to_dict() if isinstance(cfg, JobConfig) else cfg
    return RunRecord(
        cfg,
        steps=None if steps is None else pd.DataFrame(steps),
        epochs=None if epochs is None else pd.DataFrame(epochs),
        **kw,
    )


def _flags(report, check_id):
    assert report.checks[check_id] == "ran", report.checks[check_id]
    f = report.get(check_id)
    assert f is not None, f"{check_id} did not flag: {report.ids()}"
    assert f.title and f.fix and f.evidence
    return f


# ---- healthy runs (real runner) -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("kdwb"))
    pair = calibrated_pair(scale=1.6)
    trained = dict(epochs=40, schedule="cosine")  # to convergence: not optim.still_improving
    run_job(_cfg(objective="ce", **trained), store=store, pair=pair)  # the student alone, for capacity.no_gain
    kd = run_job(_cfg(**trained), store=store, pair=pair)
    assert kd.state == "completed"
    return diagnose(kd.run_id, store=store, pair=pair)


@pytest.fixture(scope="module")
def healthy_lm(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("kdwb_lm"))
    pair = lm_pair()
    res = run_job(
        JobConfig(
            pair=LM_PAIR,
            objective="token",
            params={"kind": "jsd", "beta": 0.5},
            epochs=16,
            lr=3e-2,
            schedule="cosine",
            batch_size=16,
            checkpoints=1,
            val_size=64,
            probe_size=16,
        ),
        store=store,
        pair=pair,
    )
    assert res.state == "completed"
    return diagnose(res.run_id, store=store, pair=pair)


@pytest.mark.parametrize("check_id", CLASSIFICATION_CHECKS)
def test_healthy_classification_run_is_silent(healthy, check_id):
    assert healthy.checks[check_id] == "ran", healthy.checks[check_id]
    assert check_id not in healthy.ids(), [f.to_dict() for f in healthy.findings]


@pytest.mark.parametrize("check_id", LM_CHECKS)
def test_healthy_language_model_run_is_silent(healthy_lm, check_id):
    assert healthy_lm.checks[check_id] == "ran", healthy_lm.checks[check_id]
    assert check_id not in healthy_lm.ids(), [f.to_dict() for f in healthy_lm.findings]


def test_language_checks_skip_classification_runs_with_a_reason(healthy):
    for c in LM_ONLY:
        if c != "lm.jsd_beta":
            assert healthy.checks[c] == "skipped: applies to causal language models only"


# ---- optimisation ---------------------------------------------------------------------------------------


def test_nonfinite_loss_is_flagged_on_a_real_run(data_dir):
    pair = calibrated_pair(scale=1.6)
    train = pair.dataset.split("train")
    x = train.inputs.clone()
    x[:, 0] = float("inf")  # every input broken
    splits = {
        "train": SplitData(x, train.targets),
        "val": pair.dataset.split("val"),
        "test": pair.dataset.split("test"),
    }
    pair.dataset = Dataset("broken", "classification", lambda: splits, num_classes=4)
    store = RunStore()
    res = run_job(_cfg(epochs=1), store=store, pair=pair)
    assert res.state == "failed"
    f = _flags(diagnose(res.run_id, store=store, pair=pair), "optim.nonfinite")
    assert f.severity == "error" and f.evidence["failed_step"] == 1


def test_diverging_loss_is_flagged():
    steps = {"step": range(1, 21), "epoch": [1] * 20, "loss": [1.0 + 0.3 * i for i in range(20)]}
    f = _flags(diagnose_run(_record(_cfg(), steps)), "optim.diverging")
    assert f.evidence["loss_last_window"] > 1.5 * f.evidence["loss_first_window"]
    assert f.figure is not None and len(f.figure.x) == 20


def test_flat_loss_is_flagged_on_a_real_run(data_dir):
    pair = calibrated_pair(scale=1.6)
    store = RunStore()
    res = run_job(_cfg(lr=1e-7, epochs=3), store=store, pair=pair)
    report = diagnose(res.run_id, store=store, pair=pair)
    f = _flags(report, "optim.not_decreasing")
    assert f.evidence["relative_drop"] < 0.05
    assert "raise the learning rate" in f.fix
    assert _flags(report, "optim.lr_scale").evidence["lr"] == pytest.approx(1e-7)


def test_learning_rate_out_of_scale_is_flagged():
    f = _flags(diagnose_run(_record(_cfg(lr=1.0))), "optim.lr_scale")
    assert "above" in f.title and f.evidence["usual_high"] < 1.0
    assert diagnose_run(_record(_cfg(lr=1e-3))).get("optim.lr_scale") is None


# ---- teacher mode, gradients, inputs ----------------------------------------------------------------------


def test_teacher_in_train_mode_is_flagged_from_the_record():
    epochs = {"step": [3, 6], "epoch": [1, 2], "teacher_training": [1.0, 1.0]}
    f = _flags(diagnose_run(_record(_cfg(), epochs=epochs)), "teacher.train_mode")
    assert f.severity == "error" and f.evidence["epochs_in_train_mode"] == 2


def test_teacher_in_train_mode_is_flagged_from_the_model():
    pair = calibrated_pair(scale=1.6)
    teacher = wrap(Dropped(copy.deepcopy(pair.teacher.model)).train(), name="dropped")
    f = _flags(diagnose_run(_record(_cfg()), teacher=teacher, dataset=pair.dataset), "teacher.train_mode")
    assert f.evidence["max_logit_change_between_passes"] > 0
    assert teacher.model.training  # the doctor left the model as it was
    same_eval = wrap(Dropped(copy.deepcopy(pair.teacher.model)).eval(), name="dropped-eval")
    assert diagnose_run(_record(_cfg()), teacher=same_eval, dataset=pair.dataset).get("teacher.train_mode") is None


def test_teacher_receiving_gradients_is_flagged():
    epochs = {"step": [3], "epoch": [1], "teacher_params_with_grad": [2.0]}
    f = _flags(diagnose_run(_record(_cfg(), epochs=epochs)), "teacher.gradients")
    assert f.evidence["teacher_params_with_grad"] == 2


@pytest.mark.parametrize(
    "wrapper, key", [(Rolled, "relative_change_reordered_batch"), (Augmented, "relative_change_same_batch")]
)
def test_teacher_fed_other_inputs_is_flagged(wrapper, key):
    pair = calibrated_pair(scale=1.6)
    teacher = wrap(wrapper(copy.deepcopy(pair.teacher.model)).eval(), name="other-inputs")
    f = _flags(diagnose_run(_record(_cfg()), teacher=teacher, dataset=pair.dataset), "inputs.teacher_inputs")
    assert f.evidence[key] > 0.01


# ---- the teacher's quality --------------------------------------------------------------------------------


def test_teacher_wrong_on_much_of_the_data_is_flagged():
    pair = calibrated_pair(scale=1.6, shift=1)  # labels no longer what the teacher says
    f = _flags(diagnose_run(_record(_cfg()), pair=pair), "teacher.wrong")
    assert f.severity == "error" and f.evidence["teacher_train_error"] > 0.6


def test_miscalibrated_teacher_is_flagged_with_the_temperature_that_fixes_it():
    pair = calibrated_pair(scale=1.6)
    sharp = wrap(Scaled(copy.deepcopy(pair.teacher.model), 6.0).eval(), name="sharp")
    f = _flags(diagnose_run(_record(_cfg()), teacher=sharp, dataset=pair.dataset), "teacher.miscalibrated")
    assert "over-confident" in f.title
    assert 4.0 < f.evidence["calibrating_temperature"] < 9.0  # the ×6 it was sharpened by
    assert f.evidence["teacher_ece_after_scaling"] < 0.1 <= f.evidence["teacher_ece"]


# ---- soft labels and balance ------------------------------------------------------------------------------


def test_nearly_one_hot_soft_labels_are_flagged():
    f = _flags(diagnose_run(_record(_cfg(temperature=0.05)), pair=calibrated_pair(scale=1.6)), "soft_labels.one_hot")
    assert f.evidence["teacher_max_prob_mean"] >= 0.99
    assert f.figure.marker_x == 0.05 and "Raise the temperature" in f.fix


def test_nearly_uniform_soft_labels_are_flagged():
    f = _flags(diagnose_run(_record(_cfg(temperature=500.0)), pair=calibrated_pair(scale=1.6)), "soft_labels.uniform")
    assert f.evidence["teacher_entropy_over_ln_c"] >= 0.98 and "Lower the temperature" in f.fix


def test_negligible_kd_term_is_flagged():
    f = _flags(diagnose_run(_record(_cfg(lam=0.002)), pair=calibrated_pair(scale=1.6)), "balance.kd_negligible")
    assert f.evidence["kd_to_ce_grad_ratio_start"] < 0.05 and "set lam to about" in f.fix


def test_dominant_kd_term_is_flagged():
    f = _flags(diagnose_run(_record(_cfg(lam=0.9999)), pair=calibrated_pair(scale=1.6)), "balance.kd_dominant")
    assert f.evidence["kd_to_ce_grad_ratio_start"] > 100


def test_gradient_ratio_scales_with_the_weights_odds():
    """‖∇ λ·T²KL‖ / ‖∇ (1−λ)·CE‖ is linear in λ/(1−λ): an independent check of the measurement."""
    from kdcore.doctor.balance import _measure
    from kdcore.doctor.context import Context

    pair = calibrated_pair(scale=1.6)
    r = {
        lam: _measure(Context(_record(_cfg(lam=lam)), pair.teacher, pair.student, pair.dataset))["ratio_start"]
        for lam in (0.5, 0.9)
    }
    assert r[0.9] / r[0.5] == pytest.approx(9.0, rel=1e-6)


# ---- capacity ---------------------------------------------------------------------------------------------


def test_capacity_gap_is_flagged_on_a_real_run(data_dir):
    pair = capacity_gap_pair()
    store = RunStore()
    res = run_job(_cfg(pair=GAP, epochs=4, train_size=128), store=store, pair=pair)
    f = _flags(diagnose(res.run_id, store=store, pair=pair), "capacity.kl_plateau")
    assert f.evidence["share_left"] > 0.5 and f.evidence["last_epoch_relative_change"] < 0.05


def test_no_gain_over_the_student_alone_is_flagged_from_records():
    rec = _record(
        _cfg(),
        summary={"final_val_acc": 0.70, "teacher_val_acc": 0.9},
        baseline={"run_id": "base", "final_val_acc": 0.74},
    )
    f = _flags(diagnose_run(rec), "capacity.no_gain")
    assert f.evidence["gain"] == pytest.approx(-0.04)
    assert f.severity == "warning"  # a like-for-like 'ce' run: a verdict


def test_no_gain_without_a_same_budget_baseline_says_so_and_offers_one():
    pair = calibrated_pair(scale=1.6)
    good = wrap(copy.deepcopy(pair.teacher.model), name="baseline")  # the pair's baseline: another budget
    other = _cfg(objective="ce", epochs=60).to_dict()  # a student-alone run, longer
    rec = _record(
        _cfg(), summary={"final_val_acc": 0.70}, baseline={"run_id": "long", "final_val_acc": 0.74, "config": other}
    )
    f = _flags(diagnose_run(rec, pair=pair, student_baseline=good), "capacity.no_gain")
    assert f.severity == "info" and f.evidence["baseline"] == "none with this run's budget"
    assert "gain" not in f.evidence and "--objective ce" in f.fix
    (alone,) = f.runs
    cfg = alone.config(rec.config)
    assert cfg.objective == "ce" and cfg.temperature is None and not cfg.teacher_cache
    assert (cfg.epochs, cfg.lr, cfg.train_size, cfg.seed) == (6, 3e-2, 96, 0)


# ---- language models -------------------------------------------------------------------------------------


def _lm_cfg(**params) -> JobConfig:
    return JobConfig(pair=LM_PAIR, objective="token", params={"kind": "fkl", **params}, batch_size=16)


def test_loss_on_padding_is_flagged():
    table = bigram_table()
    teacher = wrap(Bigram(table).eval(), name="t", kind="causal_lm")
    student = wrap(lm_student(), name="s", kind="causal_lm")
    broken = diagnose_run(
        _record(_lm_cfg()), teacher=teacher, student=student, dataset=lm_dataset(table, pad=V - 1, mask_pad=False)
    )
    f = _flags(broken, "lm.padding_counted")
    assert f.evidence["pad_token"] == V - 1 and f.evidence["padding_share_of_counted_positions"] > 0.2
    masked = diagnose_run(
        _record(_lm_cfg()), teacher=teacher, student=student, dataset=lm_dataset(table, pad=V - 1, mask_pad=True)
    )
    assert masked.checks["lm.padding_counted"] == "ran" and masked.get("lm.padding_counted") is None


def test_vocabulary_size_mismatch_is_flagged():
    table = bigram_table()
    teacher = wrap(Bigram(table).eval(), name="t", kind="causal_lm")
    student = wrap(lm_student(V + 4), name="s", kind="causal_lm")
    f = _flags(
        diagnose_run(_record(_lm_cfg()), teacher=teacher, student=student, dataset=lm_dataset(table)),
        "lm.vocab_mismatch",
    )
    assert (f.evidence["teacher_vocab"], f.evidence["student_vocab"]) == (V, V + 4)


def test_padded_vocabulary_with_teacher_mass_is_flagged():
    table = bigram_table(out=V + 8)  # 8 padded ids with logit 0, never used
    teacher = wrap(Bigram(table).eval(), name="t", kind="causal_lm")
    student = wrap(lm_student(V + 8), name="s", kind="causal_lm")
    f = _flags(
        diagnose_run(_record(_lm_cfg()), teacher=teacher, student=student, dataset=lm_dataset(table, vocab=V)),
        "lm.padded_vocab",
    )
    assert f.evidence["unused_tail_size"] == 8
    probs = torch.softmax(table, -1)[:, V:].sum(-1)  # mass on the tail from each previous token
    assert probs.min() - 1e-6 <= f.evidence["teacher_mass_on_tail"] <= probs.max() + 1e-6


def test_teacher_with_another_tokenizer_is_flagged():
    table = bigram_table()
    perm = torch.randperm(V, generator=torch.Generator().manual_seed(1))
    other = wrap(Bigram(table[perm][:, perm]).eval(), name="t", kind="causal_lm")  # same model, ids renumbered
    f = _flags(
        diagnose_run(
            _record(_lm_cfg()),
            teacher=other,
            student=wrap(lm_student(), name="s", kind="causal_lm"),
            dataset=lm_dataset(table),
        ),
        "lm.tokenizers",
    )
    assert f.evidence["teacher_nll"] >= f.evidence["uniform_nll"]


def test_tokenizer_vocabularies_that_differ_are_flagged():
    class _Tok:
        def __init__(self, order):
            self.order = order

        def get_vocab(self):
            return {f"tok{t}": i for i, t in enumerate(self.order)}

    pair = lm_pair()
    teacher, student = pair.teacher.clone(), pair.student.clone()
    teacher.tokenizer, student.tokenizer = _Tok(range(V)), _Tok([1, 0, *range(2, V)])
    f = _flags(
        diagnose_run(_record(_lm_cfg()), teacher=teacher, student=student, dataset=pair.dataset), "lm.tokenizers"
    )
    assert f.evidence["tokens_with_other_id"] == 2


@pytest.mark.parametrize("beta", [0.02, 0.97])
def test_jsd_with_beta_near_the_ends_is_flagged(beta):
    f = _flags(diagnose_run(_record(_lm_cfg(kind="jsd", beta=beta)), pair=lm_pair()), "lm.jsd_beta")
    assert f.evidence["jsd_value"] < 0.2 * min(f.evidence["fkl_value"], f.evidence["rkl_value"])
    assert ("'fkl'" if beta < 0.5 else "'rkl'") in f.fix


def test_different_temperatures_for_teacher_and_student_are_flagged():
    pair = lm_pair()
    model = copy.deepcopy(pair.teacher.model)
    model.temperature = 2.0  # a teacher that softens its own logits
    teacher = wrap(model, name="t", kind="causal_lm")
    f = _flags(
        diagnose_run(_record(_lm_cfg(temperature=1.0)), teacher=teacher, student=pair.student),
        "lm.temperature_mismatch",
    )
    assert (f.evidence["teacher_temperature"], f.evidence["student_temperature"]) == (2.0, 1.0)
    cfg = _record(_lm_cfg(temperature=2.0, teacher_temperature=4.0))
    assert _flags(diagnose_run(cfg), "lm.temperature_mismatch").evidence["teacher_temperature"] == 4.0


def test_a_saturated_learned_hybrid_gate_is_flagged():
    cfg = JobConfig(pair="tinylang", objective="hybrid", params={"gate": "learned"}).to_dict()
    report = diagnose_run(_record(cfg, steps={"step": [1, 2, 3], "gate_g": [0.5, 0.9, 0.99]}))
    f = _flags(report, "lm.hybrid_gate")
    assert f.evidence["gate_g_last"] == 0.99 and "token KL" in f.title
    calm = diagnose_run(_record(cfg, steps={"step": [1, 2], "gate_g": [0.5, 0.6]}))
    assert calm.checks["lm.hybrid_gate"] == "ran" and "lm.hybrid_gate" not in calm.ids()
    fixed = JobConfig(pair="tinylang", objective="hybrid").to_dict()
    assert (
        diagnose_run(_record(fixed, steps={"step": [1], "gate_g": [0.5]}))
        .checks["lm.hybrid_gate"]
        .startswith("skipped")
    )
