"""The runner: determinism, components, frozen teacher, NaN, cancel, misfits, resume, teacher cache."""

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from kdcore.jobs import JobConfig, RunStore, linear_cka, run_job
from kdcore.jobs.config import ConfigError
from tests.helpers.toys import TOY, TOY_CONV, TOY_LM

FAST = dict(epochs=2, batch_size=64, val_size=64, probe_size=32)


def _cfg(**kw) -> JobConfig:
    return JobConfig(**{"pair": TOY, **FAST, **kw})


def test_same_config_and_seed_give_identical_metrics(data_dir):
    store = RunStore()
    a, b = (run_job(_cfg(objective="kd", seed=5), store=store) for _ in range(2))
    c = run_job(_cfg(objective="kd", seed=6), store=store)
    ma, mb, mc = (store.metrics(r.run_id, "step") for r in (a, b, c))
    pd.testing.assert_frame_equal(ma, mb)
    pd.testing.assert_frame_equal(
        store.metrics(a.run_id, "epoch").drop(columns="epoch_time_s"),
        store.metrics(b.run_id, "epoch").drop(columns="epoch_time_s"),
    )
    assert not np.allclose(ma["loss"], mc["loss"])
    torch.testing.assert_close(store.load_student(a.run_id), store.load_student(b.run_id), rtol=0, atol=0)


def test_every_component_is_recorded_and_sums_to_the_loss(data_dir):
    store = RunStore()
    r = run_job(_cfg(objective="kd", lam=0.7, temperature=2.0), store=store)
    df = store.metrics(r.run_id, "step")
    np.testing.assert_allclose(df["loss"], 0.3 * df["ce"] + 0.7 * df["kl"], rtol=1e-5)
    r = run_job(_cfg(objective="dkd", params={"alpha": 2.0, "beta": 3.0}), store=store)
    df = store.metrics(r.run_id, "step")
    np.testing.assert_allclose(df["loss"], 2 * df["tckd"] + 3 * df["nckd"] + df["ce"], rtol=1e-5)
    r = run_job(
        _cfg(
            objective="sum",
            ce_weight=0.0,
            terms=[
                {"name": "kd", "weight": 0.5, "params": {"lam": 1.0}},
                {"name": "normkd", "weight": 2.0, "params": {}},
            ],
        ),
        store=store,
    )
    df = store.metrics(r.run_id, "step")
    np.testing.assert_allclose(df["loss"], 0.5 * df["kd.kl"] + 2.0 * df["normkd.normkd"], rtol=1e-5)
    ep = store.metrics(r.run_id, "epoch")
    assert {"val_acc", "val_loss", "val_agreement", "train_loss", "train_kd.kl"} <= set(ep.columns)
    ck = store.metrics(r.run_id, "checkpoint")
    assert {"cka/fc1|fc1", "cka/fc2|fc2", "div/kl", "div/tckd", "div/nckd"} <= set(ck.columns)
    assert ck["epoch"].tolist() == [1, 2] and store.checkpoints(r.run_id) == [1, 2]


def test_teacher_stays_frozen_and_the_run_records_it(data_dir):
    from tests.helpers.toys import toy_pair

    pair = toy_pair()
    pair.teacher.model.train()  # even a teacher handed over in train mode
    before = {k: v.clone() for k, v in pair.teacher.model.state_dict().items()}
    student_before = {k: v.clone() for k, v in pair.student.model.state_dict().items()}
    store = RunStore()
    r = run_job(_cfg(objective="kd", pair=TOY), store=store, pair=pair)
    for k, v in pair.teacher.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    for k, v in pair.student.model.state_dict().items():  # the pair's student is never trained in place
        torch.testing.assert_close(v, student_before[k], rtol=0, atol=0)
    assert pair.teacher.model.training  # its mode is given back
    ep = store.metrics(r.run_id, "epoch")
    assert ep["teacher_training"].dropna().eq(0).all() and ep["teacher_params_with_grad"].dropna().eq(0).all()
    assert store.metrics(r.run_id, "step")["teacher_logits_grad"].dropna().tolist() == [0.0]


def test_a_nan_loss_fails_the_run_at_that_step(data_dir):
    store = RunStore()
    r = run_job(_cfg(objective="kd", optimizer="sgd", lr=1e30, momentum=0.0), store=store)
    assert r.state == "failed" and "step" in r.error
    run = store.get_run(r.run_id)
    assert run["state"] == "failed" and f"step {r.metrics['failed_step']}" in run["error"]
    assert r.metrics["failed_step"] >= 2  # step 1 is finite, the weights blow up after it


def test_cancel_stops_at_the_next_step(data_dir):
    store = RunStore()
    ev = threading.Event()
    seen = []

    def cb(e):
        if e["event"] == "step":
            seen.append(e["step"])
            if e["step"] == 3:
                ev.set()

    r = run_job(_cfg(objective="kd", epochs=50, batch_size=16), store=store, callback=cb, cancel=ev)
    assert r.state == "cancelled" and r.step == 3 and seen[-1] == 3
    assert store.get_run(r.run_id)["state"] == "cancelled" and store.metrics(r.run_id)["step"].max() == 3


@pytest.mark.parametrize(
    "kw, reason",
    [
        (dict(objective="at", params={"layers": {"fc1": "fc1"}}), "conv features"),
        (dict(objective="feature_l2", params={"layers": {"fc9": "fc1"}}), "student layer 'fc9'"),
        (dict(objective="token"), "causal language models"),
        (dict(pair=TOY_LM, objective="kd"), "classification loss"),
        (dict(pair=TOY_LM, objective="dkd"), "classification loss"),
    ],
)
def test_objectives_that_do_not_fit_the_pair_are_refused_before_a_run(data_dir, kw, reason):
    store = RunStore()
    with pytest.raises(ValueError, match=reason):
        run_job(_cfg(**kw), store=store)
    assert len(store.list_runs()) == 0


def test_invalid_config_is_refused_before_a_run(data_dir):
    store = RunStore()
    with pytest.raises(ConfigError) as e:
        run_job(_cfg(epochs=0, lr=-1), store=store)
    assert len(e.value.problems) == 2 and len(store.list_runs()) == 0


@pytest.mark.parametrize(
    "pair, kw, keys",
    [
        (TOY, dict(objective="cakd", params={"rule": "mass", "tau": 0.8}), {"bcd", "scd", "wcd", "ce"}),
        (TOY, dict(objective="ls", params={"eps": 0.2}), {"ls"}),
        (TOY, dict(objective="feature_l2", params={"layers": {"fc2": "fc2"}}), {"feat_l2/fc2", "ce"}),
        (TOY_CONV, dict(objective="at", params={"layers": {"conv2": "conv2"}}), {"at/conv2", "ce"}),
        (TOY_CONV, dict(objective="feature_l2", params={"layers": {"conv1": "conv1"}}), {"feat_l2/conv1", "ce"}),
        (TOY_LM, dict(objective="token", params={"kind": "jsd", "beta": 0.3}), {"jsd", "ce"}),
        (TOY_LM, dict(objective="attn_kl"), {"attn_kl/0", "ce"}),
    ],
)
def test_each_objective_trains_and_records_its_components(data_dir, pair, kw, keys):
    store = RunStore()
    r = run_job(JobConfig(pair=pair, epochs=1, batch_size=32, val_size=32, probe_size=16, **kw), store=store)
    assert r.state == "completed", r.error
    df = store.metrics(r.run_id, "step")
    assert keys <= set(df.columns) and np.isfinite(df["loss"]).all()
    if "feat_l2/fc2" in keys:  # widths 8 vs 32: a learned projector was trained with the student
        assert r.metrics["final_val_acc"] >= 0


def test_resume_continues_exactly_where_the_run_stopped(data_dir):
    store = RunStore()
    full = run_job(_cfg(objective="kd", epochs=4, batch_size=32, seed=2), store=store)
    cancel_after = {"n": 0}

    def stop_in_epoch_3(e):
        if e["event"] == "step" and e["epoch"] == 3:
            cancel_after["n"] += 1

    part = run_job(
        _cfg(objective="kd", epochs=4, batch_size=32, seed=2),
        store=store,
        callback=stop_in_epoch_3,
        cancel=lambda: cancel_after["n"] >= 2,
    )
    assert part.state == "cancelled" and part.step == 8 * 2 + 2
    resumed = run_job(
        _cfg(objective="kd", epochs=4, batch_size=32, seed=2), store=store, run_id=part.run_id, resume=True
    )
    assert resumed.state == "completed" and resumed.step == full.step
    a, b = store.metrics(full.run_id, "step"), store.metrics(part.run_id, "step")
    pd.testing.assert_frame_equal(a, b)
    torch.testing.assert_close(store.load_student(full.run_id), store.load_student(part.run_id), rtol=0, atol=0)


def test_teacher_cache_gives_the_same_run_and_is_reused(data_dir):
    store = RunStore()
    plain = run_job(_cfg(objective="kd", seed=1), store=store)
    cached = run_job(_cfg(objective="kd", seed=1, teacher_cache=True), store=store)
    again = run_job(_cfg(objective="kd", seed=1, teacher_cache=True), store=store)
    pd.testing.assert_frame_equal(
        store.metrics(plain.run_id)[["loss", "ce", "kl"]], store.metrics(cached.run_id)[["loss", "ce", "kl"]]
    )
    ep = store.metrics(again.run_id, "epoch")
    assert ep["cache_from_disk"].dropna().tolist() == [1.0] and ep["cache_mass_kept"].dropna().tolist() == [1.0]


def test_teacher_cache_top_k_reports_the_mass_kept(data_dir):
    from kdcore.jobs.teacher_cache import build_cache
    from tests.helpers.toys import toy_lm_pair

    pair = toy_lm_pair()
    x = pair.dataset.split("train").inputs  # [64, 6]
    cache = build_cache(pair.teacher, x, [], batch_size=16, device="cpu", top_k=3)
    p = torch.softmax(pair.teacher.logits(x), -1)
    expected = p.topk(3, -1).values.sum(-1).mean()
    assert cache.mass_kept == pytest.approx(float(expected), rel=1e-5) and cache.mass_kept < 1
    logits, _ = cache.get(torch.tensor([0, 5]))
    assert logits.shape == (2, 6, 11) and torch.isfinite(logits).sum(-1).eq(3).all()
    r = run_job(
        JobConfig(pair=TOY_LM, objective="token", epochs=1, teacher_cache=True, cache_top_k=3, batch_size=32),
        store=RunStore(),
    )
    assert r.state == "completed" and r.metrics["cache_mass_kept"] == pytest.approx(float(expected), rel=1e-5)


def test_linear_cka_matches_a_float64_numpy_computation():
    rng = np.random.default_rng(0)
    for n, d1, d2 in ((50, 5, 7), (6, 20, 3)):
        x, y = rng.normal(size=(n, d1)), rng.normal(size=(n, d2))
        xc, yc = x - x.mean(0), y - y.mean(0)
        k, l_ = xc @ xc.T, yc @ yc.T
        want = np.trace(k @ l_) / np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_))
        assert linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(want, rel=1e-10)
        q, _ = np.linalg.qr(rng.normal(size=(d1, d1)))
        assert linear_cka(torch.tensor(x), torch.tensor(3 * x @ q)) == pytest.approx(1.0, rel=1e-10)
    assert linear_cka(torch.ones(10, 3), torch.randn(10, 3)) == 0.0


def test_cuda_asked_but_absent_is_a_clear_error(data_dir):
    if torch.cuda.is_available():
        r = run_job(_cfg(objective="kd", device="cuda", epochs=1), store=RunStore())
        assert r.state == "completed" and "cuda" in RunStore().get_run(r.run_id)["device"]
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            run_job(_cfg(objective="kd", device="cuda"), store=RunStore())


def test_fingerprints_cover_batchnorm_counters_and_every_byte():
    """Sample CNNs carry BatchNorm's 0-dim long counter; the cache fingerprint must hash it too."""
    from kdcore.jobs.teacher_cache import model_fingerprint, tensor_fingerprint

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    before = model_fingerprint(net)
    net[1].num_batches_tracked += 1  # only the 0-dim counter changes
    assert model_fingerprint(net) != before
    assert tensor_fingerprint(torch.tensor(3)) != tensor_fingerprint(torch.tensor(4))
    assert tensor_fingerprint(torch.zeros(2, 3)) != tensor_fingerprint(torch.zeros(3, 2))  # shape counts


@pytest.mark.parametrize(
    "kw, steps",
    [
        (dict(epochs=2, batch_size=64), 8),
        (dict(epochs=3, batch_size=100), 9),
        (dict(epochs=5, batch_size=64, max_steps=6), 6),
        (dict(epochs=2, batch_size=64, train_size=100), 4),
    ],
)
def test_the_runner_records_total_steps_in_the_store(data_dir, kw, steps):
    from kdcore.jobs import prepare_run

    cfg = JobConfig(pair=TOY, objective="kd", val_size=32, probe_size=16, **kw)  # the toy pair: 256 training samples
    prep = prepare_run(cfg)
    assert prep.total_steps == steps
    seen = []
    store = RunStore()
    r = run_job(cfg, store=store, callback=lambda e: seen.append(e["total_steps"]))
    assert r.state == "completed" and r.step == steps
    assert store.get_run(r.run_id)["total_steps"] == steps and set(seen) == {steps}


def test_prepare_run_returns_a_frozen_record_and_trains_nothing():
    import dataclasses

    from kdcore.jobs import PreparedRun, prepare_run
    from tests.helpers.toys import toy_pair

    pair = toy_pair()
    before = {k: v.clone() for k, v in pair.student.model.state_dict().items()}
    prep = prepare_run(_cfg(objective="feature_l2", params={"layers": {"fc2": "fc2"}}), pair=pair)
    assert isinstance(prep, PreparedRun) and prep.pair is pair and prep.task == "classification"
    assert prep.s_layers == ["fc2"] and prep.steps_per_epoch == 4 and prep.checkpoint_epochs == {1, 2}
    with pytest.raises(dataclasses.FrozenInstanceError):
        prep.total_steps = 1
    for k, v in pair.student.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def _attributes_set(fn) -> set[str]:
    import ast

    return {
        t.attr
        for node in ast.walk(fn)
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        for t in ast.walk(target)
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def test_every_job_attribute_is_set_in_init():
    import ast
    import inspect

    from kdcore.jobs import job as job_module

    job = next(
        n for n in ast.parse(inspect.getsource(job_module)).body if isinstance(n, ast.ClassDef) and n.name == "_Job"
    )
    methods = {f.name: f for f in job.body if isinstance(f, ast.FunctionDef)}
    in_init = _attributes_set(methods.pop("__init__"))
    late = {f"{name}: self.{a}" for name, fn in methods.items() for a in _attributes_set(fn) - in_init}
    assert not late, f"attributes first set outside _Job.__init__: {sorted(late)}"
    assert {"teacher", "student", "opt", "cache", "projectors", "history", "total_steps"} <= in_init
