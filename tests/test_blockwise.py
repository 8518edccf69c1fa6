"""Block-wise logit distillation (methods/14 §14.3): the loss against float64 numpy, its identities
(n = 1 is classic KD; student = teacher leaves (2 − 2^{1−n})·(1 − λ)·CE; N_i is the explicit
composition), the stage split of a model (kdcore/stages.py) and its refusals, and the run end to end
on digits from the API and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.blockwise import check, default_stage_map
from kdcore.losses import kd_loss
from kdcore.losses.blockwise import blockwise_components, blockwise_logit_loss, stepping_stone_logits, stone_weights
from kdcore.stages import StageSplit
from kdcore.validation import InvalidParameterError
from sample_models import load_pair

BASE = JobConfig(
    pair="digits", objective="blockwise", epochs=1, max_steps=2, train_size=64, val_size=64, checkpoints=0,
    batch_size=32, lr=1e-2,
)  # fmt: skip


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kd(s: np.ndarray, t: np.ndarray, y: np.ndarray, T: float, lam: float, ce: bool = True) -> float:
    """(1 − λ)·CE + λ·T²·KL(p_T ‖ q_T), batch mean, in float64 numpy."""
    ls, lt = _np_log_softmax(s / T), _np_log_softmax(t / T)
    kl = (np.exp(lt) * (lt - ls)).sum(-1).mean()
    ce_v = -_np_log_softmax(s)[np.arange(len(y)), y].mean()
    return ((1 - lam) * ce_v if ce else 0.0) + lam * T * T * kl


def test_the_loss_is_the_weighted_sum_of_every_stones_kd_in_float64():
    rng = np.random.default_rng(0)
    n, B, C, T, lam = 3, 6, 5, 3.0, 0.7
    stones = [rng.normal(size=(B, C)) * 2 for _ in range(n)]
    t, y = rng.normal(size=(B, C)) * 2, rng.integers(0, C, B)
    for ce_in_stones in (True, False):
        total, parts = blockwise_components(
            [torch.tensor(s) for s in stones], torch.tensor(t), torch.tensor(y), temperature=T, lam=lam,
            ce_in_stones=ce_in_stones,
        )  # fmt: skip
        want = [_np_kd(s, t, y, T, lam, ce=ce_in_stones or i == n - 1) for i, s in enumerate(stones)]
        assert [parts[f"stone{i + 1}"].item() for i in range(n)] == pytest.approx(want, rel=1e-10)
        assert total.item() == pytest.approx(sum(w / 2 ** (n - 1 - i) for i, w in enumerate(want)), rel=1e-10)
    assert stone_weights(3) == [0.25, 0.5, 1.0] and sum(stone_weights(5)) == 2 - 2 ** (1 - 5)


def test_the_dkd_base_is_ce_and_dkd_weighted_by_lambda():
    from kdcore.losses import dkd_loss

    g = torch.Generator().manual_seed(3)
    stones = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    t, y = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (5,), generator=g)
    total, parts = blockwise_components(stones, t, y, temperature=2.0, lam=0.6, base="dkd")
    for z, got in zip(stones, parts.values()):
        ce = -_np_log_softmax(z.numpy())[np.arange(5), y.numpy()].mean()
        assert got.item() == pytest.approx(0.4 * ce + 0.6 * dkd_loss(z, t, y, temperature=2.0).item(), rel=1e-10)
    assert total.item() == pytest.approx(0.5 * parts["stone1"].item() + parts["stone2"].item(), rel=1e-12)


def _mlp_blocks(seed: int, widths: list[int]) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Linear(a, b), nn.Tanh()).double() for a, b in zip(widths, widths[1:])]


def test_with_one_block_the_loss_is_classic_kd_in_float64():
    torch.manual_seed(1)
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    (s_block,), (t_block,) = _mlp_blocks(2, [4, 6]), _mlp_blocks(3, [4, 7])
    s_head, t_head = nn.Linear(6, 3).double(), nn.Linear(7, 3).double()
    loss, parts = blockwise_logit_loss([s_block], [t_block], s_head, t_head, [], x, y, temperature=4.0, lam=0.9)
    with torch.no_grad():
        z_s, z_t = s_head(s_block(x)), t_head(t_block(x))
    assert loss.item() == pytest.approx(kd_loss(z_s, z_t, y, temperature=4.0, lam=0.9).item(), rel=1e-12)
    assert loss.item() == pytest.approx(_np_kd(z_s.numpy(), z_t.numpy(), y.numpy(), 4.0, 0.9), rel=1e-10)
    assert list(parts) == ["stone1"]


def test_stones_are_the_explicit_compositions_and_a_copy_of_the_teacher_leaves_only_ce():
    n, lam = 3, 0.8
    t_blocks = _mlp_blocks(4, [4, 5, 6, 7])
    s_blocks = _mlp_blocks(5, [4, 3, 3, 2])
    t_head, s_head = nn.Linear(7, 4).double(), nn.Linear(2, 4).double()
    phis = [nn.Linear(3, 5).double(), nn.Linear(3, 6).double()]
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 4, (5,))
    stones, z_t = stepping_stone_logits(s_blocks, t_blocks, s_head, t_head, phis, x)
    with torch.no_grad():
        s1, s2 = s_blocks[0](x), s_blocks[1](s_blocks[0](x))
        n1 = t_head(t_blocks[2](t_blocks[1](phis[0](s1))))
        n2 = t_head(t_blocks[2](phis[1](s2)))
        assert torch.allclose(z_t, t_head(t_blocks[2](t_blocks[1](t_blocks[0](x)))))  # N_0 = f_T
        assert torch.allclose(stones[0], n1) and torch.allclose(stones[1], n2)
        assert torch.allclose(stones[2], s_head(s_blocks[2](s2)))  # N_n = f_S
    ident = [nn.Identity(), nn.Identity()]
    loss, _ = blockwise_logit_loss(t_blocks, t_blocks, t_head, t_head, ident, x, y, lam=lam)
    ce = -_np_log_softmax(z_t.numpy())[np.arange(5), y.numpy()].mean()
    assert loss.item() == pytest.approx((2 - 2 ** (1 - n)) * (1 - lam) * ce, rel=1e-10)


def test_the_loss_refuses_bad_input_naming_it():
    b = _mlp_blocks(0, [4, 4, 4])
    h = nn.Linear(4, 3).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(InvalidParameterError, match="same number of stages"):
        stepping_stone_logits(b, b[:1], h, h, [nn.Identity()], x)
    with pytest.raises(InvalidParameterError, match="n − 1 = 1 connectors"):
        stepping_stone_logits(b, b, h, h, [], x)
    with pytest.raises(InvalidParameterError, match="Connector 1 .* gives shape"):
        stepping_stone_logits(b, b, h, h, [nn.Linear(4, 5).double()], x)
    z = [torch.randn(2, 3)]
    with pytest.raises(InvalidParameterError, match="temperature"):
        blockwise_components(z, torch.randn(2, 3), temperature=0.0)
    with pytest.raises(InvalidParameterError, match="lam"):
        blockwise_components(z, torch.randn(2, 3), lam=1.5)
    with pytest.raises(InvalidParameterError, match="base"):
        blockwise_components(z, torch.randn(2, 3), base="fitnets")
    with pytest.raises(InvalidParameterError, match=r"unknown parameter\(s\) \['lambda'\]"):
        blockwise_components(z, torch.randn(2, 3), **{"lambda": 0.5})
    with pytest.raises(ValueError, match="class counts .* differ"):
        blockwise_components(z, torch.randn(2, 4))


# ---- the stage split ---------------------------------------------------------------------------------


def test_a_split_cnn_runs_from_a_stage_as_its_explicit_tail():
    pair = load_pair("digits")
    teacher = pair.teacher.clone(reinit=False).model.eval()
    x = pair.dataset.split("val").inputs[:4]
    split = StageSplit.of(teacher, ["conv1", "conv2", "conv3"], x, who="teacher")
    with torch.no_grad():
        logits, outs = split.forward_stages(x)
        h = torch.randn_like(outs[0])
        want = teacher.head(teacher.conv3(teacher.conv2(h)).mean(dim=(2, 3)))
        assert torch.allclose(split.run_from(0, h, x), want, atol=1e-6)
        assert torch.allclose(logits, teacher(x)) and torch.allclose(split.run_from(2, outs[2], x), logits, atol=1e-6)


class _Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.b(self.a(x)) + x)  # x skips across the cut after `a`


def test_a_split_is_refused_with_the_reason_and_the_fix():
    x = torch.randn(4, 3)
    with pytest.raises(InvalidParameterError, match="no module 'bb'.*Did you mean 'b'"):
        StageSplit.of(_Skip(), ["a", "bb"], x)
    with pytest.raises(InvalidParameterError, match="not once each in the order named"):
        StageSplit.of(_Skip(), ["b", "a"], x)
    with pytest.raises(InvalidParameterError, match="'a' is not a cut.*skip connection"):
        StageSplit.of(_Skip(), ["a", "b"], x)


def test_the_sample_pairs_stages_pair_by_spatial_size_and_bad_stages_are_refused():
    pair = load_pair("digits")
    probe = pair.dataset.split("val").inputs[:2]
    assert default_stage_map(pair.student, pair.teacher, probe) == {"conv1": "conv2", "conv2": "conv3"}
    shapes = load_pair("shapes")
    probe = shapes.dataset.split("val").inputs[:2]
    assert default_stage_map(shapes.student, shapes.teacher, probe) == {"conv1": "conv1", "conv2": "conv4"}
    bad = JobConfig(pair="digits", objective="blockwise", params={"stages": {"conv1": "conv1", "conv2": "conv3"}})
    with pytest.raises(InvalidParameterError, match="spatial sizes differ"):
        check(bad, pair)
    bad = JobConfig(pair="digits", objective="blockwise", params={"stages": {"conv1": "conv2", "conv9": "conv3"}})
    with pytest.raises(InvalidParameterError, match="student has no module 'conv9'"):
        check(bad, pair)
    lm = JobConfig(pair="tinylang", objective="blockwise")
    with pytest.raises(ValueError, match="classification"):
        run_job(lm, use_store=False)


# ---- the run ---------------------------------------------------------------------------------------------


def test_blockwise_runs_on_digits_recording_every_stone(tmp_path):
    store = RunStore(tmp_path)
    res = run_job(replace(BASE, checkpoints=1), store=store)  # a checkpoint probes the student and teacher
    assert res.state == "completed", res.error
    assert len(store.metrics(res.run_id, "checkpoint"))
    steps = store.metrics(res.run_id, "step")
    assert len(steps) == 2 and steps[["stone1", "stone2"]].notna().all().all()
    assert np.allclose(steps["loss"], 0.5 * steps["stone1"] + steps["stone2"], rtol=1e-5)
    epochs = store.metrics(res.run_id, "epoch")
    assert epochs["val_acc_stone1"].notna().all()  # epoch 0 (before training) and epoch 1
    bw = res.metrics["blockwise"]
    assert bw["student_stages"] == ["conv1", "conv2"] and bw["teacher_stages"] == ["conv2", "conv3"]
    assert epochs["teacher_params_with_grad"].dropna().eq(0).all()  # the teacher copy is frozen
    pair = load_pair("digits")
    assert all(p.grad is None for p in pair.teacher.model.parameters())  # the shared teacher untouched


def test_cli_distill_runs_blockwise(data_dir, capsys):
    argv = ["distill", "--pair", "digits", "--objective", "blockwise", "--max-steps", "1", "--train-size", "32"]
    argv += ["--val-size", "32", "--param", 'stages={"conv1": "conv2", "conv2": "conv3"}', "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed" and out["metrics"]["blockwise"]["weights"] == [0.5, 1.0]


def test_a_queued_blockwise_run_is_run_by_the_worker_as_the_procedure(tmp_path):
    from kdcore.jobs.worker import run_queued, submit

    store = RunStore(tmp_path)
    rid = submit(BASE, store=store, start_worker=False)  # what the Distill form does
    run_queued(rid, store)
    run = store.get_run(rid)
    assert run["state"] == "completed", run["error"]
    assert run["summary"]["blockwise"]["teacher_stages"] == ["conv2", "conv3"]
    assert "stone2" in store.metrics(rid, "step").columns


def test_a_procedure_is_refused_as_a_term_of_a_sum():
    cfg = JobConfig(pair="digits", objective="sum", terms=[{"name": "kd"}, {"name": "blockwise", "weight": 0.5}])
    with pytest.raises(InvalidParameterError, match="'blockwise' is a training procedure.*objective='blockwise'"):
        run_job(cfg, use_store=False)


def test_job_schedules_are_refused_on_a_procedure():
    cfg = replace(BASE, schedules={"temperature": {"kind": "cosine", "start": 8.0, "end": 2.0}})
    with pytest.raises(InvalidParameterError, match="schedules do not reach.*remove `schedules`"):
        run_job(cfg, use_store=False)
