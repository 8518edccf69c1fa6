"""kdcore.generation: KV-cache decoding, seeded sampling, §15.0 masks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.generation import GenerationConfig, filter_logits, generate
from sample_models.architectures import TinyTransformer, TransformerConfig


def _tiny(seed: int = 0, seq_len: int = 32) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(
        TransformerConfig(vocab_size=11, seq_len=seq_len, d_model=16, n_heads=2, n_layers=2, d_mlp=32)
    ).eval()


class _Counter(nn.Module):
    """Scripted LM: the next token is always (current + 1) mod V (logits one-hot × 10). No cache."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, ids):  # [B, L] -> [B, L, V]
        return 10.0 * nn.functional.one_hot((ids + 1) % self.vocab, self.vocab).float() + 0 * self.dummy


class _CachedCounter(_Counter):
    """The counter with the incremental interface (its logits need no past)."""

    def forward_cached(self, ids, positions, key_mask, past=None):
        return self(ids), None


def test_cached_forward_equals_full_forward():
    model = _tiny()
    ids = torch.randint(0, 11, (3, 20), generator=torch.Generator().manual_seed(1))
    pos = torch.arange(20).expand(3, -1)
    with torch.no_grad():
        full = model(ids)
        a, past = model.forward_cached(ids[:, :7], pos[:, :7], torch.ones(3, 7, dtype=torch.long))
        b, _ = model.forward_cached(ids[:, 7:], pos[:, 7:], torch.ones(3, 20, dtype=torch.long), past)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=1e-5)


def test_greedy_is_the_stepwise_argmax_of_a_full_forward():
    model = _tiny(2)
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(3))
    res = generate(model, ids, max_new_tokens=9)  # no stop token: every row gets 9
    seq = ids.clone()
    with torch.no_grad():
        for _ in range(9):  # independent no-cache decode
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(res.sequences, seq)
    assert res.lengths.tolist() == [9, 9] and res.truncated.all()


def test_left_padding_does_not_change_a_rows_completion():
    model = _tiny(4)
    ids = torch.randint(1, 11, (2, 8), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    padded = generate(model, ids, mask, max_new_tokens=6)
    alone = generate(model, ids[1:, 3:], max_new_tokens=6)
    assert torch.equal(padded.sequences[1, 8:], alone.sequences[0, 5:])


@pytest.mark.parametrize("kind", ["tiny", "counter"])
def test_sampling_is_deterministic_for_a_seed(kind):
    model = _tiny(6) if kind == "tiny" else _Counter()
    ids = torch.randint(0, 7, (4, 6), generator=torch.Generator().manual_seed(7))
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.5, top_k=5, top_p=0.9)
    a, b = generate(model, ids, seed=11, **kw), generate(model, ids, seed=11, **kw)
    assert torch.equal(a.sequences, b.sequences)
    if kind == "tiny":
        c = generate(model, ids, seed=12, **kw)
        assert not torch.equal(a.sequences, c.sequences)


def test_masks_follow_the_first_stop_token_not_the_pad_id():
    # Counter: prompt ends in 2 -> 3 4 5 ...; stop at 5 (= pad: the mask must not use ids)
    ids = torch.tensor([[0, 1, 2], [6, 6, 0], [1, 1, 1]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 1]])
    res = generate(_CachedCounter(), ids, mask, max_new_tokens=4, eos_id=5, pad_id=5)
    # row 0: 3 4 5 | row 1: 1 2 3 4 (truncated) | row 2: 2 3 4 5
    assert res.lengths.tolist() == [3, 4, 4]
    assert res.truncated.tolist() == [False, True, False]
    expected_cm = np.array([[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(res.completion_mask.numpy(), expected_cm)
    np.testing.assert_array_equal(res.attention_mask.numpy()[1], [0, 1, 1, 1, 1, 1, 1])
    seq = res.sequences.numpy()
    targets = np.full_like(seq, -100)  # independent: position j keeps token j + 1 when j + 1 is completion
    for b in range(3):
        for j in range(seq.shape[1] - 1):
            if expected_cm[b, j + 1]:
                targets[b, j] = seq[b, j + 1]
    np.testing.assert_array_equal(res.targets().numpy(), targets)
    assert res.completions() == [[3, 4, 5], [1, 2, 3, 4], [2, 3, 4, 5]]


def test_min_new_tokens_suppresses_the_stop_token():
    res = generate(_Counter(), torch.tensor([[2]]), max_new_tokens=5, min_new_tokens=5, eos_id=4)
    assert res.lengths.tolist() == [5] and 4 not in res.completions()[0][:2]


def _np_filter(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    x = logits.astype(np.float64) / temperature
    out = np.empty_like(x)
    for r, row in enumerate(x):
        row = row.copy()
        if top_k:
            row[row < np.sort(row)[-top_k]] = -np.inf
        order = np.argsort(row, kind="stable")  # ascending
        p = np.exp(row[order] - row.max())
        p /= p.sum()
        drop = np.cumsum(p) <= 1 - top_p
        drop[-1] = False
        row[order[drop]] = -np.inf
        out[r] = row
    return out


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (3, 1.0), (0, 0.7), (4, 0.5)])
def test_filter_logits_matches_numpy(top_k, top_p):
    logits = torch.randn(5, 9, generator=torch.Generator().manual_seed(top_k))
    got = filter_logits(logits, GenerationConfig(do_sample=True, temperature=0.7, top_k=top_k, top_p=top_p))
    want = _np_filter(logits.numpy(), 0.7, top_k, top_p)
    assert np.array_equal(np.isinf(got.numpy()), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got.numpy()[finite], want[finite], rtol=1e-5)


def test_hf_llama_greedy_and_seeded_sampling(tmp_path):
    from helpers.hf_pairs import llama_pair

    from kdcore.adapters import load_hf

    teacher = load_hf(llama_pair(tmp_path)[0])
    ids = torch.randint(3, 500, (2, 6), generator=torch.Generator().manual_seed(0))
    res = generate(teacher, ids, max_new_tokens=5)
    seq = ids.clone()
    with torch.no_grad():
        for _ in range(5):
            seq = torch.cat([seq, teacher.model(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(res.sequences, seq)
    kw = dict(max_new_tokens=6, do_sample=True, eos_id=2)
    assert torch.equal(generate(teacher, ids, seed=3, **kw).sequences, generate(teacher, ids, seed=3, **kw).sequences)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=-3), "max_new_tokens"),
        (dict(max_new_tokens=40), "context"),
        (dict(do_sample=True, temperature=0.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(num_beams=3, max_new_tokens=4, do_sample=True), "num_beams"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(_tiny(), torch.zeros(1, 4, dtype=torch.long), **kwargs)


def test_bad_prompts_are_refused():
    model = _tiny(seq_len=16)
    with pytest.raises(ValueError, match="longer than the model's context"):
        generate(model, torch.zeros(1, 20, dtype=torch.long), max_new_tokens=1)
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, torch.zeros(1, 4, dtype=torch.long), torch.tensor([[1, 1, 0, 0]]), max_new_tokens=1)
    with pytest.raises(ValueError, match="no forward_cached"):
        generate(_Counter(), torch.zeros(1, 4, dtype=torch.long), torch.tensor([[0, 1, 1, 1]]), max_new_tokens=1)
    with pytest.raises(ValueError, match="prompt_ids"):
        generate(model, torch.zeros(4), max_new_tokens=1)
    with pytest.raises(ValueError, match="num_beams"):
        generate(_Counter(), torch.zeros(1, 4, dtype=torch.long), max_new_tokens=1, num_beams=2)


def test_tinylang_beam_search_finds_the_best_two_token_continuation():
    model = _tiny(8)
    ids = torch.randint(0, 11, (2, 4), generator=torch.Generator().manual_seed(9))
    res = generate(model, ids, max_new_tokens=2, num_beams=11)  # K = V: exhaustive over two steps
    with torch.no_grad():
        for b in range(2):
            lp1 = model(ids[b : b + 1])[0, -1].double().log_softmax(-1)  # [V]
            best, arg = -np.inf, None
            for t1 in range(11):  # independent brute force over all 121 continuations
                seq = torch.cat([ids[b], torch.tensor([t1])])[None]
                lp2 = model(seq)[0, -1].double().log_softmax(-1)
                t2 = int(lp2.argmax())
                if float(lp1[t1] + lp2[t2]) > best:
                    best, arg = float(lp1[t1] + lp2[t2]), [t1, t2]
            assert res.sequences[b, 4:].tolist() == arg
    again = generate(model, ids, max_new_tokens=2, num_beams=11, seed=5)  # beam search draws nothing
    assert torch.equal(again.sequences, res.sequences)


def test_beam_search_stops_and_masks_like_greedy_on_a_scripted_model():
    res = generate(_CachedCounter(), torch.tensor([[1], [3]]), max_new_tokens=6, num_beams=3, eos_id=5)
    assert res.completions() == [[2, 3, 4, 5], [4, 5]] and res.truncated.tolist() == [False, False]
