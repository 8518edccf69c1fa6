"""A user's own Hugging Face pair in a JobConfig: the new fields, their checks, pair_for_config and
student_for_run (on the tiny tied-embedding Llama pair of tests/helpers/hf_pairs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdcore.jobs.config import ConfigError, JobConfig, source_label, with_source_label
from kdcore.jobs.pair_source import pair_for_config, student_for_run
from kdcore.validation import InvalidParameterError
from tests.helpers.hf_pairs import MAX_POSITIONS, copy_tokenizer, llama_config, llama_pair_with_corpus, save_model

TEXT = "\n\n".join(f"the quick brown fox {i} jumps over the lazy dog number {i * 7}." for i in range(60))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfpair")
    return (*llama_pair_with_corpus(root, TEXT), root)


def _cfg(llama, **kw) -> JobConfig:
    teacher, student, data, _ = llama
    base = dict(teacher=str(teacher), student=str(student), data=str(data), data_options={"context_length": 16})
    base.update(kw)
    return JobConfig(**base)


def test_new_fields_round_trip_and_old_configs_load(llama, tmp_path):
    cfg = _cfg(llama, student="", student_init="from_teacher", student_layers=2, layer_rule="first")
    cfg.data_options = {"context_length": 16, "mode": "truncate", "format": "text", "val_fraction": 0.2}
    assert cfg.problems() == []
    assert JobConfig.from_json(cfg.to_json()) == cfg and JobConfig.from_yaml(cfg.to_yaml()) == cfg
    old = {k: v for k, v in JobConfig().to_dict().items() if k not in ("teacher", "student", "data", "data_options")}
    old = {k: v for k, v in old.items() if k not in ("model_kind", "student_init", "student_layers", "layer_rule")}
    back = JobConfig.from_dict(old)
    assert back == JobConfig() and back.teacher == "" and back.student_init == ""
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert JobConfig.load(path).problems() == []


def test_source_problems_are_listed_by_name(llama):
    teacher, student, data, root = llama
    bad = _cfg(llama, data_options={"context_len": 8, "mode": "zip"}, model_kind="seq2seq", student_init="warm")
    text = "\n".join(bad.problems())
    for word in ("'context_len'", "'data_options.mode'", "'model_kind'", "'student_init'"):
        assert word in text
    assert any("'student' is empty" in p for p in _cfg(llama, student="").problems())
    assert any("needs 'student_layers'" in p for p in _cfg(llama, student="", student_init="from_teacher").problems())
    both = _cfg(llama, student_init="from_teacher", student_layers=2).problems()
    assert any("'student' must be empty" in p for p in both)
    missing = _cfg(llama, teacher=str(root / "nope"), data=str(root / "none.txt")).problems()
    assert any("'teacher'" in p and "does not exist" in p for p in missing)
    assert any("'data'" in p and "not a file" in p for p in missing)
    assert any("need 'teacher'" in p for p in JobConfig(student=str(student)).problems())
    assert any("'student_layers' is only used" in p for p in _cfg(llama, student_layers=2).problems())


def test_label_names_both_directories(llama):
    cfg = _cfg(llama)
    assert source_label(cfg) == "hf:llama_teacher→llama_student"
    assert with_source_label(cfg).pair == "hf:llama_teacher→llama_student"
    ft = _cfg(llama, student="", student_init="from_teacher", student_layers=3)
    assert source_label(ft) == "hf:llama_teacher→llama_teacher[3 layers]"
    assert with_source_label(JobConfig(pair="digits")).pair == "digits"


def test_pair_for_config_loads_directories_and_data(llama):
    pair = pair_for_config(_cfg(llama))
    assert pair.name == "hf:llama_teacher→llama_student" and pair.kind == "causal_lm"
    assert len(pair.teacher.layer_names()) != len(pair.student.layer_names())
    train = pair.dataset.split("train")
    assert train.inputs.shape[1] == 16 and pair.dataset.size == 512
    assert pair_for_config(_cfg(llama)).teacher is pair.teacher  # cached by path and mtime
    registered = pair_for_config(JobConfig(pair="digits"))
    assert registered.name == "digits"


def test_from_teacher_student_is_the_layer_subset(llama):
    pair = pair_for_config(_cfg(llama, student="", student_init="from_teacher", student_layers=2))
    t_state, s_state = pair.teacher.model.state_dict(), pair.student.model.state_dict()
    # spread rule, 4 -> 2 layers: teacher layers 0 and 3
    for i, j in ((0, 0), (1, 3)):
        key = f"model.layers.{i}.self_attn.q_proj.weight"
        np.testing.assert_array_equal(s_state[key].numpy(), t_state[key.replace(f".{i}.", f".{j}.")].numpy())
    np.testing.assert_array_equal(s_state["lm_head.weight"].numpy(), t_state["lm_head.weight"].numpy())
    assert pair.student.model.lm_head.weight is pair.student.model.model.embed_tokens.weight  # tied


def test_student_for_run_rebuilds_and_loads(llama):
    cfg = _cfg(llama)
    pair = pair_for_config(cfg)
    gen = torch.Generator().manual_seed(3)
    state = {k: torch.randn(v.shape, generator=gen) for k, v in pair.student.model.state_dict().items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    student = student_for_run(with_source_label(cfg).to_dict(), state)
    got = student.model.state_dict()
    for k, v in state.items():
        np.testing.assert_array_equal(got[k].numpy(), v.numpy())
    assert student.model.lm_head.weight is student.model.model.embed_tokens.weight
    assert student.model is not pair.student.model
    digits = pair_for_config(JobConfig(pair="digits"))
    again = student_for_run(JobConfig(pair="digits"), digits.student.model.state_dict())
    assert type(again.model) is type(digits.student.model)
    with pytest.raises(ValueError, match="do not fit"):
        student_for_run(cfg, {"x": torch.zeros(1)})


def test_bad_pairs_are_refused_before_loading(llama, tmp_path):
    teacher, student, data, root = llama
    with pytest.raises(InvalidParameterError, match="student_layers below 4"):
        pair_for_config(_cfg(llama, student="", student_init="from_teacher", student_layers=4))
    with pytest.raises(InvalidParameterError, match="max_position_embeddings"):
        pair_for_config(_cfg(llama, data_options={"context_length": MAX_POSITIONS + 1}))
    bare = save_model(llama_config(2), tmp_path / "bare", seed=5, tokenizer=False)
    with pytest.raises(InvalidParameterError, match="has no tokenizer"):
        pair_for_config(_cfg(llama, student=str(bare)))
    wide = save_model(llama_config(2, vocab_size=600), tmp_path / "wide", seed=5)
    with pytest.raises(InvalidParameterError, match="600 tokens.*'uld'"):
        pair_for_config(_cfg(llama, student=str(wide)))
    other = save_model(llama_config(2), tmp_path / "other", seed=5, tokenizer=False)
    copy_tokenizer(other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[300:302]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (other / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(InvalidParameterError, match="uld"):
        pair_for_config(_cfg(llama, student=str(other)))
    with pytest.raises(ConfigError):
        pair_for_config(_cfg(llama, student=""))


def test_a_named_data_file_is_not_held_to_the_upload_cap(tmp_path, monkeypatch):
    """A job's data file is named by path, so the 50 MB upload cap does not apply (4 GiB does)."""
    import kdcore.data.hf_text as hf_text
    from kdcore.data._user_common import DEFAULT_MAX_BYTES, LOCAL_MAX_BYTES
    from kdcore.jobs import pair_source

    seen = {}

    def fake(source, model_dir, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(hf_text, "load_hf_text", fake)
    cfg = JobConfig(teacher=str(tmp_path), student=str(tmp_path), data=str(tmp_path / "c.txt"))
    with pytest.raises(RuntimeError, match="stop here"):
        pair_source._causal_lm_data(cfg, {"context_length": 16})
    assert seen["max_bytes"] == LOCAL_MAX_BYTES > DEFAULT_MAX_BYTES
