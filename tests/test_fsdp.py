"""`--shard full` (kdcore/jobs/fsdp.py): a Hugging Face student sharded by FSDP2 over 2 gloo ranks trains
like one process on the same global batch, saves full weights that load into the Hugging Face model, and
resumes a one-process run and is resumed by one; what cannot shard is refused before anything runs."""

import numpy as np
import pytest

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, job, run_job
from kdcore.jobs.config import ConfigError
from kdcore.jobs.fsdp import check_shardable, transformer_layers
from kdcore.jobs.pair_source import pair_for_config
from tests.helpers.ddp_ranks import two_ranks
from tests.helpers.hf_pairs import llama_pair_with_corpus
from tests.helpers.toys import TOY

# one document: every position has a target (padded and prompt-masked rows: the ranks' slices carry their
# share of the batch's kept tokens, kdcore.jobs.step_weights; tests/test_step_weights.py checks those)
TEXT = " ".join(f"a small corpus line {i}: the cat {i % 5} sat on mat {i * 3}." for i in range(80))
TOL = 1e-4  # relative: sharded sums differ from one process's only in float32 rounding order


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return llama_pair_with_corpus(tmp_path_factory.mktemp("fsdp"), TEXT)  # tied input/output embeddings


def _cfg(llama, **kw) -> dict:
    teacher, student, data = llama
    # 20 rows of 16 tokens, batch 7: 3 steps an epoch (7, 7, 6), so the ranks' slices are unequal (4|3, 3|3)
    # full logits (lm_chunked off): a sharded job takes them, and chunks round differently
    cfg = dict(teacher=str(teacher), student=str(student), data=str(data), data_options={"context_length": 16})
    cfg.update(objective="token", lm_chunked=False, epochs=3, train_size=20, batch_size=7, val_size=8, probe_size=8)
    cfg.update(optimizer="adamw", weight_decay=0.01, lr=1e-2, grad_clip=0.5, seed=0)  # grad_clip: sharded norms
    return {**cfg, **kw}


def _same_weights(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k].float().numpy(), b[k].float().numpy(), rtol=TOL, atol=1e-6, err_msg=k)


def _stop_after(steps: int) -> dict:
    """run_job's callback and cancel that stop a run once it has done `steps` steps."""
    seen = {"step": 0}
    return {"callback": lambda ev: seen.update(step=ev["step"]), "cancel": lambda: seen["step"] >= steps}


@pytest.mark.slow
def test_sharded_ranks_match_one_process_save_full_weights_and_resume_across_process_counts(
    llama, data_dir, tmp_path, monkeypatch
):
    """Epoch 1 in 1 process, epoch 2 on 2 sharded ranks (resumed from the one-process state), epoch 3 in 1
    process (resumed from the sharded ranks' state): every step's loss, the checkpoint the sharded ranks
    saved and the end are those of one process on its own."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(job, "_RESUME_EVERY_S", 0.0)  # a resume state at every epoch end (as the ranks do)
    store = RunStore()
    one = run_job(JobConfig(**_cfg(llama)), store=store)
    first = run_job(JobConfig(**_cfg(llama)), store=store, **_stop_after(3))
    assert first.state == "cancelled" and first.step == 3
    sharded = _cfg(llama, shard="full")
    part = two_ranks(tmp_path, sharded, cancel_after=6, run_id=first.run_id)
    assert part["state"] == "cancelled" and part["metrics"]["steps"] == 6 and "notices" not in part["metrics"], part[
        "metrics"
    ].get("notices")
    end = run_job(JobConfig(**sharded), store=store, run_id=first.run_id, resume=True)
    assert end.state == "completed" and end.step == 9 and not end.notices, end
    ours, theirs = store.metrics(first.run_id, "step"), store.metrics(one.run_id, "step")
    np.testing.assert_allclose(ours["loss"].to_numpy(), theirs["loss"].to_numpy(), rtol=TOL)
    for key in ("final_val_loss", "final_train_loss"):
        assert end.metrics[key] == pytest.approx(one.metrics[key], rel=TOL), key
    saved = store.load_student(first.run_id, epoch=2)  # saved by rank 0 of the sharded ranks
    _same_weights(saved, store.load_student(one.run_id, epoch=2))
    _same_weights(store.load_student(first.run_id), store.load_student(one.run_id))
    model = AutoModelForCausalLM.from_pretrained(llama[1])
    model.load_state_dict(saved, strict=True)  # whole tensors under the Hugging Face names
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied


def test_shard_values_and_registered_pairs_are_refused():
    with pytest.raises(ConfigError, match="'shard' must be one of none, full; got 'half'"):
        JobConfig(pair=TOY, shard="half").validate()
    with pytest.raises(ConfigError, match="registered pair 'digits'.*--teacher DIR --student DIR"):
        JobConfig(pair="digits", shard="full").validate()


def test_one_process_is_refused_before_anything_runs(llama, data_dir):
    with pytest.raises(ValueError, match="runs in one. Start it with --devices N"):
        run_job(JobConfig(**_cfg(llama, shard="full")), store=RunStore())
    assert len(RunStore().list_runs()) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pair", "digits", "--shard", "full", "--devices", "2"], "registered pair 'digits'"),
        (["--shard", "full"], "this job runs in one"),
        (["--shard", "full", "--devices", "1"], "this job runs in one"),
    ],
)
def test_cli_refuses_what_cannot_shard(llama, data_dir, capsys, flags, message):
    teacher, student, data = llama
    own = [] if "--pair" in flags else ["--teacher", str(teacher), "--student", str(student), "--data", str(data)]
    code = main(["distill", *own, *flags, "--epochs", "1"])
    assert code == 2 and message in capsys.readouterr().err
    assert len(RunStore().list_runs()) == 0


def test_transformer_layers_are_the_no_split_modules_and_others_are_refused(llama):
    pair = pair_for_config(JobConfig(**_cfg(llama)))
    layers = transformer_layers(pair.student.model)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * 2
    assert all(any(m is layer for layer in layers) for m in pair.student.model.model.layers)
    check_shardable(pair.student, 2)
    with pytest.raises(ValueError, match="runs in one"):
        check_shardable(pair.student, 1)
    toy = JobConfig(pair=TOY)
    from kdcore.jobs.resolve import resolve_pair

    with pytest.raises(ValueError, match="names none \\(no _no_split_modules\\)"):
        check_shardable(resolve_pair(toy.pair).student, 2)
