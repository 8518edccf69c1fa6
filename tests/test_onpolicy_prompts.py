"""On-policy runs on prompt/completion records (methods/15 §15.0, kdcore.jobs.sequence_data): the
prompts=records|window|auto choice, the §15.0 masks of the data branch, prompts handed to generation,
right-aligned generated rows; held-out exact match (kdcore.jobs.heldout) per epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdcore.data.prompts import has_prompt_fields, tinylang_copy_prompts
from kdcore.jobs.config import JobConfig
from kdcore.jobs.heldout import exact_match_ids, heldout_prompts
from kdcore.jobs.onpolicy_checks import generation_problems
from kdcore.jobs.onpolicy_job import right_align
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import RunStore

FAST = dict(pair="tinylang", epochs=1, batch_size=8, train_size=8, val_size=8, probe_size=4, checkpoints=0)
RECORDS = dict(prompts="records", max_new_tokens=8)


def _logsm(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_right_align_moves_each_row_by_its_pad_count():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    ids, targets = torch.randint(5, 50, (3, 9), generator=g), torch.randint(5, 50, (3, 9), generator=g)
    got_ids, got_t = right_align(ids, targets, mask, pad=1)
    for i in range(3):
        k = int((mask[i] == 0).sum())
        want_ids = ids[i, k:].tolist() + [1] * k
        want_t = targets[i, k:].tolist() + [-100] * k
        assert got_ids[i].tolist() == want_ids and got_t[i].tolist() == want_t


def test_gkd_lambda0_on_records_is_supervised_fkl_on_the_completions(data_dir):
    from kdcore.jobs.resolve import resolve_pair

    store = RunStore()
    cfg = JobConfig(objective="gkd", params=dict(lmbda=0.0, divergence="fkl", **RECORDS), max_steps=1, **FAST)
    r = run_job(cfg, store=store)
    assert r.state == "completed", r.error
    pair = resolve_pair("tinylang")
    student = pair.student.clone(reinit=True, seed=0)  # the job's student before its first update
    ps = tinylang_copy_prompts("train", 8)  # the whole training subset is the one batch
    total, count = 0.0, 0
    for p, c in zip(ps.prompts, ps.completions or []):
        x = torch.tensor([p + c])
        with torch.no_grad():
            zs, zt = student.logits(x)[0].double().numpy(), pair.teacher.logits(x)[0].double().numpy()
        rows = slice(len(p) - 1, len(p) + len(c) - 1)  # §15.0: the positions predicting completion tokens
        lp, lq = _logsm(zt[rows]), _logsm(zs[rows])
        total += float((np.exp(lp) * (lp - lq)).sum())
        count += len(c)
    assert store.metrics(r.run_id, "step")["loss"].iloc[0] == pytest.approx(total / count, rel=1e-4)


def test_gkd_lambda1_generates_from_the_prompt_records(data_dir, monkeypatch):
    import kdcore.generation as gen

    seen = []
    real = gen.generate

    def spy(model, prompt_ids, prompt_mask=None, **kw):
        seen.append((prompt_ids.clone(), None if prompt_mask is None else prompt_mask.clone()))
        return real(model, prompt_ids, prompt_mask, **kw)

    monkeypatch.setattr(gen, "generate", spy)
    cfg = JobConfig(objective="gkd", params=dict(lmbda=1.0, **RECORDS), max_steps=1, **FAST)
    r = run_job(cfg, use_store=False)
    assert r.state == "completed" and r.metrics["onpolicy_share"] == 1.0
    (ids, mask), *_ = [(i, m) for i, m in seen if i.shape[0] == 8]  # the step's batch (held-out: 64 prompts)
    got = sorted(tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask))
    assert got == sorted(tuple(p) for p in tinylang_copy_prompts("train", 8).prompts)


def test_window_keeps_the_corpus_prompts_and_auto_keeps_them_on_tinylang(data_dir):
    from kdcore.jobs.resolve import resolve_pair
    from kdcore.jobs.sequence_data import onpolicy_prompts, sequence_data

    pair = resolve_pair("tinylang")
    for mode, name in (("window", "tinylang"), ("auto", "tinylang"), ("records", "tinylang copy")):
        cfg = JobConfig(objective="gkd", params=dict(prompts=mode), **FAST)
        assert onpolicy_prompts(cfg) == mode and sequence_data(cfg, pair, pair.dataset).name == name
    assert onpolicy_prompts(JobConfig(objective="token", **FAST)) is None


def test_records_on_a_plain_corpus_and_prompts_beyond_the_context_are_refused():
    from kdcore.data.base import Dataset
    from kdcore.jobs.sequence_data import sequence_data

    corpus = Dataset(name="corpus.txt", task="causal_lm", build=dict, vocab_size=10)
    cfg = JobConfig(objective="gkd", params=dict(prompts="records"), pair="tinylang")
    pair = type("P", (), {"name": "own"})()
    with pytest.raises(ValueError, match="prompts='records'.*'prompt' and 'completion'.*prompts='window'"):
        sequence_data(cfg, pair, corpus)
    base = dict(student_vocab=38, teacher_vocab=38, context=64, seq_len=64)
    p = generation_problems("gkd", dict(prompt_tokens=8, max_new_tokens=30), longest_prompt=64, **base)
    assert p and "no room to generate" in p[0]
    assert generation_problems("gkd", dict(prompt_tokens=90, max_new_tokens=30), longest_prompt=40, **base) == []


def test_has_prompt_fields(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"prompt": "x", "completion": "y"}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    (tmp_path / "c.csv").write_text("prompt,completion\nx,y\n")
    (tmp_path / "d.txt").write_text("prompt completion")
    assert [has_prompt_fields(tmp_path / n) for n in ("a.jsonl", "b.jsonl", "c.csv", "d.txt", "e.jsonl")] == [
        True,
        False,
        True,
        False,
        False,
    ]


def test_exact_match_ids_and_heldout_prompts():
    assert exact_match_ids([[1, 2], [3], [4, 5]], [[1, 2], [3, 0], [4, 5]]) == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="one reference per prediction"):
        exact_match_ids([[1]], [])
    from kdcore.data.tinylang import tinylang

    ps = heldout_prompts(tinylang(), n=5)
    assert ps is not None and ps.prompts == tinylang_copy_prompts("test", 5).prompts  # never the train/val split


def test_runs_record_heldout_exact_match_per_epoch(data_dir):
    store = RunStore()
    r = run_job(JobConfig(objective="token", max_steps=2, **FAST), store=store)
    ep = store.metrics(r.run_id, "epoch").sort_values("epoch")
    assert ep["teacher_heldout_em"].iloc[0] == pytest.approx(100.0)  # the shipped teacher copies perfectly
    assert ep["heldout_em"].notna().all() and r.metrics["final_heldout_em"] == ep["heldout_em"].iloc[-1]


def test_heldout_prompts_zero_turns_the_greedy_decoding_off(data_dir, monkeypatch):
    import kdcore.jobs.heldout as ho
    from kdcore.data.tinylang import tinylang

    assert heldout_prompts(tinylang(), n=0) is None
    monkeypatch.setattr(ho, "greedy_completions", lambda *a, **k: pytest.fail("decoded with heldout_prompts=0"))
    store = RunStore()
    r = run_job(JobConfig(objective="token", max_steps=2, heldout_prompts=0, **FAST), store=store)
    ep = store.metrics(r.run_id, "epoch")
    assert "heldout_em" not in ep.columns and "teacher_heldout_em" not in ep.columns
    assert "final_heldout_em" not in r.metrics and r.state == "completed"


@pytest.mark.parametrize("bad", [-1, 1.5, "64", None])
def test_heldout_prompts_must_be_a_count(bad):
    problems = JobConfig(heldout_prompts=bad).problems()
    assert any("heldout_prompts" in p for p in problems), problems


def test_cli_heldout_prompts_flag_reaches_the_config():
    from kdcore.cli import build_parser, config_from_args

    args = build_parser().parse_args(["distill", "--pair", "tinylang", "--heldout-prompts", "0"])
    assert config_from_args(args).heldout_prompts == 0


def test_a_fixed_teacher_is_scored_once_until_its_weights_change(monkeypatch):
    import kdcore.jobs.heldout as ho
    from kdcore.data.tinylang import tinylang
    from kdcore.jobs.resolve import resolve_pair

    calls = []
    real = ho.heldout_exact_match
    monkeypatch.setattr(ho, "heldout_exact_match", lambda *a: calls.append(1) or real(*a))
    teacher = resolve_pair("tinylang").teacher.clone()
    ps = heldout_prompts(tinylang(), n=4)
    first = ho.fixed_model_exact_match(teacher, ps, 64)
    assert ho.fixed_model_exact_match(teacher, ps, 64) == first and len(calls) == 1
    with torch.no_grad():
        next(teacher.model.parameters()).mul_(0.0)  # an in-place change bumps the weights' version
    ho.fixed_model_exact_match(teacher, ps, 64)
    assert len(calls) == 2
