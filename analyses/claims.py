"""The teaching claims of the pages, computed from what a page shows rather than written in advance.

Each function takes the result objects a page draws and returns a `Claim`: whether the claim
holds on those numbers, and one sentence that says what the data shows — the claim when it holds,
what to change (a larger probe, a longer run, ...) when it does not. Pure functions: no streamlit,
no plotting; the Workshop path and the pages print `claim.sentence`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from kdcore.validation import InvalidParameterError

ONE_HOT = 0.9  # mean top probability at T = 1 at or above this: "almost one-hot"
DARK_MASS = 0.1  # mean non-target mass at T ≈ 4 at or above this: "the wrong classes carry mass"
HALF = 0.5  # NCKD's share of the KL above this: NCKD carries most of it
NO_GAIN = 0.005  # accuracy differences below this (or one sample in n) are a tie


@dataclass(frozen=True)
class Claim:
    """A claim checked on the data: does it hold, and the sentence that says what the data shows."""

    holds: bool
    sentence: str

    def __iter__(self):  # (holds, sentence) = claim
        return iter((self.holds, self.sentence))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _need(obj: Any, attrs: tuple[str, ...], what: str, where: str) -> None:
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise InvalidParameterError(
            f"The argument of {where} must be {what} (with {', '.join(attrs)}). "
            f"Got {type(obj).__name__}, without {', '.join(missing)}."
        )


# ---- overview: the scorecard ---------------------------------------------------------------------------


def distilled_beats_baseline(card: Any) -> Claim:
    """Step 1: the distilled student's accuracy against the baseline's (the same network on labels alone),
    on the probe the page scored. card: analyses.scorecard.Scorecard."""
    _need(card, ("student", "baseline", "risk"), "an analyses.scorecard.Scorecard", "distilled_beats_baseline")
    if card.baseline is None:
        return Claim(
            False,
            "This pair has no baseline student (the same network trained on labels alone), so the "
            "page cannot show whether distilling paid.",
        )
    s, b, n = float(card.student["accuracy"]), float(card.baseline["accuracy"]), int(card.risk.n)
    if s - b > max(NO_GAIN, 0.5 / n):
        return Claim(
            True,
            f"Here the distilled student beats the baseline: {_pct(s)} against {_pct(b)} accuracy on {n} test inputs.",
        )
    verb = "ties" if abs(s - b) <= max(NO_GAIN, 0.5 / n) else "trails"
    return Claim(
        False,
        f"Here the distilled student {verb} the baseline ({_pct(s)} against {_pct(b)} on {n} test "
        f"inputs): the difference is too small to see on this probe. Raise the probe size in the "
        f"sidebar (256 or more).",
    )


def risk_bound(card: Any) -> Claim:
    """Step 1: err(student) ≤ err(teacher) + disagreement, as the page's numbers show it."""
    _need(card, ("risk",), "an analyses.scorecard.Scorecard", "risk_bound")
    r = card.risk
    ok = bool(r.err_student <= r.bound + 1e-12)
    return Claim(
        ok,
        f"The bound {'holds' if ok else 'fails (a bug: it is a theorem)'}: the student's error "
        f"{_pct(r.err_student)} ≤ the teacher's {_pct(r.err_teacher)} + disagreement "
        f"{_pct(r.disagreement)} = {_pct(r.bound)}.",
    )


# ---- soft labels ---------------------------------------------------------------------------------------


def _at(sweep: pd.DataFrame, t: float) -> pd.Series:
    i = int((sweep["temperature"] - t).abs().idxmin())
    return sweep.loc[i]


def temperature_softens(sweep: pd.DataFrame, *, low: float = 1.0, high: float = 4.0) -> Claim:
    """Step 2: at T = 1 the teacher is almost one-hot; by T ≈ 4 the wrong classes carry mass.

    sweep: analyses.soft_labels.temperature_sweep (or compare_sweeps' teacher rows): temperature,
    max_prob, dark_knowledge."""
    if not isinstance(sweep, pd.DataFrame) or not {"temperature", "max_prob", "dark_knowledge"} <= set(sweep.columns):
        raise InvalidParameterError(
            "The 'sweep' argument of temperature_softens must be a temperature sweep table "
            "with columns temperature, max_prob, dark_knowledge. Got "
            f"{type(sweep).__name__}."
        )
    if "model" in sweep.columns:
        sweep = sweep[sweep["model"] == "teacher"].reset_index(drop=True)
    a, b = _at(sweep, low), _at(sweep, high)
    sharp, soft = a["max_prob"] >= ONE_HOT, b["dark_knowledge"] >= DARK_MASS
    text = (
        f"at T = {a['temperature']:g} the teacher's top class holds {_pct(a['max_prob'])} on average; at "
        f"T = {b['temperature']:g} the wrong classes hold {_pct(b['dark_knowledge'])}"
    )
    if sharp and soft:
        return Claim(
            True, f"Here {text}: the temperature turns near one-hot answers into a ranking of the wrong classes."
        )
    why = (
        "the teacher is not near one-hot even at T = 1"
        if not sharp
        else "even the higher temperature leaves little mass on the wrong classes; try T = 8"
    )
    return Claim(False, f"Here {text}: {why}.")


# ---- a run against the student alone -----------------------------------------------------------------


def kd_beats_alone(kd: dict | None, alone: dict | None, *, metric: str = "final_val_acc") -> Claim:
    """Step 3: a KD run against a student-alone run of the same budget (run summaries from the store:
    final_val_acc, or final_val_loss where lower is better). None: that run does not exist yet."""
    if kd is None or alone is None:
        missing = " and ".join(w for w, r in (("a KD run", kd), ("a student-alone (ce) run", alone)) if r is None)
        return Claim(
            False,
            f"There is no {missing} with the same budget yet: start both (same epochs, training "
            f"size, lr and seed) to see whether distilling pays.",
        )
    a, b = kd.get(metric), alone.get(metric)
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return Claim(False, f"The runs have not recorded {metric} yet: wait for both to finish an epoch.")
    lower = metric.endswith("loss")
    gain = (b - a) if lower else (a - b)
    name = "validation loss" if lower else "validation accuracy"
    if gain > (NO_GAIN * abs(b) if lower else NO_GAIN):
        return Claim(True, f"Here distilling pays: {name} {a:.4f} with KD against {b:.4f} alone, same budget.")
    return Claim(
        False,
        f"Here distilling did not pay ({name} {a:.4f} with KD against {b:.4f} alone): the runs are "
        f"likely too short. Use the pair's recipe (more epochs, a higher lr) and compare again.",
    )


# ---- features: CKA -------------------------------------------------------------------------------------


def cka_diagonal(matrix: pd.DataFrame) -> Claim:
    """Step 4: the student builds its features in the teacher's order. Each layer of the deeper model
    is matched to its most similar layer of the shallower one; the matches must never step back in
    depth and must move forward at least once.

    matrix: teacher × student CKA, rows = teacher layers (input to output), columns = student layers."""
    if not isinstance(matrix, pd.DataFrame) or matrix.empty:
        raise InvalidParameterError(
            "The 'matrix' argument of cka_diagonal must be a non-empty CKA DataFrame "
            f"(teacher layers × student layers). Got {type(matrix).__name__}."
        )
    m = matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T  # rows: the deeper model's layers
    values = m.to_numpy(dtype=float)  # [deep, shallow]
    best = [int(np.nanargmax(row)) for row in values]
    ordered = all(b >= a for a, b in pairwise(best)) and best[-1] > best[0]
    pairs = ", ".join(f"{r} → {m.columns[b]}" for r, b in zip(m.index, best))
    if ordered:
        return Claim(
            True, f"Here the band runs along the diagonal: deeper layers are most similar to deeper layers ({pairs})."
        )
    return Claim(False, f"Here the most similar layers do not follow depth ({pairs}): no clear diagonal on this probe.")


# ---- Grad-CAM --------------------------------------------------------------------------------------------


def student_looks_like_teacher(localisation: pd.DataFrame) -> Claim:
    """Step 5: does the student's map fall on the shape as often as the teacher's?

    localisation: CamResult.localisation() (rows teacher, student; column pointing_game)."""
    if not isinstance(localisation, pd.DataFrame) or localisation.empty:
        return Claim(False, "The pair gives no ground-truth masks, so the page cannot score where the maps fall.")
    t, s = float(localisation.loc["teacher", "pointing_game"]), float(localisation.loc["student", "pointing_game"])
    n = int(localisation.loc["teacher", "n_images"])
    if s >= t - max(0.05, 1.0 / n):
        return Claim(
            True,
            f"Here the student's map peaks on the shape about as often as the teacher's: pointing "
            f"game {_pct(s)} against {_pct(t)} over {n} images.",
        )
    return Claim(
        False,
        f"Here the student's map peaks on the shape less often than the teacher's: pointing game "
        f"{_pct(s)} against {_pct(t)} over {n} images.",
    )


# ---- divergence components ---------------------------------------------------------------------------------


def nckd_carries_kl(dkd: pd.DataFrame | None) -> Claim:
    """Step 6: does the non-target part (NCKD, weighted by 1 − p_y) carry most of the KL?

    dkd: ComponentsResult.dkd (per sample: kl, tckd, nckd_weighted, class)."""
    if dkd is None or len(dkd) == 0:
        return Claim(False, "This pair has no single target class per sample, so DKD's split does not apply.")
    share = float(dkd["nckd_weighted"].sum() / max(dkd["kl"].sum(), 1e-300))
    by_class = dkd.groupby("class")[["nckd_weighted", "kl"]].sum()
    most = int((by_class["nckd_weighted"] >= HALF * by_class["kl"]).sum())
    where = f"NCKD carries {_pct(share)} of the KL, and at least half of it in {most} of {len(by_class)} classes"
    if share > HALF:
        return Claim(True, f"Here {where}: most of the mismatch is dark knowledge still to learn, not the answer.")
    return Claim(
        False,
        f"Here {where}: the target part (TCKD) carries most of the KL — the student still "
        f"disagrees with the teacher on how sure to be about the answer itself.",
    )


# ---- attention ---------------------------------------------------------------------------------------------

INDUCTION = 0.3  # mean attention on "the token after the previous copy" at or above this: an induction head


def induction_scores(attn: Any, tokens: list[str]) -> np.ndarray:
    """Per head, the mean attention a query puts on the position right after the previous occurrence of
    its own token (the induction pattern), over the queries whose token occurred before.

    attn: one layer's attention of one input [H, L, L]; tokens: the L position labels. Returns [H]."""
    a = np.asarray(attn, dtype=float)  # [H, L, L]
    last: dict[str, int] = {}
    hits = []
    for i, tok in enumerate(tokens):
        if tok in last and last[tok] + 1 < i:
            hits.append((i, last[tok] + 1))
        last[tok] = i
    if not hits:
        return np.full(a.shape[0], np.nan)
    q, k = np.array(hits).T
    return a[:, q, k].mean(axis=1)


def _best_head(layers: list, tokens: list[str]) -> tuple[float, int, int]:
    best = (-1.0, -1, -1)
    for li, layer in enumerate(layers):
        scores = induction_scores(np.asarray(layer)[0], tokens)  # sample 0: [H]
        if np.isfinite(scores).any() and np.nanmax(scores) > best[0]:
            best = (float(np.nanmax(scores)), li, int(np.nanargmax(scores)))
    return best


def induction_head(result: Any) -> Claim:
    """Step 7: is there an induction head in the teacher, and in the student?

    result: analyses.attention.AttentionResult with tokens (the labels of input 0's positions)."""
    _need(result, ("teacher", "student", "tokens"), "an analyses.attention.AttentionResult", "induction_head")
    if not result.tokens:
        return Claim(False, "The page has no token labels for this input, so it cannot look for the induction pattern.")
    t, s = _best_head(result.teacher, result.tokens), _best_head(result.student, result.tokens)
    if t[1] < 0:
        return Claim(False, "No token repeats in this text, so the induction pattern cannot show: pick another input.")
    head = f"layer {t[1] + 1}, head {t[2] + 1}"
    student = (
        f"the student's best head (layer {s[1] + 1}, head {s[2] + 1}) puts {_pct(s[0])} there"
        if s[1] >= 0
        else "the student has no such head"
    )
    if t[0] >= INDUCTION:
        return Claim(
            True,
            f"Here the teacher has an induction head ({head}): it puts {_pct(t[0])} of its attention "
            f"on the token after the previous copy; {student}.",
        )
    return Claim(
        False,
        f"Here no teacher head shows a clear induction pattern (best: {head}, {_pct(t[0])} on the "
        f"token after the previous copy); {student}.",
    )


# ---- tokens ------------------------------------------------------------------------------------------------


def kl_directions_disagree(per_position: pd.DataFrame, *, top: int = 5) -> Claim:
    """Step 8: forward and reverse KL rank the tokens differently (where the student hurts most).

    per_position: TokenResult.per_position (columns token, kept, fkl, rkl)."""
    if not {"fkl", "rkl"} <= set(per_position.columns):
        raise InvalidParameterError(
            "The 'per_position' argument of kl_directions_disagree must have columns fkl "
            f"and rkl. Got columns {list(per_position.columns)}."
        )
    df = per_position[per_position["kept"]] if "kept" in per_position.columns else per_position
    k = min(top, len(df))
    f, r = set(df.nlargest(k, "fkl").index), set(df.nlargest(k, "rkl").index)
    shared = len(f & r)
    worst_f, worst_r = df["fkl"].idxmax(), df["rkl"].idxmax()
    names = (
        (
            f"forward KL peaks at {df.loc[worst_f, 'token']!r} (position {worst_f}), reverse KL at "
            f"{df.loc[worst_r, 'token']!r} (position {worst_r})"
        )
        if "token" in df.columns
        else ""
    )
    if shared < k:
        return Claim(True, f"Here the two directions disagree: {k - shared} of the {k} hottest tokens differ; {names}.")
    return Claim(
        False, f"Here forward and reverse KL agree on the {k} hottest tokens of this text; {names}. Try another text."
    )


# ---- calibration -------------------------------------------------------------------------------------------

_SCORES = (("ece", "ECE"), ("mce", "MCE"), ("nll", "NLL"), ("brier", "Brier"))


def distilled_better_calibrated(results: dict) -> Claim:
    """Step 9: is the distilled student better calibrated than the baseline, score by score?

    results: name -> CalibrationResult with keys 'student' and 'student baseline' (app.compute.calibration)."""
    s, b = results.get("student"), results.get("student baseline")
    if s is None or b is None:
        return Claim(False, "This pair has no baseline student, so the page cannot compare calibration.")
    better = [label for k, label in _SCORES if getattr(s, k) < getattr(b, k)]
    worse = [label for k, label in _SCORES if getattr(s, k) > getattr(b, k)]
    vals = "; ".join(f"{label} {getattr(s, k):.3g} vs {getattr(b, k):.3g}" for k, label in _SCORES)
    if len(better) > len(_SCORES) // 2:
        return Claim(
            True,
            f"Here the distilled student is better calibrated than the baseline on "
            f"{', '.join(better)} (distilled vs baseline: {vals}).",
        )
    return Claim(
        False,
        f"Here the distilled student is not better calibrated than the baseline: worse on "
        f"{', '.join(worse) or 'none'}, better on {', '.join(better) or 'none'} (distilled vs "
        f"baseline: {vals}). Calibration gains from KD are not guaranteed; with few probe inputs "
        f"the scores are noisy.",
    )
