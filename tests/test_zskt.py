"""Zero-shot knowledge transfer (methods/14 §14.6): D and the AT term against float64 numpy with the
identities (D = batchmean / C, D ≥ 0 and 0 on equal logits, L_G = −D exactly, AT scale-invariant and 0
on equal maps), the step plan, bad input, and the run on digits with a dataset whose train split
raises on access (the student learns on generated inputs only); refused on a language model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from kdcore.data.base import Dataset
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.losses.zskt import belief_divergence, zero_shot_losses, zero_shot_schedule
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError
from sample_models import load_pair


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_at(fs: np.ndarray, ft: np.ndarray) -> float:
    def a(f: np.ndarray) -> np.ndarray:
        m = (f**2).mean(1).reshape(f.shape[0], -1)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    return float(((a(fs) - a(ft)) ** 2).mean())


def test_the_losses_equal_float64_numpy_with_their_identities():
    rng = np.random.default_rng(0)
    N, C, tau, beta = 6, 5, 2.0, 250.0
    s, t = rng.normal(size=(N, C)) * 3, rng.normal(size=(N, C)) * 3
    acts = [(rng.normal(size=(N, 3, 4, 4)), rng.normal(size=(N, 7, 4, 4))) for _ in range(2)]
    ls, lt = _np_log_softmax(s / tau), _np_log_softmax(t / tau)
    kl_rows = (np.exp(lt) * (lt - ls)).sum(-1)
    d_want = kl_rows.sum() / (N * C)
    T = lambda a: torch.tensor(a, requires_grad=False)  # noqa: E731
    loss_s, loss_g = zero_shot_losses(
        T(s), T(t), [T(a) for a, _ in acts], [T(b) for _, b in acts], beta=beta, temperature=tau
    )
    at_want = sum(_np_at(a, b) for a, b in acts)
    assert loss_s.item() == pytest.approx(d_want + beta * at_want, rel=1e-10)
    assert loss_g.item() == -belief_divergence(T(s), T(t), temperature=tau).item()  # L_G = −D exactly
    assert loss_g.item() == pytest.approx(-d_want, rel=1e-12)
    bm = belief_divergence(T(s), T(t), temperature=tau, kl_reduction="batchmean").item()
    assert bm == pytest.approx(C * d_want, rel=1e-12)
    assert belief_divergence(T(s), T(s)).item() == pytest.approx(0.0, abs=1e-15) and d_want >= 0
    a, b = acts[0]
    same = zero_shot_losses(T(s), T(s), [T(a)], [T(a * 7.0)], beta=1.0)[0].item()  # equal maps up to scale
    assert same == pytest.approx(0.0, abs=1e-12)
    scaled = zero_shot_losses(T(s), T(t), [T(a * 3.0)], [T(b * 0.1)], beta=1.0)[0].item()
    ls1, lt1 = _np_log_softmax(s), _np_log_softmax(t)  # τ = 1
    d1 = (np.exp(lt1) * (lt1 - ls1)).sum() / (N * C)
    assert scaled == pytest.approx(d1 + _np_at(a, b), rel=1e-10)  # AT invariant to scaling either map


def test_the_step_plan_has_n_iter_times_ng_plus_ns_steps_generator_first():
    plan = zero_shot_schedule(3, n_g=1, n_s=10)
    assert len(plan) == 3 * 11
    for k in range(3):
        block = plan[k * 11 : (k + 1) * 11]
        assert block[0] == (k, "generator") and all(p == (k, "student") for p in block[1:])
    with pytest.raises(InvalidParameterError, match="n_s"):
        zero_shot_schedule(3, n_s=0)


def test_bad_input_is_refused_naming_it():
    z, f = torch.randn(4, 3), torch.randn(4, 2, 4, 4)
    with pytest.raises(InvalidParameterError, match="one to one"):
        zero_shot_losses(z, z, [f], [])
    with pytest.raises(InvalidParameterError, match="wrong layer pairing.*resize=True"):
        zero_shot_losses(z, z, [f], [torch.randn(4, 2, 8, 8)])
    assert torch.isfinite(zero_shot_losses(z, z, [f], [torch.randn(4, 2, 8, 8)], resize=True)[0])
    with pytest.raises(InvalidParameterError, match="temperature"):
        zero_shot_losses(z, z, temperature=0)
    with pytest.raises(InvalidParameterError, match="beta"):
        zero_shot_losses(z, z, beta=-1)
    with pytest.raises(InvalidParameterError, match="kl_reduction"):
        zero_shot_losses(z, z, kl_reduction="sum")
    with pytest.raises(ValueError, match="class counts"):
        zero_shot_losses(z, torch.randn(4, 5))
    with pytest.raises(ValueError, match="NaN|finite"):
        zero_shot_losses(torch.full((4, 3), float("nan")), z)


class _NoTrainSplit(dict):
    """The splits of a dataset whose train split raises on any access."""

    reads: list[str] = []

    def __getitem__(self, name: str):
        _NoTrainSplit.reads.append(name)
        if name == "train":
            raise AssertionError("zskt read the training split")
        return super().__getitem__(name)


def _pair_without_train_split() -> Pair:
    pair = load_pair("digits")
    ds = pair.dataset
    splits = _NoTrainSplit(val=ds.split("val").subset(64), test=ds.split("test").subset(64))
    guarded = Dataset(ds.name, ds.task, lambda: splits, num_classes=ds.num_classes)
    return Pair("digits", pair.teacher, pair.student, dataset=guarded)


def test_zskt_trains_on_generated_inputs_only_and_never_reads_the_train_split(tmp_path):
    store = RunStore(tmp_path)
    pair = _pair_without_train_split()
    cfg = JobConfig(pair="digits", objective="zskt", epochs=2, val_size=64, checkpoints=0,
                    params={"pseudo_batches": 4, "n_s": 2, "batch": 16})  # fmt: skip
    _NoTrainSplit.reads.clear()
    res = run_job(cfg, store=store, pair=pair)
    assert res.state == "completed", res.error
    assert "train" not in _NoTrainSplit.reads and {"val", "test"} <= set(_NoTrainSplit.reads)
    steps = store.metrics(res.run_id, "step")
    assert steps["step"].tolist() == [3, 6, 9, 12]  # 4 pseudo-batches of n_G + n_S = 3 steps
    assert (steps["loss_g"] <= 0).all()  # L_G = −D at the generator step
    assert (steps["d"] >= 0).all() and res.step == 12
    from safetensors.numpy import load

    samples = load(store.read_artifact(res.run_id, "zskt_samples.safetensors"))
    assert sorted(samples) == ["epoch_0", "epoch_1", "epoch_2"] and samples["epoch_2"].shape == (16, 1, 8, 8)
    assert not np.allclose(samples["epoch_0"], samples["epoch_2"])  # the generator trained
    zs = res.metrics["zskt"]
    assert 0.0 <= zs["test_acc"] <= 1.0 and zs["at_layers"] == {"conv1": "conv2", "conv2": "conv3"}
    assert store.metrics(res.run_id, "epoch")["val_acc"].notna().all()


def test_zskt_is_refused_on_a_language_model_before_anything_runs(tmp_path):
    store = RunStore(tmp_path)
    cfg = JobConfig(pair="tinylang", objective="zskt", epochs=1)
    with pytest.raises(InvalidParameterError, match="causal_lm.*generator makes images"):
        run_job(cfg, store=store)
    assert len(store.list_runs()) == 0
    bad = replace(cfg, pair="digits", params={"at_layers": {"conv1": "conv1"}})
    with pytest.raises(InvalidParameterError, match="same spatial size"):
        run_job(bad, store=store)
