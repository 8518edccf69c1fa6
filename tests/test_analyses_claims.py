"""analyses.claims: each teaching claim computed from a page's results, on a case where it holds and
one where it does not (the sentence then says what the data shows and what to change)."""

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import claims
from analyses.attention import compute as attention_compute
from analyses.calibration import calibration_from_logits
from analyses.components import compute as components_compute
from analyses.scorecard import compute_scorecard
from analyses.soft_labels import temperature_sweep
from kdcore.validation import InvalidParameterError

LABELS = torch.arange(100) % 10  # [100]


def _logits(correct: int) -> torch.Tensor:
    """[100, 10] logits right on the first `correct` samples, wrong (next class) on the others."""
    z = torch.zeros(100, 10)
    pred = torch.where(torch.arange(100) < correct, LABELS, (LABELS + 1) % 10)
    z[torch.arange(100), pred] = 5.0
    return z


def _card(student: int, baseline: int):
    return compute_scorecard(
        _logits(student), _logits(100), LABELS, teacher_params=10, student_params=1, baseline_logits=_logits(baseline)
    )


def test_distilled_beats_baseline():
    holds, text = claims.distilled_beats_baseline(_card(95, 90))
    assert holds and "95.0 % against 90.0 %" in text and "100 test inputs" in text
    holds, text = claims.distilled_beats_baseline(_card(90, 90))
    assert not holds and "ties" in text and "probe size" in text
    holds, text = claims.distilled_beats_baseline(_card(85, 90))
    assert not holds and "trails" in text


def test_risk_bound_is_read_from_the_card():
    assert claims.risk_bound(_card(90, 90)).holds
    card = _card(90, 90)
    card.risk.err_student = 0.5  # impossible numbers: the claim says it fails
    assert not claims.risk_bound(card).holds


def test_temperature_softens():
    sharp = torch.zeros(50, 10)
    sharp[:, 0] = 8.0  # one-hot at T=1, soft at T=4
    holds, text = claims.temperature_softens(temperature_sweep(sharp, [1.0, 4.0]))
    assert holds and "T = 1" in text and "T = 4" in text
    too_sharp = sharp * 10  # still one-hot at T=4
    holds, text = claims.temperature_softens(temperature_sweep(too_sharp, [1.0, 4.0]))
    assert not holds and "T = 8" in text
    with pytest.raises(InvalidParameterError, match="max_prob"):
        claims.temperature_softens(pd.DataFrame({"temperature": [1.0]}))


def test_kd_beats_alone():
    assert claims.kd_beats_alone({"final_val_acc": 0.96}, {"final_val_acc": 0.94}).holds
    holds, text = claims.kd_beats_alone({"final_val_acc": 0.46}, {"final_val_acc": 0.61})
    assert not holds and "recipe" in text
    holds, text = claims.kd_beats_alone({"final_val_acc": 0.9}, None)
    assert not holds and "student-alone" in text
    assert claims.kd_beats_alone({"final_val_loss": 1.60}, {"final_val_loss": 1.64}, metric="final_val_loss").holds
    assert not claims.kd_beats_alone({"final_val_loss": 1.70}, {"final_val_loss": 1.64}, metric="final_val_loss").holds


def _cka(values, rows=("t1", "t2", "t3"), cols=("s1", "s2")):
    return pd.DataFrame(values, index=list(rows), columns=list(cols))


def test_cka_diagonal():
    holds, text = claims.cka_diagonal(_cka([[0.9, 0.5], [0.8, 0.7], [0.4, 0.9]]))
    assert holds and "t1 → s1" in text and "t3 → s2" in text
    holds, text = claims.cka_diagonal(_cka([[0.4, 0.9], [0.8, 0.7], [0.9, 0.5]]))  # anti-diagonal
    assert not holds and "no clear diagonal" in text


def test_student_looks_like_teacher():
    loc = pd.DataFrame({"pointing_game": [0.8, 0.78], "n_images": [32, 32]}, index=["teacher", "student"])
    assert claims.student_looks_like_teacher(loc).holds
    loc.loc["student", "pointing_game"] = 0.59
    holds, text = claims.student_looks_like_teacher(loc)
    assert not holds and "59.0 %" in text and "less often" in text
    assert not claims.student_looks_like_teacher(pd.DataFrame()).holds


def test_nckd_carries_kl():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(64, 8, generator=g) * 3
    y = t.argmax(1)
    right_answer = t.clone()  # same answer and confidence, other ranking
    perm = torch.randperm(8, generator=g)
    for i in range(64):
        others = [c for c in perm.tolist() if c != int(y[i])]
        right_answer[i, others] = t[i, sorted(others)]
    res = components_compute(right_answer, t, y, temperature=4.0)
    holds, text = claims.nckd_carries_kl(res.dkd)
    assert holds and "NCKD carries" in text
    unsure = t.clone()
    unsure[torch.arange(64), y] -= 6.0  # less sure of the answer, same ranking
    holds, text = claims.nckd_carries_kl(components_compute(unsure, t, y, temperature=4.0).dkd)
    assert not holds and "TCKD" in text
    assert not claims.nckd_carries_kl(None).holds


def _induction_attention(L: int, strength: float) -> torch.Tensor:
    """[1, 1, L, L] causal attention; a query whose token repeats puts `strength` on the token after the copy."""
    a = torch.tril(torch.ones(L, L))
    a = a / a.sum(-1, keepdim=True)
    for i in range(L // 2 + 1, L):
        a[i] = (1 - strength) * a[i]
        a[i, i - L // 2 + 1] += strength
    return a[None, None]


def test_induction_head():
    tokens = list("abcdef") * 2  # the second half copies the first
    strong = attention_compute([_induction_attention(12, 0.1)], [_induction_attention(12, 0.8)])
    strong.tokens = tokens
    holds, text = claims.induction_head(strong)
    assert holds and "layer 1, head 1" in text and "student's best head" in text
    weak = attention_compute([_induction_attention(12, 0.1)], [_induction_attention(12, 0.1)])
    weak.tokens = tokens
    assert not claims.induction_head(weak).holds
    weak.tokens = list("abcdefghijkl")  # nothing repeats
    holds, text = claims.induction_head(weak)
    assert not holds and "another input" in text


def test_induction_scores_read_the_token_after_the_previous_copy():
    a = np.zeros((1, 5, 5))
    a[0, 3, 1] = 0.7  # tokens a b c a ...: query 3 → key 1
    assert claims.induction_scores(a, list("abcax"))[0] == pytest.approx(0.7)


def test_kl_directions_disagree():
    df = pd.DataFrame(
        {"token": list("abcdefgh"), "kept": True, "fkl": [8, 7, 6, 5, 4, 3, 2, 1], "rkl": [1, 2, 3, 4, 5, 6, 7, 8]}
    )
    holds, text = claims.kl_directions_disagree(df, top=3)
    assert holds and "'a'" in text and "'h'" in text
    df["rkl"] = df["fkl"]
    assert not claims.kl_directions_disagree(df, top=3).holds


def test_distilled_better_calibrated():
    y = torch.arange(200) % 4
    z = torch.nn.functional.one_hot(y, 4).float()
    z[::5] = torch.nn.functional.one_hot((y[::5] + 1) % 4, 4).float()  # 20 % wrong
    calibrated, overconfident = z * 2.0, z * 12.0
    good = {
        "student": calibration_from_logits(calibrated, y),
        "student baseline": calibration_from_logits(overconfident, y),
    }
    holds, text = claims.distilled_better_calibrated(good)
    assert holds and "ECE" in text
    bad = {"student": good["student baseline"], "student baseline": good["student"]}
    holds, text = claims.distilled_better_calibrated(bad)
    assert not holds and "not better calibrated" in text
    assert not claims.distilled_better_calibrated({"student": good["student"]}).holds
