"""Generated samples scored by both models (kdcore.sample_divergence) against an independent float64
computation, on tiny tinylang-style transformers and a tiny Hugging Face Llama pair; the figure builder."""

from __future__ import annotations

import numpy as np
import plotly.io as pio
import pytest
import torch

from analyses import generated_samples as gs
from kdcore.sample_divergence import sample_divergences, token_divergences
from sample_models.architectures import TinyTransformer, TransformerConfig


def _tiny(seed: int, vocab: int = 11, seq_len: int = 32):
    from kdcore.adapters import wrap

    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=vocab, seq_len=seq_len, d_model=16, n_heads=2, n_layers=1, d_mlp=32)
    return wrap(TinyTransformer(cfg).eval(), name=f"tiny{seed}", kind="causal_lm", output_size=vocab)


def _np_scores(s_logits: np.ndarray, t_logits: np.ndarray, tokens: list[int], kind: str, T: float):
    """Per row: (divergence, p_T(token), q_S(token)) from logits [C, V], in float64 numpy."""

    def log_softmax(z):
        z = z.astype(np.float64) / T
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lq, lp = log_softmax(s_logits), log_softmax(t_logits)
    a, b = (lp, lq) if kind == "fkl" else (lq, lp)
    d = (np.exp(a) * (a - b)).sum(-1)
    rows = np.arange(len(tokens))
    return d, np.exp(lp[rows, tokens]), np.exp(lq[rows, tokens])


@pytest.mark.parametrize("kind,T", [("fkl", 1.0), ("rkl", 2.0)])
def test_token_divergences_match_numpy(kind, T):
    g = torch.Generator().manual_seed(3)
    zs, zt = torch.randn(7, 13, generator=g) * 3, torch.randn(7, 13, generator=g) * 3
    tokens = torch.randint(0, 13, (7,), generator=g)
    got = token_divergences(zs, zt, tokens, kind, T)
    want = _np_scores(zs.numpy(), zt.numpy(), tokens.tolist(), kind, T)
    for g_, w in zip(got, want):
        np.testing.assert_allclose(g_, w, rtol=1e-6, atol=1e-9)
    assert token_divergences(zs, zs, tokens, kind, T)[0] == pytest.approx(np.zeros(7), abs=1e-12)


def _forward(adapter, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = adapter.model(torch.tensor([ids]))
    return getattr(out, "logits", out)[0].double().numpy()  # [L, V]


@pytest.mark.parametrize("kind", ["fkl", "rkl"])
def test_greedy_samples_are_scored_at_the_predicting_position(kind):
    student, teacher = _tiny(0), _tiny(1)
    prompt = [3, 5, 7, 2]
    res = sample_divergences(student, teacher, prompt, eos_id=None, max_new_tokens=6, divergence=kind, temperature=1.5)
    for who, model in (("teacher", teacher), ("student", student)):
        s = res.samples[who]
        assert len(s.tokens) == 6 and s.truncated  # no stop token: runs to max_new_tokens
        ids = prompt + s.tokens
        own = _forward(model, ids)  # greedy: each token is its model's argmax given the prefix
        assert [int(own[len(prompt) - 1 + k].argmax()) for k in range(6)] == s.tokens
        zs, zt = _forward(student, ids), _forward(teacher, ids)
        rows = slice(len(prompt) - 1, len(ids) - 1)  # column P + k - 1 predicts completion token k
        want = _np_scores(zs[rows], zt[rows], s.tokens, kind, 1.5)
        np.testing.assert_allclose(s.divergence, want[0], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(s.p_teacher, want[1], rtol=1e-5)
        np.testing.assert_allclose(s.p_student, want[2], rtol=1e-5)
    assert res.summary["student_mean"] == pytest.approx(float(res.samples["student"].divergence.mean()))


def test_sampling_is_seeded_and_a_stop_token_ends_the_sample():
    student, teacher = _tiny(0), _tiny(1)
    kw = dict(eos_id=4, max_new_tokens=12, do_sample=True, sample_temperature=1.5, seed=7)
    a = sample_divergences(student, teacher, [1, 2, 3], **kw)
    b = sample_divergences(student, teacher, [1, 2, 3], **kw)
    assert a.samples["student"].tokens == b.samples["student"].tokens
    assert a.config.temperature == 1.5 and a.temperature == 1.0  # τ_s apart from the divergence's T
    for s in a.samples.values():
        assert 4 not in s.tokens[:-1] and (s.tokens[-1] == 4) != s.truncated


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(divergence="jsd"), "divergence"),
        (dict(temperature=0.0), "temperature"),
        (dict(max_new_tokens=0), "max_new_tokens"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_divergences(_tiny(0), _tiny(1), [1, 2], eos_id=None, **kwargs)


def test_empty_prompt_and_other_vocabulary_are_refused():
    with pytest.raises(ValueError, match="at least one token"):
        sample_divergences(_tiny(0), _tiny(1), [], eos_id=None)
    with pytest.raises(ValueError, match="one tokenizer"):
        sample_divergences(_tiny(0, vocab=11), _tiny(1, vocab=12), [1, 2], eos_id=None)


@pytest.mark.slow  # builds and loads a Hugging Face pair (transformers' import)
def test_hugging_face_llama_pair(tmp_path):
    from helpers.hf_pairs import EOS, llama_pair

    from kdcore.adapters import load_hf

    t_dir, s_dir = llama_pair(tmp_path)
    teacher, student = load_hf(t_dir), load_hf(s_dir)
    prompt = [1, 40, 41, 42]
    res = sample_divergences(student, teacher, prompt, eos_id=EOS, max_new_tokens=5)
    s = res.samples["student"]
    ids = prompt + s.tokens
    zs, zt = _forward(student, ids), _forward(teacher, ids)
    rows = slice(len(prompt) - 1, len(ids) - 1)
    np.testing.assert_allclose(s.divergence, _np_scores(zs[rows], zt[rows], s.tokens, "fkl", 1.0)[0], rtol=1e-4)


def test_figure_and_table():
    pio.templates.default = None
    res = sample_divergences(_tiny(0), _tiny(1), [3, 5], eos_id=None, max_new_tokens=20)
    fig = gs.figure(res, str, width=8)
    (trace,) = fig.data
    z = np.asarray(trace.z, dtype=float)
    assert trace.type == "heatmap" and z.shape == (6, 8)  # 20 tokens: 3 rows of 8 per sample
    assert trace.y[0] == "teacher's sample 1–8" and trace.y[3] == "student's sample 1–8"
    assert "nats" in trace.colorbar.title.text and trace.zmin == 0.0 and np.isnan(z[2, 4:]).all()
    assert trace.text[0][0] == str(res.samples["teacher"].tokens[0])
    np.testing.assert_allclose(z[3], res.samples["student"].divergence[:8])
    assert fig.layout.title.text == "Generated tokens coloured by KL(p_T ‖ q_S) at T = 1, nats"
    marked = gs.figure(res, lambda i: f"<s{i}>", width=8).data[0]
    assert marked.text[0][0] == f"&lt;s{res.samples['teacher'].tokens[0]}&gt;"  # drawn as text, not as a tag
    df = gs.table(res, str)
    assert len(df) == 40 and set(df["generated by"]) == {"teacher", "student"}
