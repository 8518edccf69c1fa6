"""Views and the doctor on a large vocabulary: the teacher's top-k classes plus one exact "rest" bucket,
figures whose trace count does not grow with the vocabulary, statistics streamed over rows (checked
against plain numpy float64), and the doctor on a tiny Hugging Face Llama pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import soft_labels as sl
from app import figures
from kdcore import metrics
from kdcore.doctor import RunRecord, diagnose_run, streams
from kdcore.doctor import context as doctor_context
from kdcore.doctor.context import Context
from kdcore.jobs.config import JobConfig

V = 5000


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, V, generator=g) * 3, torch.randn(6, V, generator=g) * 3  # teacher, student


def test_class_probabilities_keep_the_teachers_top_k_and_an_exact_rest(logits):
    t, s = logits
    temps, k = [0.5, 1.0, 4.0], 7
    df = sl.class_probabilities(
        t, temps, student_logits=s, samples=[1, 4], top=k, token_names=lambda ids: [f"<{i}>" for i in ids]
    )
    assert len(df) == 2 * 2 * len(temps) * (k + 1) and df.attrs["n_classes"] == V
    for i in (1, 4):
        top = np.argsort(-t[i].double().numpy(), kind="stable")[:k]  # the teacher's ranking
        others = np.setdiff1d(np.arange(V), top)
        for role, z in (("teacher", t[i]), ("student", s[i])):
            for temp in temps:
                p = _softmax(z.double().numpy() / temp)
                d = df[(df["sample"] == i) & (df["role"] == role) & (df["temperature"] == temp)]
                assert d["class_index"].tolist() == [*top.tolist(), sl.REST]
                np.testing.assert_allclose(d["probability"].to_numpy()[:k], p[top], rtol=1e-10)
                np.testing.assert_allclose(d["probability"].to_numpy()[-1], p[others].sum(), rtol=1e-10)
                assert d["class_name"].tolist()[:k] == [f"<{c}>" for c in top]
                assert d["class_name"].tolist()[-1] == f"the rest ({V - k} classes)"
    small = sl.class_probabilities(t[:, :5], temps, top=7)  # at most top classes: all of them, no rest
    assert sl.REST not in small["class_index"].tolist() and len(small) == 3 * len(temps) * 5
    with pytest.raises(ValueError, match="'top'"):
        sl.class_probabilities(t, temps, top=0)


@pytest.mark.parametrize("vocab", [30, V])
def test_class_figure_traces_are_bounded_whatever_the_vocabulary(logits, vocab):
    t, s = logits
    df = sl.class_probabilities(t[:, :vocab], [1.0, 2.0], student_logits=s[:, :vocab], samples=[0, 1, 2])
    fig = sl.figure_class_probabilities(df, top=10)
    assert len(fig.data) <= 3 * (10 + 1) * 2
    assert len([tr for tr in fig.data if tr.name == "the rest"]) == 3 * 2
    assert "the teacher's top 10 of" in fig.layout.title.text
    # the rest curve plus the drawn classes sum to 1 for every sample, model and temperature
    for sample in range(3):
        axis = "x" if sample == 0 else f"x{sample + 1}"
        for dash in ("solid", "dash"):
            ys = [np.asarray(tr.y, dtype=float) for tr in fig.data if tr.xaxis == axis and tr.line.dash == dash]
            np.testing.assert_allclose(np.sum(ys, axis=0), 1.0, rtol=1e-9)


def test_probabilities_at_shows_top_bars_and_the_rest(logits):
    t, s = logits
    fig = figures.probabilities_at(t[0], s[0], 2.0, token_names={int(i): f"tok{int(i)}" for i in range(V)}, top=20)
    bars = fig.to_dict()["data"]
    assert [len(b["x"]) for b in bars] == [21, 21]
    top = np.argsort(-t[0].double().numpy(), kind="stable")[:20]
    p, q = _softmax(t[0].double().numpy() / 2), _softmax(s[0].double().numpy() / 2)
    np.testing.assert_allclose(bars[0]["y"], [*p[top], 1 - p[top].sum()], rtol=1e-9)
    np.testing.assert_allclose(bars[1]["y"], [*q[top], 1 - q[top].sum()], rtol=1e-9)
    assert list(bars[0]["x"][:3]) == [f"tok{i}" for i in top[:3]] and bars[0]["x"][-1].startswith("the rest")


def test_sweeps_streamed_over_rows_match_numpy(logits, monkeypatch):
    t, s = logits
    monkeypatch.setattr(sl, "CHUNK_LOGITS", 2 * V)  # 2 rows per chunk: 3 chunks
    temps = [1.0, 3.0]
    sweep = sl.temperature_sweep(t, temps)
    grad = sl.gradient_scale(s, t, temps)
    for j, temp in enumerate(temps):
        p = _softmax(t.double().numpy() / temp)
        q = _softmax(s.double().numpy() / temp)
        ent = -(p * np.log(p)).sum(-1)
        assert sweep["entropy"][j] == pytest.approx(ent.mean(), rel=1e-10)
        assert sweep["dark_knowledge"][j] == pytest.approx((1 - p.max(-1)).mean(), rel=1e-9)
        kl = (p * (np.log(p) - np.log(q))).sum(-1)
        assert grad["t2_kl"][j] == pytest.approx((temp**2 * kl).mean(), rel=1e-9)
        assert grad["grad_norm"][j] == pytest.approx((temp * np.linalg.norm(q - p, axis=-1)).mean(), rel=1e-9)
    dz = s.double().numpy() - t.double().numpy()
    limit = ((dz - dz.mean(-1, keepdims=True)) ** 2).sum(-1) / (2 * V)
    np.testing.assert_allclose(sl.logit_matching_limit(s, t).numpy(), limit, rtol=1e-10)


def test_confidence_bins_equal_reliability_bins():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(300, 9, generator=g) * 2, -1).double()
    y = torch.randint(0, 9, (300,), generator=g)
    a = metrics.reliability_bins(p, y)
    conf, pred = p.max(1)
    b = metrics.confidence_bins(conf, pred == y)
    for key in a:
        assert torch.allclose(a[key], b[key], equal_nan=True), key
    assert metrics.calibration_error_from_bins(b) == pytest.approx(metrics.expected_calibration_error(p, y), rel=1e-12)


class _LM:
    """A stand-in causal-LM dataset split: inputs and targets [N, L]."""

    def __init__(self, x, y):
        self.inputs, self.targets = x, y


class _Data:
    task, vocab_size = "causal_lm", 64

    def __init__(self, x, y):
        self._s = _LM(x, y)

    def split(self, name):
        return self._s


class _Fixed:
    """An adapter returning fixed logits for the rows it is given (rows are looked up by their first token)."""

    kind, output_size = "causal_lm", 64

    def __init__(self, table):
        self.table = table

    def logits(self, x):
        return self.table[x[:, 0]]


def test_doctor_streams_match_a_direct_computation(monkeypatch):
    g = torch.Generator().manual_seed(2)
    n, L, v = 12, 5, 64
    x = torch.arange(n)[:, None].repeat(1, L)  # row i starts with token i
    y = torch.randint(0, v, (n, L), generator=g)
    y[::3, :2] = -100
    table = torch.randn(n, L, v, generator=g) * 4
    monkeypatch.setattr(doctor_context, "CHUNK_LOGITS", 2 * L * v)  # 2 sequences per chunk
    ctx = Context(
        RunRecord(JobConfig(objective="token", params={"kind": "fkl"}).to_dict()), _Fixed(table), None, _Data(x, y)
    )
    keep = y != -100
    rows, labels = table[keep].double(), y[keep]
    logp = torch.log_softmax(rows, -1)
    nll, acc = streams.nll_accuracy(ctx, "teacher", "val")
    assert nll == pytest.approx(float(-logp.gather(1, labels[:, None]).mean()), rel=1e-5)
    assert acc == pytest.approx(float((rows.argmax(-1) == labels).double().mean()))
    tail = torch.softmax(rows / 2, -1)[:, 50:].sum(-1).mean()
    assert streams.tail_mass(ctx, "teacher", 50, 2.0) == pytest.approx(float(tail), rel=1e-10)
    grid = [2 ** (k / 8) for k in range(-24, 41)]
    nlls = [streams.nll_at(ctx, table, y, tau) for tau in grid]
    assert (
        streams.grid_argmin_unimodal(lambda tau: streams.nll_at(ctx, table, y, tau), grid) == grid[int(np.argmin(nlls))]
    )
    conf, right = streams.confidence(ctx, table, y, 1.5)
    p = torch.softmax(rows / 1.5, -1)
    assert torch.allclose(conf, p.max(-1).values, rtol=1e-12, atol=0)
    assert torch.equal(right, p.argmax(-1) == labels)


def test_the_lm_probe_is_bounded_by_its_logit_budget(monkeypatch):
    x = torch.zeros(64, 8, dtype=torch.long)
    ctx = Context(RunRecord(JobConfig().to_dict()), _Fixed(torch.zeros(1, 8, 64)), None, _Data(x, x))
    monkeypatch.setattr(doctor_context, "PROBE_LOGITS", 10 * 8 * 64)
    assert ctx.train_probe[0].shape[0] == 10 and ctx.val_probe[0].shape[0] == 10


@pytest.mark.slow  # builds and loads two Hugging Face models (~3 s of CPU)
def test_the_doctor_runs_on_a_tiny_hf_llama_pair(tmp_path):
    from kdcore.adapters.hf_load import load_hf
    from kdcore.data.hf_text import load_hf_text
    from tests.helpers.hf_pairs import llama_pair

    teacher_dir, student_dir = llama_pair(tmp_path)
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    text = "\n\n".join(" ".join(rng.choice(words, 12)) + "." for _ in range(120))
    data = load_hf_text(text.encode(), teacher_dir, student_dir=student_dir, context_length=32)
    cfg = JobConfig(pair="hf", objective="token", params={"kind": "fkl", "temperature": 2.0}, ce_weight=0.5, epochs=2)
    steps = pd.DataFrame({"step": np.arange(1, 11), "epoch": np.repeat([1, 2], 5), "loss": np.linspace(6, 5, 10)})
    record = RunRecord(cfg.to_dict(), steps=steps, summary={"final_val_loss": 5.0})
    report = diagnose_run(record, teacher=load_hf(teacher_dir), student=load_hf(student_dir), dataset=data)
    assert not [c for c, s in report.checks.items() if s.startswith("failed")], report.checks
    for check in (
        "lm.padded_vocab",
        "lm.tokenizers",
        "teacher.miscalibrated",
        "soft_labels.one_hot",
        "balance.kd_negligible",
    ):
        assert report.checks[check] == "ran", (check, report.checks[check])
    assert "soft_labels.uniform" in {f.id for f in report.findings}  # random weights: nearly uniform at T = 2


def test_component_figures_pool_the_classes_beyond_top_into_an_exact_rest():
    from analyses import components as comp

    g = torch.Generator().manual_seed(3)
    n, c = 400, 60
    t, s = torch.randn(n, c, generator=g) * 2, torch.randn(n, c, generator=g) * 2
    y = torch.randint(0, c, (n,), generator=g)
    res = comp.compute(s, t, y, rules=("target",))
    fig = comp.class_figure(res, top=8)
    assert all(len(tr.x) == 9 for tr in fig.data) and fig.data[0].x[-1].startswith("the rest")
    ps = res.per_sample
    total = ps.groupby("class")["kl"].sum()
    kept = set(total.sort_values(ascending=False, kind="stable").index[:8].tolist())
    others = ps[~ps["class"].isin(kept)]  # the samples of every class not drawn
    share_bcd = [tr for tr in fig.data if tr.name == "BCD"][1].y[-1]  # right panel: shares
    assert share_bcd == pytest.approx(others["bcd"].sum() / others["kl"].sum(), rel=1e-9)
    mean_bcd = [tr for tr in fig.data if tr.name == "BCD"][0].y[-1]
    assert mean_bcd == pytest.approx(others["bcd"].mean(), rel=1e-9)
    assert len(comp.dkd_figure(res, top=8).data[0].x) == 9
    small = comp.compute(s[:, :5], t[:, :5], y % 5, rules=("target",))
    assert all(len(tr.x) == 5 for tr in comp.class_figure(small, top=8).data)


def test_the_repeated_pass_and_balance_inputs_fit_their_budgets(monkeypatch):
    from kdcore.doctor import balance, inputs

    x = torch.zeros(64, 8, dtype=torch.long)
    ctx = Context(RunRecord(JobConfig(batch_size=16).to_dict()), _Fixed(torch.zeros(1, 8, 64)), None, _Data(x, x))
    monkeypatch.setattr(inputs, "PASS_LOGITS", 2 * 4 * 64)  # 2 sequences of 4 positions
    assert tuple(inputs._inputs(ctx).shape) == (2, 4)
    monkeypatch.setattr(balance, "BATCH_LOGITS", 3 * 8 * 64)
    monkeypatch.setattr(balance, "REPLAY_LOGITS", 3 * 8 * 64)
    xs, ys, bs, batches = balance._replay(ctx)
    assert (bs, batches, tuple(xs.shape)) == (3, 1, (64, 8))
    monkeypatch.setattr(balance, "BATCH_LOGITS", 5 * 64)  # not even one sequence: a 5-token prefix
    monkeypatch.setattr(balance, "REPLAY_LOGITS", 8 * 64)
    xs, ys, bs, batches = balance._replay(ctx)
    assert (bs, batches, tuple(xs.shape), tuple(ys.shape)) == (1, 1, (64, 5), (64, 5))
