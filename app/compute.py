"""Cached analyses for the pages: one function per result, keyed by (pair key, device, probe size, parameters).

Every function here is `st.cache_data`: the result is computed once per key and shared by every
session (a copy per call, so a page can never alter another's). Models come from `app.state`
(`st.cache_resource`, read-only). Pages call these and render; they compute nothing themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from analyses import attention as attention_an
from analyses import calibration as calibration_an
from analyses import cams as cams_an
from analyses import cka as cka_an
from analyses import components as components_an
from analyses import multilabel as multilabel_an
from analyses import scorecard as scorecard_an
from analyses import soft_labels as soft_labels_an
from analyses import tokens as tokens_an
from app import state

TEMPERATURES = tuple(float(t) for t in np.round(np.geomspace(0.5, 20.0, 25), 3))  # the sweep's grid
SWEEP_ROWS = 1024  # rows (inputs, or LM token positions) used by the temperature sweep
ATTENTION_MAX = 16  # inputs used for attention maps (each is [H, L, L] per layer)
CAM_MAX = 32  # images explained by Grad-CAM (one backward pass each model)


def _pair(key: tuple, device: str):
    pair = state.pair_on(key, device)
    if pair is None:
        raise ValueError("No pair is chosen: choose one in the sidebar.")
    if pair.dataset is None:
        raise ValueError("The pair has no data to evaluate on: choose a dataset in the sidebar.")
    return pair


def _cpu(x):
    return None if x is None else x.detach().float().cpu()


@st.cache_data(show_spinner="Running both models on the probe inputs…", max_entries=32)
def logits(key: tuple, device: str, n: int) -> dict:
    """Teacher, student and (if any) baseline logits on the first n test inputs, with their targets."""
    pair = _pair(key, device)
    x, y, _ = state.probe(pair, n)
    out = {
        "teacher": _cpu(pair.teacher.logits(x)),
        "student": _cpu(pair.student.logits(x)),
        "baseline": _cpu(pair.student_baseline.logits(x)) if pair.student_baseline is not None else None,
        "targets": y.clone(),
        "task": pair.dataset.task,
        "class_names": pair.dataset.class_names,
    }
    return out


# ---- overview ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Scoring the pair…", max_entries=16)
def scorecard(key: tuple, device: str, n: int):
    """analyses.scorecard for single-label and LM pairs; a plain table for multi-label ones."""
    pair = _pair(key, device)
    x, y, _ = state.probe(pair, n)
    if pair.dataset.task != "multilabel":
        return scorecard_an.pair_scorecard(pair.teacher, pair.student, x, y, baseline=pair.student_baseline)
    return scorecard_an.pair_multilabel_scorecard(pair.models(), x, y)


@st.cache_data(show_spinner="Generating with both models and timing them…", max_entries=8)
def lm_scorecard(key: tuple, device: str, n_prompts: int):
    """The LM scorecard (methods/15 §15.6) of a causal-LM pair's student against its teacher."""
    from kdcore.eval.lm_scorecard import pair_scorecard

    pair = _pair(key, device)
    return pair_scorecard(pair.teacher, pair.student, pair.dataset, n_prompts=n_prompts)


MODEL_NAMES = {"teacher": "teacher", "baseline": "student alone (baseline)", "student": "distilled student"}


def _named_logits(lg: dict) -> dict:
    """The logits of every model present, by the name figures show (teacher, baseline, distilled student)."""
    return {MODEL_NAMES[r]: lg[r] for r in ("teacher", "baseline", "student") if lg[r] is not None}


@st.cache_data(show_spinner="Scoring every label…", max_entries=16)
def multilabel_scores(key: tuple, device: str, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Micro/macro F1, exact match and per-label F1 of each model (multi-label pairs)."""
    lg = logits(key, device, n)
    return multilabel_an.label_scores(_named_logits(lg), lg["targets"], class_names=lg["class_names"])


# ---- soft labels ------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Sweeping the temperature…", max_entries=16)
def sweep(key: tuple, device: str, n: int) -> dict:
    """analyses.soft_labels.sweep_pair over TEMPERATURES (LM positions flattened)."""
    lg = logits(key, device, n)
    t, s, y = lg["teacher"], lg["student"], lg["targets"]
    if lg["task"] == "multilabel":
        y = None  # soft labels of a softmax over classes: no single target
    elif lg["task"] == "causal_lm":  # the first SWEEP_ROWS predicted positions, gathered without copying the rest
        rows = (y.reshape(-1) != -100).nonzero()[:SWEEP_ROWS, 0]
        t, s, y = t.reshape(-1, t.shape[-1])[rows], s.reshape(-1, s.shape[-1])[rows], y.reshape(-1)[rows]
    t, s, y = t[:SWEEP_ROWS], s[:SWEEP_ROWS], None if y is None else y[:SWEEP_ROWS]
    names = lg["class_names"]
    tokens = _token_names(key, device, t[:64])
    return {
        "sweep": soft_labels_an.compare_sweeps(s, t, TEMPERATURES, labels=y),
        "gradient": soft_labels_an.gradient_scale(s, t, TEMPERATURES),
        "classes": soft_labels_an.class_probabilities(
            t,
            TEMPERATURES,
            student_logits=s,
            samples=[0, 1, 2],
            class_names=names,
            token_names=None if tokens is None else (lambda ids: [tokens.get(i, str(i)) for i in ids]),
        ),
        "teacher": t[:64],
        "student": s[:64],
        "labels": None if y is None else y[:64],
        "class_names": names,
        "token_names": tokens,
    }


def _token_names(key: tuple, device: str, teacher: torch.Tensor) -> dict[int, str] | None:
    """Decoded tokens of the ids the soft-label views can show (each row's top classes), when the data has a
    tokenizer: {id: token}; None otherwise (classes are then named by class_names or their index)."""
    pair = _pair(key, device)
    tok = getattr(pair.dataset, "tokenizer", None)
    if tok is None or pair.dataset.task != "causal_lm" or pair.dataset.class_names:
        return None
    top = min(soft_labels_an.TOP_CLASSES, teacher.shape[-1])
    ids = sorted(set(teacher.topk(top, dim=-1).indices.reshape(-1).tolist()))
    shown = tok.tokens(ids) if hasattr(tok, "tokens") else [_token(tok, i) for i in ids]
    return dict(zip(ids, (str(x) for x in shown), strict=True))


@st.cache_data(show_spinner="Sweeping the temperature over every label…", max_entries=16)
def multilabel_sweep(key: tuple, device: str, n: int, temperatures: tuple[float, ...] = TEMPERATURES) -> pd.DataFrame:
    """Per-label sigmoid soft-label statistics of each model over `temperatures` (multi-label pairs)."""
    lg = logits(key, device, n)
    return multilabel_an.soft_label_sweep(_named_logits(lg), lg["targets"], temperatures)


@st.cache_data(show_spinner=False, max_entries=16)
def sweep_figures(key: tuple, device: str, n: int) -> dict:
    """The temperature-sweep figures (they do not depend on the sliders: the page only marks T on copies)."""
    res = sweep(key, device, n)
    return {
        "sweep": soft_labels_an.figure_sweep(res["sweep"]),
        "gradient": soft_labels_an.figure_gradient_scale(res["gradient"]),
        "classes": soft_labels_an.figure_class_probabilities(res["classes"]),
    }


# ---- features ---------------------------------------------------------------------------------------


PER_TOKEN_ROWS = 16384  # at most this many token rows (texts × length) when every token is a CKA row
CKA_TOKEN_DEFAULTS = {"cka_pool": "mean", "cka_drop_first": True, "cka_drop_special": True}  # widget key: default


def cka_token_kwargs(widgets: dict) -> dict:
    """The Features page's token widgets (keyed as CKA_TOKEN_DEFAULTS) -> keyword arguments of `cka`."""
    return {
        "pool": str(widgets["cka_pool"]),
        "drop_first": bool(widgets["cka_drop_first"]),
        "drop_special": bool(widgets["cka_drop_special"]),
    }


def token_inputs(pair) -> bool:
    """Whether the pair reads token ids [n, L] (language models, encoders): its CKA then has token options."""
    x = pair.dataset.split("test").inputs
    return isinstance(x, torch.Tensor) and x.dim() == 2 and not x.is_floating_point() and x.dtype != torch.bool


def special_ids(pair) -> tuple[int, ...]:
    """The ids of the dataset tokenizer's special tokens (BOS, EOS, padding, markers), () when unknown."""
    return tuple(int(i) for i in getattr(getattr(pair.dataset, "tokenizer", None), "special_ids", ()) or ())


@st.cache_data(show_spinner="Capturing features and computing CKA…", max_entries=16)
def cka(
    key: tuple,
    device: str,
    n: int,
    kind: str,
    debiased: bool,
    pool: str = "mean",
    drop_first: bool = True,
    drop_special: bool = True,
) -> dict[str, pd.DataFrame]:
    """Teacher×student, teacher×teacher and student×student CKA heatmaps. For token inputs, `pool` ("mean"
    or "per_token"), `drop_first` and `drop_special` choose the rows; padding is always left out."""
    pair = _pair(key, device)
    x, _, _ = state.probe(pair, n)
    tokens = token_inputs(pair)
    opts: dict = {"kind": kind, "debiased": debiased, "tokens": pool if tokens else "flatten"}
    if tokens and pool == "per_token":
        x = x[: max(4, PER_TOKEN_ROWS // max(1, x.shape[1]))]  # bounded memory: every token of fewer texts
    if tokens:
        mask = pair.dataset.split("test").extras.get("attention_mask")
        specials = special_ids(pair) if drop_special else ()
        opts.update(mask=None if mask is None else mask[: len(x)], drop_first=drop_first, special_ids=specials or None)
    t_layers, s_layers = _cka_layers(pair.teacher, x, tokens), _cka_layers(pair.student, x, tokens)
    return {
        "teacher × student": cka_an.pair_cka(
            pair.teacher, pair.student, x, layers_a=t_layers, layers_b=s_layers, **opts
        ),
        "teacher × teacher": cka_an.pair_cka(
            pair.teacher, pair.teacher, x, layers_a=t_layers, layers_b=t_layers, **opts
        ),
        "student × student": cka_an.pair_cka(
            pair.student, pair.student, x, layers_a=s_layers, layers_b=s_layers, **opts
        ),
    }


def _cka_layers(adapter, x, tokens: bool) -> list[str]:
    """The default layers whose features are per input ([n, ...]; for token inputs token features [n, L, d])."""
    layers = list(adapter.default_layers())
    feats = adapter.capture(x[:2], layers)
    return [k for k in layers if feats[k].shape[0] == 2 and (not tokens or feats[k].dim() == 3)]


# ---- attention --------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Capturing attention…", max_entries=16)
def attention(key: tuple, device: str, n: int, metric: str, mode: str):
    """Attention of both models on the first probe texts, positions labelled by the dataset's tokenizer
    (when it has one) and padding cut off (when the data has an attention mask)."""
    pair = _pair(key, device)
    x, _, _ = state.probe(pair, min(n, ATTENTION_MAX))
    mask = pair.dataset.split("test").extras.get("attention_mask")
    return attention_an.compute_from_adapters(
        pair.student,
        pair.teacher,
        x,
        metric=metric,
        mode=mode,
        tokenizer=getattr(pair.dataset, "tokenizer", None),
        attention_mask=None if mask is None else mask[: len(x)],
    )


def _token(tok, i: int) -> str:
    try:
        return tok.decode([i])
    except Exception:  # noqa: BLE001 — a label is only for display
        return str(i)


def conv_layers(key: tuple, device: str) -> tuple[list[str], list[str]]:
    """Layers whose features are maps [B, C, H, W], student and teacher (for attention transfer)."""
    pair = _pair(key, device)
    return _conv_layers(key, device, tuple(pair.student.default_layers()), tuple(pair.teacher.default_layers()))


@st.cache_data(show_spinner=False, max_entries=16)
def _conv_layers(key: tuple, device: str, s_layers: tuple, t_layers: tuple) -> tuple[list[str], list[str]]:
    pair = _pair(key, device)
    x, _, _ = state.probe(pair, 2)
    s = pair.student.capture(x, list(s_layers))
    t = pair.teacher.capture(x, list(t_layers))
    return [k for k in s_layers if s[k].dim() == 4], [k for k in t_layers if t[k].dim() == 4]


@st.cache_data(show_spinner="Computing attention-transfer maps…", max_entries=16)
def attention_transfer(key: tuple, device: str, n: int, student_layer: str, teacher_layer: str, p: float):
    pair = _pair(key, device)
    x, _, _ = state.probe(pair, min(n, ATTENTION_MAX))
    return attention_an.attention_transfer_from_adapters(
        pair.student, pair.teacher, x, student_layer=student_layer, teacher_layer=teacher_layer, p=p
    )


# ---- CAMs -------------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Computing Grad-CAM for teacher and student…", max_entries=16)
def cams(key: tuple, device: str, n: int, explain: str, q: float):
    """Grad-CAM of both models; `explain` is 'label' (the true class, or a present label) or 'teacher'."""
    pair = _pair(key, device)
    x, y, masks = state.probe(pair, min(n, CAM_MAX))
    if explain == "teacher":
        t_logits = pair.teacher.logits(x).cpu()
        targets = t_logits.argmax(1)
    elif y.dim() == 2:  # multi-label: the present label the teacher rates highest
        t_logits = pair.teacher.logits(x).cpu()
        targets = t_logits.masked_fill(~y.bool(), float("-inf")).argmax(1)
    else:
        targets = y
    return cams_an.compute(
        pair.student, pair.teacher, x, targets, masks=masks, q=q, class_names=pair.dataset.class_names
    )


# ---- divergence components --------------------------------------------------------------------------


@st.cache_data(show_spinner="Splitting the divergence into its components…", max_entries=32)
def components(key: tuple, device: str, n: int, temperature: float, k: int, tau: float):
    lg = logits(key, device, n)
    return components_an.compute(
        lg["student"],
        lg["teacher"],
        lg["targets"],
        k=k,
        tau=tau,
        temperature=temperature,
        class_names=lg["class_names"],
    )


@st.cache_data(show_spinner="Comparing the models token by token…", max_entries=32)
def token_components(key: tuple, device: str, n: int, index: int, temperature: float):
    lg = logits(key, device, n)
    pair = _pair(key, device)
    x, y, _ = state.probe(pair, n)
    tok = pair.dataset.tokenizer
    tokens = [_token(tok, int(i)) for i in x[index].tolist()]
    return components_an.token_components(
        lg["student"][index], lg["teacher"][index], tokens=tokens, labels=y[index], temperature=temperature
    )


def position_kinds(key: tuple, device: str, n: int) -> torch.Tensor | None:
    """[n, L] kind of every probe position (1 copy, 0 local, -1 other) where the data marks them (tinylang)."""
    pair = _pair(key, device)
    kinds = pair.dataset.split("test").extras.get("position_kind")
    return None if kinds is None else kinds[:n]


@st.cache_data(show_spinner="Splitting the mismatch into copy and local positions…", max_entries=16)
def token_split(key: tuple, device: str, n: int, temperature: float) -> pd.DataFrame | None:
    """Every token divergence and each model's accuracy on copy vs local positions of the n probe texts."""
    kinds = position_kinds(key, device, n)
    if kinds is None:
        return None
    lg = logits(key, device, n)
    return tokens_an.split_by_position_kind(
        lg["student"], lg["teacher"], lg["targets"], kinds, baseline_logits=lg["baseline"], temperature=temperature
    )


# ---- calibration ------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Measuring calibration…", max_entries=16)
def calibration(key: tuple, device: str, n: int, n_bins: int) -> dict:
    """Calibration of each model. LMs: every predicted position. Multi-label: every (sample, label) as a
    yes/no prediction with its sigmoid probability."""
    lg = logits(key, device, n)
    y = lg["targets"]
    roles = [r for r in ("teacher", "baseline", "student") if lg[r] is not None]
    names = {"teacher": "teacher", "baseline": "student baseline", "student": "student"}
    out = {}
    for r in roles:
        z = lg[r]
        if lg["task"] == "multilabel":
            p = torch.sigmoid(z.double()).reshape(-1)  # [N·C]
            out[names[r]] = calibration_an.calibration(torch.stack([1 - p, p], 1), y.reshape(-1).long(), n_bins=n_bins)
        else:
            zf, yf = z.reshape(-1, z.shape[-1]), y.reshape(-1)
            keep = yf != -100
            out[names[r]] = calibration_an.calibration_from_logits(zf[keep], yf[keep], n_bins=n_bins)
    return out


# ---- generated samples of teacher and student (causal LMs, methods/15 views) ---------------------------


def sample_prompts(key: tuple, device: str, n: int = 32) -> tuple[list[list[int]], int | None, int] | None:
    """(the first n held-out prompts, stop id, pad id) of the pair's prompt records (tinylang: its copy
    task's test prompts; a prompt/completion dataset: its test split), None when the data have none."""
    from kdcore.jobs.heldout import heldout_prompts

    ps = heldout_prompts(_pair(key, device).dataset, n)
    return None if ps is None else (ps.prompts, ps.eos_id, ps.pad_id)


def encode_prompt(key: tuple, device: str, text: str) -> list[int]:
    """The prompt's ids under the pair's tokenizer (HF: with its special tokens, e.g. BOS)."""
    tok = getattr(_pair(key, device).dataset, "tokenizer", None)
    if tok is None:
        raise ValueError("The pair's data have no tokenizer: choose a prompt from the list instead of typing one.")
    return list(tok.encode(text))


def stop_ids(key: tuple, device: str) -> tuple[int | None, int]:
    """(stop id, pad id) for typed prompts: the tokenizer's EOS (tinylang: <s>), pad = its pad or the stop id."""
    tok = getattr(_pair(key, device).dataset, "tokenizer", None)
    found = sample_prompts(key, device, 1)
    eos = getattr(tok, "eos_token_id", None)
    if eos is None and found is not None:
        eos = found[1]
    pad = getattr(tok, "pad_token_id", None)
    return eos, int(pad if pad is not None else (eos if eos is not None else 0))


def token_text(key: tuple, device: str, i: int) -> str:
    """One token's display text under the pair's tokenizer."""
    return _token(getattr(_pair(key, device).dataset, "tokenizer", None), int(i))


@st.cache_data(show_spinner="Teacher and student generate, then score each other's tokens…", max_entries=32)
def generated_samples(key: tuple, device: str, prompt: tuple[int, ...], eos: int | None, pad: int, settings: tuple):
    """kdcore.sample_divergence.sample_divergences on the pair (settings: sorted (name, value) pairs:
    divergence, temperature and the generation settings)."""
    from kdcore.sample_divergence import sample_divergences

    pair = _pair(key, device)
    return sample_divergences(pair.student, pair.teacher, list(prompt), eos_id=eos, pad_id=pad, **dict(settings))
