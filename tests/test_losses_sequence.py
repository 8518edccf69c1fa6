"""§15.1 SeqKD and §15.2 hybrid losses against float64 numpy on seeded random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcore.losses.sequence import hybrid_loss, labels_from_targets, seqkd_components, seqkd_loss


def _logsm(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _batch(seed: int, B: int = 3, L: int = 7, V: int = 5, prompt=(2, 3, 1), comp=(3, 2, 5)):
    rng = np.random.default_rng(seed)
    s, t = rng.normal(size=(B, L, V)) * 2, rng.normal(size=(B, L, V)) * 2
    ids = rng.integers(0, V, size=(B, L))
    labels = np.full((B, L), -100)
    for i in range(B):
        labels[i, prompt[i] : prompt[i] + comp[i]] = ids[i, prompt[i] : prompt[i] + comp[i]]
    return s, t, labels


def _np_parts(s, t, labels, T=1.0):
    """Per-kept-position (nll, ce, kl) lists per sequence, float64."""
    out = []
    for i in range(s.shape[0]):
        rows = []
        for j in range(s.shape[1] - 1):
            y = labels[i, j + 1]
            if y == -100:
                continue
            lq1 = _logsm(s[i, j])
            lq, lp = _logsm(s[i, j] / T), _logsm(t[i, j] / T)
            p = np.exp(lp)
            rows.append((-lq1[y], -(p * lq).sum(), (p * (lp - lq)).sum()))
        out.append(np.array(rows))
    return out


@pytest.mark.parametrize("alpha,T", [(0.0, 1.0), (0.5, 1.0), (1.0, 2.0), (0.3, 0.7)])
def test_seqkd_loss_matches_numpy(alpha, T):
    s, t, labels = _batch(1)
    parts = np.concatenate(_np_parts(s, t, labels, T))
    want = (1 - alpha) * parts[:, 0].mean() + alpha * parts[:, 1].mean()
    got = seqkd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(labels), alpha=alpha, temperature=T)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_word_ce_is_fkl_plus_teacher_entropy_and_alpha0_needs_no_teacher():
    s, t, labels = _batch(2)
    c = seqkd_components(torch.tensor(s), torch.tensor(t), torch.tensor(labels))
    parts = np.concatenate(_np_parts(s, t, labels))
    np.testing.assert_allclose(float(c["word_fkl"]), parts[:, 2].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(c["word_ce"]), float(c["word_fkl"] + c["teacher_entropy"]), rtol=1e-6)
    a = seqkd_loss(torch.tensor(s), None, torch.tensor(labels))
    np.testing.assert_allclose(float(a), parts[:, 0].mean(), rtol=1e-5)


def test_masked_positions_change_nothing():
    s, t, labels = _batch(3)
    s2 = s.copy()
    s2[0, 0] += 50.0  # prompt position 0 of row 0 predicts a prompt token: not kept
    s2[1, -1] -= 50.0  # the last position never predicts anything
    a = seqkd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(labels), alpha=0.5)
    b = seqkd_loss(torch.tensor(s2), torch.tensor(t), torch.tensor(labels), alpha=0.5)
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_student_equal_teacher_on_greedy_targets_gives_mean_neg_log_max_p():
    rng = np.random.default_rng(4)
    t = rng.normal(size=(2, 6, 4))
    labels = np.full((2, 6), -100)
    labels[:, 3:] = t[:, 2:5].argmax(-1)  # greedy: token j + 1 = argmax at j
    got = seqkd_loss(torch.tensor(t), None, torch.tensor(labels))
    want = -np.max(_logsm(t[:, 2:5]), -1).mean()
    np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_labels_from_targets_shift():
    targets = torch.tensor([[-100, 5, 6, -100]])
    assert labels_from_targets(targets).tolist() == [[-100, -100, 5, 6]]


@pytest.mark.parametrize("reduction", ["sequence", "token"])
@pytest.mark.parametrize("token_term", ["kl", "ce"])
def test_hybrid_fixed_gate_matches_numpy(reduction, token_term):
    s, t, labels = _batch(5)
    s_seq, _, labels_seq = _batch(6, prompt=(1, 2, 3), comp=(4, 4, 2))
    T, g = 1.5, 0.3
    tok_parts, sent_parts = _np_parts(s, t, labels, T), _np_parts(s_seq, t, labels_seq)
    k = 2 if token_term == "kl" else 1
    if reduction == "sequence":
        tok = np.array([p[:, k].mean() for p in tok_parts])
        sent = np.array([p[:, 0].mean() for p in sent_parts])
    else:
        tok = np.full(3, np.concatenate(tok_parts)[:, k].mean())
        sent = np.full(3, np.concatenate(sent_parts)[:, 0].mean())
    want = (g * tok + (1 - g) * sent).mean()
    out = hybrid_loss(
        torch.tensor(s),
        torch.tensor(t),
        torch.tensor(labels),
        torch.tensor(s_seq),
        torch.tensor(labels_seq),
        g=g,
        temperature=T,
        token_term=token_term,
        reduction=reduction,
    )
    np.testing.assert_allclose(float(out["loss"]), want, rtol=1e-5)
    np.testing.assert_allclose(float(out["token_loss"]), tok.mean(), rtol=1e-5)


def test_hybrid_gate_ends_are_token_and_sentence_kd():
    s, t, labels = _batch(7)
    args = [torch.tensor(x) for x in (s, t, labels, s, labels)]
    one, zero = hybrid_loss(*args, g=1.0), hybrid_loss(*args, g=0.0)
    torch.testing.assert_close(one["loss"], one["token_loss"])
    torch.testing.assert_close(zero["loss"], zero["sentence_loss"])


def test_learned_and_input_gate_gradients_match_finite_differences():
    s, t, labels = _batch(8)
    args = [torch.tensor(x) for x in (s, t, labels, s + 1.0, labels)]
    theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    hybrid_loss(*args, gate="learned", gate_param=theta)["loss"].backward()
    f = lambda th: float(hybrid_loss(*args, gate="learned", gate_param=torch.tensor(th))["loss"])  # noqa: E731
    eps = 1e-4
    assert float(theta.grad) == pytest.approx((f(0.4 + eps) - f(0.4 - eps)) / (2 * eps), rel=1e-3)
    feats = torch.tensor(np.random.default_rng(9).normal(size=(3, 4)))
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    hybrid_loss(*args, gate="input", gate_param=(w, b), features=feats)["loss"].backward()

    def fw(k: int, d: float) -> float:
        w2 = torch.zeros(4, dtype=torch.float64)
        w2[k] = d
        return float(hybrid_loss(*args, gate="input", gate_param=(w2, torch.zeros(())), features=feats)["loss"])

    for k in range(4):
        assert float(w.grad[k]) == pytest.approx((fw(k, eps) - fw(k, -eps)) / (2 * eps), rel=1e-3, abs=1e-9)


def test_a_learned_gate_on_fixed_losses_saturates_towards_the_smaller():
    s, t, labels = _batch(13)
    args = [torch.tensor(x) for x in (s, t, labels, s, labels)]  # fixed logits: the two terms never change
    theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=10.0)
    for _ in range(300):
        out = hybrid_loss(*args, gate="learned", gate_param=theta)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    smaller_is_token = float(out["token_loss"]) < float(out["sentence_loss"])
    g = float(torch.sigmoid(theta.detach()))
    assert (g > 0.97) if smaller_is_token else (g < 0.03)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(alpha=1.5), "alpha"),
        (dict(alpha=0.5, teacher=None), "teacher_logits"),
        (dict(temperature=0.0, alpha=0.5), "temperature"),
        (dict(labels="empty"), "no kept position"),
        (dict(teacher="vocab", alpha=0.5), "vocabulary"),
    ],
)
def test_seqkd_bad_input(kwargs, match):
    s, t, labels = _batch(10)
    teacher = kwargs.pop("teacher", torch.tensor(t))
    if isinstance(teacher, str):
        teacher = torch.zeros(3, 7, 6, dtype=torch.float64)
    lab = torch.full((3, 7), -100) if kwargs.pop("labels", None) == "empty" else torch.tensor(labels)
    with pytest.raises(ValueError, match=match):
        seqkd_loss(torch.tensor(s), teacher, lab, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(g=1.2), "'g'"),
        (dict(gate="sigmoid"), "'gate'"),
        (dict(token_term="mse"), "token_term"),
        (dict(token_targets="both"), "token_targets"),
        (dict(gate="learned"), "gate_param"),
        (dict(gate="input", gate_param=(torch.zeros(2), torch.zeros(()))), "features"),
        (dict(temperature=-1.0), "temperature"),
    ],
)
def test_hybrid_bad_input(kwargs, match):
    s, t, labels = _batch(11)
    args = [torch.tensor(x) for x in (s, t, labels, s, labels)]
    with pytest.raises(ValueError, match=match):
        hybrid_loss(*args, **kwargs)


def test_hybrid_refuses_mismatched_batches_and_empty_sequences():
    s, t, labels = _batch(12)
    S, T_, Lb = torch.tensor(s), torch.tensor(t), torch.tensor(labels)
    with pytest.raises(ValueError, match="same batch size"):
        hybrid_loss(S, T_, Lb, S[:2], Lb[:2])
    empty_row = Lb.clone()
    empty_row[1] = -100
    with pytest.raises(ValueError, match="sequence 1"):
        hybrid_loss(S, T_, Lb, S, empty_row)
