"""kdcore.data.prompts: prompt/completion rows and their §15.0 masks; kdcore.sequence targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdcore.data.prompts import (
    load_prompt_file,
    pad_prompts,
    sft_split,
    split_prompts,
    tinylang_copy_dataset,
    tinylang_copy_prompts,
)
from kdcore.data.tinylang import BOS, COPY, SEQ_LEN, TinyLangTokenizer
from kdcore.sequence import cached_targets, generate_targets


def test_sft_rows_keep_completion_positions_only():
    prompts, completions = [[5, 6, 7], [8]], [[1, 2], [3, 4, 9]]
    split = sft_split(prompts, completions, pad_id=0)
    assert split.inputs.tolist() == [[5, 6, 7, 1, 2], [8, 3, 4, 9, 0]]
    want = np.full((2, 5), -100)  # independent: target at j is token j + 1 for j = P − 1 … P + C − 2
    for i, (p, c) in enumerate(zip(prompts, completions)):
        for k, tok in enumerate(c):
            want[i, len(p) - 1 + k] = tok
    np.testing.assert_array_equal(split.targets.numpy(), want)
    assert split_prompts(split) == (prompts, completions)


def test_pad_prompts_left_pads_with_a_mask():
    ids, mask = pad_prompts([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_tinylang_copy_prompts_are_runs_and_their_copies():
    ps = tinylang_copy_prompts("val")
    assert len(ps.prompts) > 400 and ps.eos_id == BOS
    for p, c in zip(ps.prompts, ps.completions or []):
        assert p[0] == BOS and p[-1] == COPY and COPY not in p[1:-1]
        assert c == p[1:-1] + [BOS] and len(p) + len(c) <= SEQ_LEN
    ds = tinylang_copy_dataset()
    assert ds.split("test").extras["prompt_len"].shape[0] == ds.load_report["n_test"]


def test_prompt_file_jsonl_and_csv(tmp_path):
    tok = TinyLangTokenizer()
    (tmp_path / "a.jsonl").write_text(json.dumps({"prompt": "<s> a b <c>", "completion": "a b"}) + "\n")
    ps = load_prompt_file(tmp_path / "a.jsonl", tok, eos_id=BOS)
    assert ps.prompts == [tok.encode("<s> a b <c>")] and ps.completions == [tok.encode("a b") + [BOS]]
    (tmp_path / "b.csv").write_text("question,answer\n<s> c <c>,c\n")
    ps = load_prompt_file(tmp_path / "b.csv", tok, prompt_field="question", completion_field="answer")
    assert ps.completions == [tok.encode("c")]  # no stop token known: none appended


def test_a_file_without_the_completion_field_is_refused(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"prompt": "a b"}) + "\n")
    with pytest.raises(ValueError, match="no 'completion' field"):
        load_prompt_file(tmp_path / "a.jsonl", TinyLangTokenizer())
    assert load_prompt_file(tmp_path / "a.jsonl", TinyLangTokenizer(), require_completion=False).completions is None
    with pytest.raises(ValueError, match="must be an existing"):
        load_prompt_file(tmp_path / "a.txt", TinyLangTokenizer())


def test_greedy_targets_are_the_teachers_stepwise_argmax_and_cached(tmp_path):
    from sample_models import load_model

    teacher = load_model("tinylang", "teacher")
    ps = tinylang_copy_prompts("test", n=6)
    kw = dict(decoding="greedy", max_new_tokens=20, eos_id=BOS, pad_id=BOS)
    ts = generate_targets(teacher, ps.prompts, **kw)
    with torch.no_grad():
        for p, c in zip(ps.prompts, ts.completions):
            logits = teacher(torch.tensor([p + c]))[0]  # [L, V]
            assert logits[len(p) - 1 : len(p) + len(c) - 1].argmax(-1).tolist() == c
    again = cached_targets(tmp_path, teacher, ps.prompts, **kw)
    back = cached_targets(tmp_path, teacher, ps.prompts, **kw)
    assert not again.from_cache and back.from_cache and back.completions == ts.completions
    assert generate_targets(teacher, ps.prompts, **dict(kw, seed=5)).completions == ts.completions  # greedy: seed-free


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(decoding="topk"), "decoding"),
        (dict(num_beams=0), "num_beams"),
        (dict(n_best=3, num_beams=2), "n_best"),
        (dict(max_new_tokens=0), "max_new_tokens"),
    ],
)
def test_generate_targets_bad_input(kwargs, match):
    from sample_models.architectures import TinyTransformer, TransformerConfig

    with pytest.raises(ValueError, match=match):
        generate_targets(TinyTransformer(TransformerConfig(seq_len=16)), [[0, 1]], **kwargs)
    with pytest.raises(ValueError, match="non-empty"):
        generate_targets(TinyTransformer(TransformerConfig(seq_len=16)), [], decoding="greedy")
