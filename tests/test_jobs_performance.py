"""The job's memory and speed options: precision, grad_accum, grad_checkpointing, attn_implementation,
lm_chunked (kdcore.jobs.performance, kdcore.jobs.lm_step), on the sample tinylang pair and a tiny
Hugging Face Llama pair with tied embeddings built offline."""

from __future__ import annotations

import pytest
import torch

from kdcore.jobs.config import ConfigError, JobConfig
from kdcore.jobs.runner import run_job

_FAST = dict(
    objective="token", epochs=1, max_steps=3, batch_size=8, train_size=24, val_size=8, checkpoints=1, probe_size=4
)


def _losses(config: JobConfig, pair=None) -> tuple[list[float], dict]:
    events: list[dict] = []
    result = run_job(config, use_store=False, pair=pair, callback=events.append)
    assert result.state == "completed", result.error
    return [e["metrics"]["loss"] for e in events if e["event"] == "step"], result.metrics


def test_option_fields_are_validated_all_at_once():
    cfg = JobConfig(precision="fp16", grad_accum=0, grad_checkpointing="yes", attn_implementation="flash", lm_chunked=1)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    text = str(err.value)
    for field in ("precision", "grad_accum", "grad_checkpointing", "attn_implementation", "lm_chunked"):
        assert f"'{field}'" in text
    with pytest.raises(ConfigError, match="at most batch_size"):
        JobConfig(batch_size=4, grad_accum=8).validate()
    assert JobConfig.from_dict(JobConfig(precision="bf16", grad_accum=2).to_dict()).grad_accum == 2


@pytest.mark.parametrize("chunked", [False, True])
def test_gradient_accumulation_equals_the_big_batch(chunked):
    big, _ = _losses(JobConfig(pair="tinylang", lm_chunked=chunked, **_FAST))
    small, _ = _losses(JobConfig(pair="tinylang", lm_chunked=chunked, grad_accum=3, **_FAST))  # 8 = 3 + 3 + 2
    assert len(big) == 3
    # step 1's loss is the same batch; steps 2, 3 follow equal updates only if the gradients were equal
    assert small == pytest.approx(big, rel=1e-5)


def test_chunked_job_equals_the_full_logits_job_and_bf16_stays_close():
    full, m_full = _losses(JobConfig(pair="tinylang", lm_chunked=False, **_FAST))
    chunked, m_chunked = _losses(JobConfig(pair="tinylang", **_FAST))
    assert (m_full["lm_chunked"], m_chunked["lm_chunked"]) == (0.0, 1.0)
    assert chunked == pytest.approx(full, rel=1e-5)
    bf16, _ = _losses(JobConfig(pair="tinylang", precision="bf16", **_FAST))
    assert bf16 == pytest.approx(full, rel=2e-2) and bf16 != full  # autocast ran, in float32 loss arithmetic


def test_bf16_without_support_and_checkpointing_without_hf_are_refused_before_running(monkeypatch):
    import kdcore.jobs.performance as perf

    monkeypatch.setattr(perf, "bf16_supported", lambda device: False)
    with pytest.raises(ValueError, match="needs a device with bf16 support"):
        run_job(JobConfig(pair="tinylang", precision="bf16", **_FAST), use_store=False)
    with pytest.raises(ValueError, match="gradient_checkpointing_enable"):
        run_job(JobConfig(pair="tinylang", grad_checkpointing=True, **_FAST), use_store=False)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from kdcore.adapters import load_hf
    from kdcore.data import load_hf_text
    from kdcore.pairs import Pair
    from tests.helpers.hf_pairs import llama_pair

    root = tmp_path_factory.mktemp("llama")
    t_dir, s_dir = llama_pair(root)
    text = " ".join(f"the cat {i} sat on the mat and the dog ran" for i in range(60)).encode()
    data = load_hf_text(text, t_dir, student_dir=s_dir, context_length=16, mode="pack")
    teacher, student = load_hf(t_dir), load_hf(s_dir)
    return Pair("llama", teacher, student, dataset=data)


def test_hf_pair_sdpa_checkpointing_chunked_bf16_equal_the_plain_loop(llama):
    teacher_impl = llama.teacher.model.config._attn_implementation
    plain, m_plain = _losses(JobConfig(pair="llama", lm_chunked=False, attn_implementation="eager", **_FAST), llama)
    fast, m_fast = _losses(JobConfig(pair="llama", grad_checkpointing=True, **_FAST), llama)  # auto: sdpa
    assert (m_plain["lm_chunked"], m_fast["lm_chunked"]) == (0.0, 1.0)
    assert fast == pytest.approx(plain, rel=1e-4)
    mixed, _ = _losses(JobConfig(pair="llama", precision="bf16", grad_accum=2, **_FAST), llama)
    assert mixed == pytest.approx(plain, rel=2e-2)
    assert llama.teacher.model.config._attn_implementation == teacher_impl == "eager"  # the shared model untouched
    assert not _checkpointing(llama.student.model)


def test_configure_models_sets_the_jobs_copies_only(llama):
    from kdcore.jobs.performance import configure_models, run_problems

    student = llama.student.clone()
    cfg = JobConfig(grad_checkpointing=True)
    teacher, student = configure_models(cfg, llama.teacher, student, needs_attn=False)
    assert teacher.model is not llama.teacher.model and teacher.model.config._attn_implementation == "sdpa"
    assert llama.teacher.model.config._attn_implementation == "eager"
    shared = zip(teacher.model.parameters(), llama.teacher.model.parameters())
    assert all(a.data_ptr() == b.data_ptr() for a, b in shared)  # the copy shares the teacher's weights
    assert student.model.config._attn_implementation == "sdpa" and _checkpointing(student.model)
    teacher2, _ = configure_models(JobConfig(), llama.teacher, llama.student.clone(), needs_attn=True)
    assert teacher2.model is llama.teacher.model  # already eager: nothing to change, nothing copied
    problems = run_problems(JobConfig(attn_implementation="sdpa"), student, teacher, torch.device("cpu"), True)
    assert len(problems) == 1 and "returns no attention weights" in problems[0]


def _checkpointing(model) -> bool:
    flag = (
        "is_activation_checkpointing"
        if hasattr(type(model), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(model, flag))


def test_cli_flags_set_the_fields():
    from kdcore.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        ["distill", "--precision", "bf16", "--grad-accum", "4", "--grad-checkpointing"]
        + ["--attn-implementation", "eager", "--no-lm-chunked"]
    )
    cfg = config_from_args(args)
    assert (cfg.precision, cfg.grad_accum, cfg.grad_checkpointing, cfg.attn_implementation, cfg.lm_chunked) == (
        "bf16",
        4,
        True,
        "eager",
        False,
    )
    defaults = config_from_args(build_parser().parse_args(["distill"]))
    assert (defaults.precision, defaults.grad_accum, defaults.lm_chunked) == ("fp32", 1, True)
