"""SeqKD and hybrid runs end to end (methods/15 §15.1, §15.2): tinylang and a tiny HF llama pair."""

from __future__ import annotations

import json

import pytest
import torch

from kdcore.jobs import JobConfig, run_job
from kdcore.jobs.store import RunStore

TINY = dict(pair="tinylang", max_steps=2, batch_size=16, epochs=1, train_size=32, val_size=16)


def _epoch0(store: RunStore, run_id: str) -> dict:
    e = store.metrics(run_id, "epoch")
    return e.iloc[0].to_dict()


def test_seqkd_on_tinylang_trains_on_the_teachers_completions_and_caches_them(tmp_path):
    store = RunStore(tmp_path)
    cfg = JobConfig(objective="seqkd", params={"decoding": "greedy", "alpha": 0.5}, **TINY)
    first = run_job(cfg, store=store)
    assert first.state == "completed", first.error
    steps = store.metrics(first.run_id, "step")
    assert {"nll", "word_ce", "word_fkl"} <= set(steps.columns)
    loss = steps["loss"].to_numpy()
    torch.testing.assert_close(
        torch.tensor(loss),
        torch.tensor(0.5 * steps["nll"].to_numpy() + 0.5 * steps["word_ce"].to_numpy()),
        rtol=1e-5,
        atol=1e-6,
    )
    e0 = _epoch0(store, first.run_id)
    assert e0["seqkd_from_cache"] == 0.0 and e0["seqkd_truncated"] == 0.0 and e0["seqkd_max_new_tokens"] >= 1
    second = run_job(cfg, store=store)
    assert _epoch0(store, second.run_id)["seqkd_from_cache"] == 1.0
    torch.testing.assert_close(
        torch.tensor(store.metrics(second.run_id, "step")["loss"].to_numpy()), torch.tensor(loss)
    )  # same seed, same targets: the same run


def test_hybrid_on_tinylang_logs_both_terms_and_its_learned_gate(tmp_path):
    store = RunStore(tmp_path)
    cfg = JobConfig(objective="hybrid", params={"decoding": "greedy", "gate": "learned"}, teacher_cache=True, **TINY)
    res = run_job(cfg, store=store)
    assert res.state == "completed", res.error
    assert any("teacher_cache is off" in n for n in res.notices)  # a recipe's cache does not apply to ŷ
    steps = store.metrics(res.run_id, "step")
    assert {"token_loss", "sentence_loss", "gate_g"} <= set(steps.columns)
    assert steps["gate_g"].iloc[0] == pytest.approx(0.5)  # θ₀ = 0
    assert steps["gate_g"].iloc[-1] != steps["gate_g"].iloc[0]  # θ is trained with the student


@pytest.mark.slow  # transformers' import and two saved models
def test_seqkd_on_a_tiny_hf_llama_pair_with_beam_search(tmp_path):
    from helpers.hf_pairs import llama_pair

    teacher, student = llama_pair(tmp_path)
    rows = [{"prompt": f"question {i} about cats", "completion": f"answer {i % 5}"} for i in range(20)]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    store = RunStore(tmp_path / "store")
    cfg = JobConfig(
        teacher=str(teacher),
        student=str(student),
        data=str(tmp_path / "qa.jsonl"),
        objective="seqkd",
        params={"max_new_tokens": 6, "num_beams": 2},
        max_steps=2,
        batch_size=8,
        epochs=1,
    )
    res = run_job(cfg, store=store)
    assert res.state == "completed", res.error
    e0 = _epoch0(store, res.run_id)
    assert e0["seqkd_max_new_tokens"] == 6.0 and 1 <= e0["seqkd_mean_len"] <= 6


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(params={"decoding": "beam", "num_beams": 0}), "num_beams"),
        (dict(objective="hybrid", params={"gate": "input", "decoding": "greedy"}), "gate 'input'"),
        (dict(pair="digits", params={"decoding": "greedy"}), "causal"),
    ],
)
def test_sequence_runs_refuse_what_they_cannot_do(changes, match):
    kw = dict(TINY, objective="seqkd")
    kw.update(changes)
    with pytest.raises(Exception, match=match):
        run_job(JobConfig(**kw), use_store=False)


def test_hf_data_without_a_completion_field_is_refused(tmp_path):
    from helpers.hf_pairs import llama_pair

    teacher, student = llama_pair(tmp_path)
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"prompt": f"q {i}"}) for i in range(10)))
    cfg = JobConfig(
        teacher=str(teacher), student=str(student), data=str(tmp_path / "p.jsonl"), objective="seqkd", max_steps=1
    )
    with pytest.raises(ValueError, match="no 'completion' field"):
        run_job(cfg, use_store=False)


def test_hybrid_token_term_on_the_teachers_completions_matches_seqkd_parts(tmp_path):
    store = RunStore(tmp_path)
    params = {"decoding": "greedy", "token_targets": "teacher", "reduction": "token"}
    res = run_job(JobConfig(objective="hybrid", params=params, **TINY), store=store)
    seq = run_job(JobConfig(objective="seqkd", params={"decoding": "greedy"}, **TINY), store=store)
    assert res.state == seq.state == "completed"
    h, s = store.metrics(res.run_id, "step").iloc[0], store.metrics(seq.run_id, "step").iloc[0]
    # step 1: same student init, same ŷ batch; pooled terms = seqkd's parts (KL on ŷ, NLL of ŷ)
    assert h["token_loss"] == pytest.approx(s["word_fkl"], rel=1e-5)
    assert h["sentence_loss"] == pytest.approx(s["nll"], rel=1e-5)
