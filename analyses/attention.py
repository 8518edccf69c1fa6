"""Attention, teacher against student: maps, entropy per head, head matching, attention-transfer maps.

What the view shows
-------------------
- **Maps per layer and head** for one input: each row of a map is a query position, each column a
  key position, the colour the attention probability. Teacher heads on top, student heads below,
  the head-averaged map last in each row.
- **Head-averaged maps** for every matched pair of layers, teacher and student side by side.
- **Entropy per head** (nats, averaged over the inputs and the kept query rows): low entropy is a
  sharp head that looks at one or two positions (a previous-token or copy head); entropy near
  ln(L) is a head that spreads its attention evenly.
- **Head matching**: for a teacher layer and a student layer, the divergence between every
  student head and every teacher head (KL(teacher row ‖ student row) averaged over rows, the
  direction MiniLM distils, Wang et al. 2020, arXiv 2002.10957), and the best assignment
  (Hungarian algorithm, one-to-one; with different head counts the smaller set is assigned, or
  every student head goes to its nearest teacher head).
- **Attention-transfer maps** for CNN features (Zagoruyko & Komodakis 2017, arXiv 1612.03928):
  a(F) = vec(mean_c |F_c|^p), p = 2, L2-normalised per sample: where in the image a layer's
  activations are large.

What to look for
----------------
A student whose heads all have high entropy has not learned the teacher's sharp heads; a teacher
head with no close student head (a high value on the assignment) is structure the student lacks.
Attention-transfer maps that light up different regions mean the student looks elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from analyses import _style
from kdcore.validation import as_tensor

_CHUNK = 2**22  # float64 elements per intermediate (32 MiB): long texts stay bounded
METRICS = ("kl", "js", "mse")  # divergences between two heads' attention rows
MODES = ("one_to_one", "nearest")  # how student heads are assigned to teacher heads


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_attention(name: str, attn: Any, where: str) -> Tensor:
    """Attention probabilities [B, H, L, L]: finite, non-negative, rows summing to 1."""
    attn = as_tensor(name, attn, where=where)
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2] or attn.numel() == 0:
        raise ValueError(
            f"The '{name}' argument of {where} must be attention probabilities of shape "
            f"[batch, heads, length, length]. Got shape {tuple(attn.shape)} instead."
        )
    attn = attn.detach().to("cpu", torch.float64 if attn.dtype == torch.float64 else torch.float32)
    sums = attn.sum(-1)  # [B, H, L]; NaN or inf anywhere shows here
    if not bool(torch.isfinite(sums).all()) or float(attn.min()) < 0:
        raise ValueError(
            f"The '{name}' argument of {where} must hold finite, non-negative probabilities. "
            f"Got values from {float(attn.min())} to {float(attn.max())}."
        )
    if float((sums - 1).abs().max()) > 1e-3:
        raise ValueError(
            f"The '{name}' argument of {where} must have rows that sum to 1 (softmax over keys). "
            f"Got row sums from {float(sums.min()):.4g} to {float(sums.max()):.4g}: "
            f"pass attention probabilities, not scores."
        )
    return attn


def _check_layers(name: str, layers: Any, where: str) -> list[Tensor]:
    if isinstance(layers, (Tensor, np.ndarray)):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        raise ValueError(
            f"The '{name}' argument of {where} must be a non-empty list of per-layer attention "
            f"tensors [B, H, L, L]. Got {type(layers).__name__} instead."
        )
    out = [_check_attention(f"{name}[{i}]", a, where) for i, a in enumerate(layers)]
    shape = out[0].shape
    for i, a in enumerate(out):
        if a.shape[0] != shape[0] or a.shape[-1] != shape[-1]:
            raise ValueError(
                f"Every layer of '{name}' in {where} must have the same batch size and length. "
                f"Layer 0 has shape {tuple(shape)}, layer {i} has {tuple(a.shape)}."
            )
    return out


def _check_mask(mask: Any, batch: int, length: int, where: str) -> Tensor | None:
    """Query mask [B, L] (True/1 = a position that counts)."""
    if mask is None:
        return None
    mask = as_tensor("mask", mask, where=where)
    if mask.shape != (batch, length):
        raise ValueError(
            f"The 'mask' argument of {where} must have shape [{batch}, {length}] (batch, length). "
            f"Got shape {tuple(mask.shape)} instead."
        )
    mask = mask.to("cpu").bool()
    if not bool(mask.any()):
        raise ValueError(f"The 'mask' argument of {where} keeps no position: keep at least one query row.")
    return mask


def _row_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of values [B, ..., L] over batch and kept query rows -> [...]."""
    if mask is None:
        return values.mean(dim=(0, -1))
    w = mask.to(values.dtype).view(mask.shape[0], *([1] * (values.dim() - 2)), mask.shape[1])  # [B, 1.., L]
    return (values * w).sum(dim=(0, -1)) / w.sum(dim=(0, -1))


# --------------------------------------------------------------------------------------------
# Entropy and head divergences
# --------------------------------------------------------------------------------------------
def head_entropy(attn: Any, *, mask: Any = None) -> Tensor:
    """Entropy (nats) of each head's attention rows, averaged over batch and kept query rows.

    ``attn`` [B, H, L, L] attention probabilities; ``mask`` [B, L] optional query mask.
    Returns [H] (float64, whatever the input dtype). H(row) = −Σ_k a_k log a_k with 0·log 0 = 0.
    """
    where = "head_entropy"
    attn = _check_attention("attn", attn, where)
    return _entropy(attn, _check_mask(mask, attn.shape[0], attn.shape[-1], where))


def _batch_chunks(batch: int, per_sample: int) -> list[slice]:
    """Slices of the batch so that an intermediate of ``per_sample`` elements per sample stays ≤ _CHUNK."""
    step = max(1, _CHUNK // max(per_sample, 1))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]


def _entropy(attn: Tensor, mask: Tensor | None) -> Tensor:
    """Validated [B, H, L, L] -> [H] (float64, computed in chunks of the batch)."""
    b, h, length, _ = attn.shape
    ent = torch.empty(b, h, length, dtype=torch.float64)  # [B, H, L]
    for sl in _batch_chunks(b, h * length * length):
        a = attn[sl].double()
        ent[sl] = -torch.special.xlogy(a, a).sum(-1)
    return _row_mean(ent, mask)


def _kl_rows(p: Tensor, q: Tensor) -> Tensor:
    """KL(p ‖ q) over the last dim; 0·log 0 = 0, +inf where q = 0 < p."""
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


def head_divergence(student_attn: Any, teacher_attn: Any, *, metric: str = "kl", mask: Any = None) -> np.ndarray:
    """Divergence between every student head and every teacher head of one layer pair.

    ``student_attn`` [B, Hs, L, L] and ``teacher_attn`` [B, Ht, L, L]; returns D [Hs, Ht] (float64),
    D[i, j] = mean over batch and kept query rows of div(teacher row of head j, student row of head i).
    ``metric``: ``"kl"`` KL(teacher ‖ student) (MiniLM's direction; +inf where the student gives 0 to a
    key the teacher attends), ``"js"`` Jensen–Shannon (symmetric, ≤ ln 2), ``"mse"`` mean squared
    difference over keys (TinyBERT, Jiao et al. 2020, arXiv 1909.10351).
    """
    where = "head_divergence"
    s = _check_attention("student_attn", student_attn, where)
    t = _check_attention("teacher_attn", teacher_attn, where)
    if s.shape[0] != t.shape[0] or s.shape[-1] != t.shape[-1]:
        raise ValueError(
            f"student_attn and teacher_attn of {where} must have the same batch size and length. "
            f"Got {tuple(s.shape)} for the student and {tuple(t.shape)} for the teacher."
        )
    if metric not in METRICS:
        raise ValueError(f"The 'metric' parameter of {where} must be one of {METRICS}. Got {metric!r} instead.")
    return _divergence(s, t, metric, _check_mask(mask, s.shape[0], s.shape[-1], where))


def _divergence(s: Tensor, t: Tensor, metric: str, mask: Tensor | None) -> np.ndarray:
    """Validated [B, Hs, L, L] and [B, Ht, L, L] -> [Hs, Ht] (float64; one teacher head and a chunk of
    the batch at a time, so memory stays bounded for long texts)."""
    b, hs, length, _ = s.shape
    rows = torch.empty(b, hs, t.shape[1], length, dtype=torch.float64)  # [B, Hs, Ht, L]
    for sl in _batch_chunks(b, hs * length * length):
        ss = s[sl].double()  # [b, Hs, L, L]
        for j in range(t.shape[1]):
            tt = t[sl, j : j + 1].double()  # [b, 1, L, L]
            if metric == "kl":
                r = _kl_rows(tt, ss)  # [b, Hs, L]
            elif metric == "js":
                m = 0.5 * (ss + tt)
                r = 0.5 * _kl_rows(tt, m) + 0.5 * _kl_rows(ss, m)
            else:
                r = ((ss - tt) ** 2).mean(-1)
            rows[sl, :, j] = r
    return _row_mean(rows, mask).numpy()  # [Hs, Ht]


def match_heads(divergence: Any, *, mode: str = "one_to_one") -> list[tuple[int, int, float]]:
    """Assign student heads (rows) to teacher heads (columns) of a divergence matrix [Hs, Ht].

    ``"one_to_one"``: the assignment of least total divergence (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``); with different head counts, min(Hs, Ht) pairs are
    assigned and the larger set's remaining heads stay unmatched. ``"nearest"``: every student head
    goes to its nearest teacher head (many-to-one allowed; ties to the lower index).
    Returns (student_head, teacher_head, divergence) triples sorted by student head.
    """
    where = "match_heads"
    d = np.asarray(divergence, dtype=np.float64)
    if d.ndim != 2 or d.size == 0 or np.isnan(d).any():
        raise ValueError(
            f"The 'divergence' argument of {where} must be a non-empty [student heads, teacher heads] "
            f"matrix without NaN. Got shape {d.shape} instead."
        )
    if mode not in MODES:
        raise ValueError(f"The 'mode' parameter of {where} must be one of {MODES}. Got {mode!r} instead.")
    if mode == "nearest":
        cols = np.argmin(d, axis=1)
        rows = np.arange(d.shape[0])
    else:
        finite = d[np.isfinite(d)]
        big = (finite.max() + 1.0) * max(d.shape) * 10 if finite.size else 1.0
        rows, cols = linear_sum_assignment(np.where(np.isfinite(d), d, big))  # +inf -> large finite
    return [(int(r), int(c), float(d[r, c])) for r, c in sorted(zip(rows, cols))]


def default_layer_map(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Student layer i -> teacher layer ceil((i+1)·Nt/Ns) − 1: uniform, last to last (TinyBERT's g(m))."""
    return [(i, math.ceil((i + 1) * n_teacher / n_student) - 1) for i in range(n_student)]


# --------------------------------------------------------------------------------------------
# Result and compute
# --------------------------------------------------------------------------------------------
@dataclass
class AttentionResult:
    """Attention of a teacher and a student on the same inputs, with per-head summaries."""

    student: list[Tensor]  # per student layer [B, Hs, L, L] (CPU, float32 or float64)
    teacher: list[Tensor]  # per teacher layer [B, Ht, L, L]
    layer_map: list[tuple[int, int]]  # (student layer, teacher layer) pairs compared
    entropy: pd.DataFrame  # role, layer, head, entropy (nats), max_entropy (ln L)
    divergence: dict[tuple[int, int], np.ndarray]  # (student layer, teacher layer) -> [Hs, Ht]
    matches: pd.DataFrame  # student_layer, student_head, teacher_layer, teacher_head, divergence
    metric: str = "kl"  # divergence used for matching
    mode: str = "one_to_one"  # assignment rule
    tokens: list[str] | None = None  # labels of the positions of input 0, if known
    mask: Tensor | None = field(default=None, repr=False)  # [B, L] query mask, if any
    input_tokens: list[list[str]] | None = None  # labels of every input's positions [B][L], if known
    real: Tensor | None = field(default=None, repr=False)  # [B, L] True on real tokens (False: padding, cut off)

    def labels(self, sample: int) -> list[str] | None:
        """The position labels of one input (input 0's ``tokens`` when only those are known)."""
        if self.input_tokens is not None:
            return self.input_tokens[sample]
        return self.tokens if sample == 0 or self.tokens is None else None

    def positions(self, sample: int) -> list[int]:
        """The positions of one input that the maps show: every one, or the real tokens (padding cut off)."""
        length = self.student[0].shape[-1]
        if self.real is None:
            return list(range(length))
        return [int(i) for i in torch.nonzero(self.real[sample]).flatten()]


def compute(
    student_attn: Sequence[Any],
    teacher_attn: Sequence[Any],
    *,
    layer_map: Sequence[tuple[int, int]] | None = None,
    metric: str = "kl",
    mode: str = "one_to_one",
    mask: Any = None,
    tokens: Sequence[str] | None = None,
    input_tokens: Sequence[Sequence[str]] | None = None,
    attention_mask: Any = None,
) -> AttentionResult:
    """Entropy per head, divergence between every pair of heads and the best head assignment.

    ``student_attn`` / ``teacher_attn``: per layer [B, H, L, L] attention probabilities of the same
    inputs (as returned by ``ModelAdapter.attentions``). ``layer_map``: (student layer, teacher layer)
    pairs to compare (default: :func:`default_layer_map`). ``mask`` [B, L]: query positions that count.
    ``tokens``: labels of input 0's L positions; ``input_tokens``: labels of every input's positions
    [B][L] (see :func:`token_labels`). ``attention_mask`` [B, L]: 1 on real tokens, 0 on padding:
    padding rows do not count (it is the query mask when ``mask`` is None) and the figures cut it off.
    """
    where = "analyses.attention.compute"
    s_layers = _check_layers("student_attn", student_attn, where)
    t_layers = _check_layers("teacher_attn", teacher_attn, where)
    b, length = s_layers[0].shape[0], s_layers[0].shape[-1]
    if (t_layers[0].shape[0], t_layers[0].shape[-1]) != (b, length):
        raise ValueError(
            f"The student and teacher attention of {where} must cover the same inputs: got batch/length "
            f"{(b, length)} for the student and {(t_layers[0].shape[0], t_layers[0].shape[-1])} for the teacher."
        )
    real = _check_mask(attention_mask, b, length, where)
    mask_t = _check_mask(mask, b, length, where) if mask is not None else real
    if tokens is not None and len(tokens) != length:
        raise ValueError(
            f"The 'tokens' argument of {where} must have one label per position ({length}). Got {len(tokens)} instead."
        )
    labels = _check_input_tokens(input_tokens, b, length, where)
    if tokens is None and labels is not None:
        tokens = labels[0]
    if metric not in METRICS:
        raise ValueError(f"The 'metric' parameter of {where} must be one of {METRICS}. Got {metric!r} instead.")
    if mode not in MODES:
        raise ValueError(f"The 'mode' parameter of {where} must be one of {MODES}. Got {mode!r} instead.")
    if layer_map is None:
        layer_map = default_layer_map(len(s_layers), len(t_layers))
    layer_map = [(int(i), int(j)) for i, j in layer_map]
    for i, j in layer_map:
        if not (0 <= i < len(s_layers) and 0 <= j < len(t_layers)):
            raise ValueError(
                f"The 'layer_map' argument of {where} holds the pair ({i}, {j}), but the student has "
                f"{len(s_layers)} layers and the teacher {len(t_layers)} (indices start at 0)."
            )
    rows = []
    for role, layers in (("teacher", t_layers), ("student", s_layers)):
        for li, a in enumerate(layers):
            for h, e in enumerate(_entropy(a, mask_t).tolist()):
                rows.append({"role": role, "layer": li, "head": h, "entropy": e, "max_entropy": math.log(length)})
    entropy = pd.DataFrame(rows)
    divergence, match_rows = {}, []
    for i, j in layer_map:
        d = _divergence(s_layers[i], t_layers[j], metric, mask_t)
        divergence[(i, j)] = d
        for sh, th, v in match_heads(d, mode=mode):
            match_rows.append(
                {"student_layer": i, "student_head": sh, "teacher_layer": j, "teacher_head": th, "divergence": v}
            )
    matches = pd.DataFrame(
        match_rows, columns=["student_layer", "student_head", "teacher_layer", "teacher_head", "divergence"]
    )
    return AttentionResult(
        student=s_layers,
        teacher=t_layers,
        layer_map=layer_map,
        entropy=entropy,
        divergence=divergence,
        matches=matches,
        metric=metric,
        mode=mode,
        tokens=list(tokens) if tokens is not None else None,
        mask=mask_t,
        input_tokens=labels,
        real=real,
    )


def _check_input_tokens(input_tokens: Any, batch: int, length: int, where: str) -> list[list[str]] | None:
    """Labels [B][L] of every input's positions, as lists of str."""
    if input_tokens is None:
        return None
    rows = [list(r) for r in input_tokens]
    if len(rows) != batch or any(len(r) != length for r in rows):
        got = f"{len(rows)} inputs with {sorted({len(r) for r in rows})} labels"
        raise ValueError(
            f"The 'input_tokens' argument of {where} must hold one label per position of every input "
            f"({batch} inputs of {length} positions). Got {got} instead."
        )
    return [[str(t) for t in r] for r in rows]


def token_labels(tokenizer: Any, ids: Any) -> list[list[str]]:
    """Display labels of token ids [B, L], one per position: ``tokenizer.tokens(row)`` (the decoded
    tokens, whitespace made visible) when the tokenizer has it, else ``decode([id])`` per token."""
    where = "token_labels"
    ids_t = as_tensor("ids", ids, where=where)
    if ids_t.dim() != 2 or ids_t.is_floating_point():
        raise ValueError(
            f"The 'ids' argument of {where} must be integer token ids [batch, length]. "
            f"Got shape {tuple(ids_t.shape)} and dtype {ids_t.dtype} instead."
        )
    rows = ids_t.tolist()
    if hasattr(tokenizer, "tokens"):
        return [[str(t) for t in tokenizer.tokens(r)] for r in rows]
    if hasattr(tokenizer, "decode"):
        return [[str(tokenizer.decode([i])) for i in r] for r in rows]
    raise ValueError(
        f"The 'tokenizer' argument of {where} must have tokens(ids) or decode(ids) "
        f"(a Dataset.tokenizer). Got {type(tokenizer).__name__} instead."
    )


def compute_from_adapters(
    student: Any, teacher: Any, inputs: Tensor, *, tokenizer: Any = None, attention_mask: Any = None, **kwargs: Any
) -> AttentionResult:
    """:func:`compute` on ``student.attentions(inputs)`` and ``teacher.attentions(inputs)`` (ModelAdapters).

    ``tokenizer`` (a Dataset.tokenizer): every input's positions labelled with its decoded tokens.
    ``attention_mask`` [B, L] (1 real, 0 padding): given to Hugging Face models, padding rows left out
    of the summaries and cut off the maps.
    """
    if tokenizer is not None:
        kwargs["input_tokens"] = token_labels(tokenizer, inputs)
    s = student.attentions(_model_inputs(student, inputs, attention_mask))
    t = teacher.attentions(_model_inputs(teacher, inputs, attention_mask))
    for role, a in (("student", s), ("teacher", t)):
        if a is None:
            raise ValueError(
                f"The {role} model of analyses.attention.compute_from_adapters exposes no attention "
                f"weights: the attention view needs transformer models (e.g. the 'tinylang' pair)."
            )
    return compute(s, t, attention_mask=attention_mask, **kwargs)


def _model_inputs(model: Any, ids: Tensor, mask: Any) -> Any:
    """Token ids with their attention mask for a Hugging Face model (padding must not be attended to)."""
    from kdcore.adapters.hf import HFAdapter

    if mask is None or not isinstance(model, HFAdapter):
        return ids
    return {"input_ids": ids, "attention_mask": torch.as_tensor(mask).long()}


# --------------------------------------------------------------------------------------------
# Attention-transfer maps for CNN features (METHODS §7)
# --------------------------------------------------------------------------------------------
@dataclass
class AttentionTransferResult:
    """Attention-transfer maps a(F) of a teacher and a student feature map, per sample."""

    teacher: Tensor  # [B, Ht, Wt] L2-normalised over positions
    student: Tensor  # [B, Hs, Ws] L2-normalised over positions
    student_resized: Tensor  # [B, Ht, Wt] the student map resized bilinearly to the teacher's grid
    per_sample: pd.DataFrame  # sample, loss (kdcore.losses.attention_transfer_loss on that sample)
    p: float = 2.0  # exponent of |F_c|^p
    images: Tensor | None = field(default=None, repr=False)  # [B, C, H, W] inputs, for display


def _at_map(fmap: Tensor, p: float) -> Tensor:
    """kdcore's a(F), reshaped to the spatial grid: [B, C, H, W] -> [B, H, W]."""
    from kdcore.losses import attention_map

    b, _, h, w = fmap.shape
    return attention_map(fmap, p=p).detach().to("cpu", torch.float32).reshape(b, h, w)


def attention_transfer_maps(
    student_fmap: Any, teacher_fmap: Any, *, p: float = 2.0, images: Any = None
) -> AttentionTransferResult:
    """a(F) = vec(mean_c |F_c|^p), L2-normalised per sample, for a student and a teacher feature map.

    ``student_fmap`` [B, Cs, Hs, Ws], ``teacher_fmap`` [B, Ct, Ht, Wt] (channel counts may differ).
    The maps come from ``kdcore.losses.attention_map``; the per-sample loss from
    ``kdcore.losses.attention_transfer_loss`` (Zagoruyko & Komodakis 2017, arXiv 1612.03928).
    """
    from kdcore.losses import attention_transfer_loss

    where = "attention_transfer_maps"
    s = as_tensor("student_fmap", student_fmap, where=where)
    t = as_tensor("teacher_fmap", teacher_fmap, where=where)
    for name, x in (("student_fmap", s), ("teacher_fmap", t)):
        if x.dim() != 4 or x.numel() == 0:
            raise ValueError(
                f"The '{name}' argument of {where} must be a conv feature map [B, C, H, W]. "
                f"Got shape {tuple(x.shape)} instead."
            )
    if s.shape[0] != t.shape[0]:
        raise ValueError(
            f"student_fmap and teacher_fmap of {where} must have the same batch size. "
            f"Got {s.shape[0]} and {t.shape[0]}."
        )
    s, t = s.detach(), t.detach()
    with torch.no_grad():
        a_t, a_s = _at_map(t, p), _at_map(s, p)  # [B, Ht, Wt], [B, Hs, Ws]
        resized = F.interpolate(a_s.unsqueeze(1), size=a_t.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        resized = resized / resized.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)  # [B, Ht, Wt]
        losses = [float(attention_transfer_loss(s[i : i + 1], t[i : i + 1], p=p)) for i in range(s.shape[0])]
    per_sample = pd.DataFrame({"sample": np.arange(s.shape[0]), "loss": losses})
    imgs = as_tensor("images", images, where=where).detach().cpu() if images is not None else None
    return AttentionTransferResult(
        teacher=a_t, student=a_s, student_resized=resized, per_sample=per_sample, p=p, images=imgs
    )


def attention_transfer_from_adapters(
    student: Any, teacher: Any, inputs: Tensor, *, student_layer: str, teacher_layer: str, p: float = 2.0
) -> AttentionTransferResult:
    """:func:`attention_transfer_maps` on features captured by two ModelAdapters at the named layers."""
    fs = student.capture(inputs, [student_layer])[student_layer]
    ft = teacher.capture(inputs, [teacher_layer])[teacher_layer]
    return attention_transfer_maps(fs, ft, p=p, images=inputs)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
_MAP_HOVER = "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra>%{fullData.name}</extra>"


MAX_LABELS = 40  # token labels per axis; a longer text labels every k-th position
GRID_LABELS = 32  # maps side by side: texts longer than this are not labelled with tokens


def _token_ticks(
    fig: go.Figure, result: AttentionResult, sample: int, positions: list[int], *, panels: int = 1
) -> None:
    """Positions on both axes (numbers, so repeated tokens keep their own row and column), labelled
    with the input's tokens when known: every k-th one, at most MAX_LABELS across the figure's width
    (shared by `panels` maps side by side), so the labels never run into each other."""
    labels = result.labels(sample)
    if panels > 1 and len(positions) > GRID_LABELS:
        return  # a long text in narrow maps side by side: the positions' numbers only
    if labels is not None and positions:
        most = max(2, MAX_LABELS // (2 * panels) if panels > 1 else MAX_LABELS)
        shown = positions[:: max(1, math.ceil(len(positions) / most))]
        ticks = {"tickmode": "array", "tickvals": shown, "ticktext": [labels[p] for p in shown]}
        if panels == 1:  # maps side by side are too narrow for words under them: key positions stay numbers
            fig.update_xaxes(**ticks)
        fig.update_yaxes(**ticks)


def _cut(maps: Tensor, keep: list[int]) -> np.ndarray:
    """[..., L, L] -> [..., K, K]: the rows and columns of the kept positions (padding cut off)."""
    return maps[..., keep, :][..., keep].numpy()


def maps_figure(
    result: AttentionResult, *, sample: int = 0, student_layer: int = 0, teacher_layer: int | None = None
) -> go.Figure:
    """Per-head attention maps of one input: teacher heads (top row) and student heads (bottom row),
    each row ending with the head-averaged map. Rows = query positions, columns = key positions."""
    if teacher_layer is None:
        teacher_layer = dict(result.layer_map).get(student_layer, len(result.teacher) - 1)
    _check_index("student_layer", student_layer, len(result.student), "maps_figure")
    _check_index("teacher_layer", teacher_layer, len(result.teacher), "maps_figure")
    _check_index("sample", sample, result.student[0].shape[0], "maps_figure")
    positions = result.positions(sample)  # real tokens: padding cut off
    t = _cut(result.teacher[teacher_layer][sample], positions)  # [Ht, K, K]
    s = _cut(result.student[student_layer][sample], positions)  # [Hs, K, K]
    ncols = max(t.shape[0], s.shape[0]) + 1
    titles = (
        [f"teacher L{teacher_layer} H{h}" for h in range(t.shape[0])]
        + [""] * (ncols - 1 - t.shape[0])
        + [f"teacher L{teacher_layer} mean"]
        + [f"student L{student_layer} H{h}" for h in range(s.shape[0])]
        + [""] * (ncols - 1 - s.shape[0])
        + [f"student L{student_layer} mean"]
    )
    fig = make_subplots(rows=2, cols=ncols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.12)
    for row, (role, maps) in enumerate((("teacher", t), ("student", s)), start=1):
        panels = [(f"{role} head {h}", maps[h], h + 1) for h in range(maps.shape[0])]
        panels.append((f"{role} mean over heads", maps.mean(0), ncols))
        for name, z, col in panels:
            fig.add_trace(
                go.Heatmap(z=z, x=positions, y=positions, coloraxis="coloraxis", name=name, hovertemplate=_MAP_HOVER),
                row=row,
                col=col,
            )
    fig.update_yaxes(autorange="reversed")
    _token_ticks(fig, result, sample, positions, panels=ncols)
    fig.update_yaxes(showticklabels=False)  # panels sit close: query positions on the left only
    fig.update_yaxes(showticklabels=True, col=1)
    fig.update_layout(
        coloraxis={
            "colorscale": _style.SEQUENTIAL,
            "cmin": 0.0,
            "colorbar": {"title": {"text": "attention<br>probability"}},
        }
    )
    _style.finish(
        fig,
        title=f"Attention maps, input {sample}: teacher layer {teacher_layer} vs student layer {student_layer}",
        legend=False,
        height=520,
    )
    fig.update_xaxes(title_text="key position", row=2, col=1)  # narrow panels: named once, bottom left
    fig.update_yaxes(title_text="query position", col=1)
    return fig


def head_average_figure(result: AttentionResult, *, sample: int = 0) -> go.Figure:
    """Head-averaged attention of one input, teacher (left) and student (right), per compared layer pair."""
    _check_index("sample", sample, result.student[0].shape[0], "head_average_figure")
    n = len(result.layer_map)
    titles = []
    for i, j in result.layer_map:
        titles += [f"teacher layer {j}", f"student layer {i}"]
    fig = make_subplots(
        rows=n, cols=2, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=min(0.08, 0.3 / max(n - 1, 1))
    )
    positions = result.positions(sample)  # real tokens: padding cut off
    for r, (i, j) in enumerate(result.layer_map, start=1):
        for c, (role, z) in enumerate(
            (("teacher", result.teacher[j][sample].mean(0)), ("student", result.student[i][sample].mean(0))), start=1
        ):
            fig.add_trace(
                go.Heatmap(
                    z=_cut(z, positions),
                    x=positions,
                    y=positions,
                    coloraxis="coloraxis",
                    name=f"{role} layer {j if role == 'teacher' else i}",
                    hovertemplate=_MAP_HOVER,
                ),
                row=r,
                col=c,
            )
    fig.update_yaxes(autorange="reversed", title_text="query position", col=1)
    fig.update_xaxes(title_text="key position", row=n)
    _token_ticks(fig, result, sample, positions)
    fig.update_layout(
        coloraxis={
            "colorscale": _style.SEQUENTIAL,
            "cmin": 0.0,
            "colorbar": {"title": {"text": "attention<br>probability"}},
        }
    )
    return _style.finish(
        fig,
        title=f"Head-averaged attention, input {sample}: teacher vs student",
        legend=False,
        height=max(320, 280 * n),
    )


def entropy_figure(result: AttentionResult) -> go.Figure:
    """Entropy (nats) of every head, teacher (left) and student (right): layers down, heads across."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["teacher", "student"], horizontal_spacing=0.1)
    for c, role in enumerate(("teacher", "student"), start=1):
        df = result.entropy[result.entropy["role"] == role]
        grid = df.pivot(index="layer", columns="head", values="entropy")  # [layers, heads]
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(),
                x=list(grid.columns),
                y=list(grid.index),
                coloraxis="coloraxis",
                name=role,
                customdata=np.full(grid.shape, df["max_entropy"].iloc[0]),
                hovertemplate="layer %{y}, head %{x}<br>entropy %{z:.3f} nats"
                "<br>(uniform: %{customdata:.3f} nats)<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=c,
        )
    fig.update_xaxes(title_text="head", dtick=1)
    fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed")
    fig.update_layout(
        coloraxis={"colorscale": _style.SEQUENTIAL, "cmin": 0.0, "colorbar": {"title": {"text": "entropy (nats)"}}}
    )
    return _style.finish(fig, title="Attention entropy per head (mean over inputs and query rows)", legend=False)


def matching_figure(result: AttentionResult, *, pair: int = 0) -> go.Figure:
    """Divergence between every student head (rows) and teacher head (columns) of one layer pair,
    with the assigned pairs marked."""
    _check_index("pair", pair, len(result.layer_map), "matching_figure")
    i, j = result.layer_map[pair]
    d = result.divergence[(i, j)]
    unit = {"kl": "KL(teacher ‖ student), nats", "js": "Jensen–Shannon, nats", "mse": "mean squared difference"}[
        result.metric
    ]
    fig = go.Figure(
        go.Heatmap(
            z=d,
            x=list(range(d.shape[1])),
            y=list(range(d.shape[0])),
            colorscale=_style.SEQUENTIAL,
            colorbar={"title": {"text": unit.replace(", ", ",<br>"), "side": "right"}},
            name="divergence",
            hovertemplate="student head %{y}<br>teacher head %{x}<br>%{z:.4f}<extra></extra>",
        )
    )
    m = result.matches[(result.matches["student_layer"] == i) & (result.matches["teacher_layer"] == j)]
    m_name = f"assigned pair, {result.mode.replace('_', '-')}"
    fig.add_trace(
        go.Scatter(
            x=m["teacher_head"],
            y=m["student_head"],
            mode="markers",
            name=m_name,
            marker={"symbol": "x", "size": 14, "color": _style.STUDENT},
            customdata=m["divergence"],
            hovertemplate="student head %{y} → teacher head %{x}<br>%{customdata:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(dtick=1, autorange="reversed")
    return _style.finish(
        fig,
        title=f"Head matching: student layer {i} vs teacher layer {j} (× = {m_name})",
        x=f"teacher head (layer {j})",
        y=f"student head (layer {i})",
        legend=False,
    )


def attention_transfer_figure(result: AttentionTransferResult, *, sample: int = 0) -> go.Figure:
    """Attention-transfer maps of one input: (image,) teacher, student, and student − teacher on the
    teacher's grid."""
    _check_index("sample", sample, result.teacher.shape[0], "attention_transfer_figure")
    panels = [
        ("teacher a(F)", result.teacher[sample], _style.SEQUENTIAL, "coloraxis"),
        ("student a(F)", result.student[sample], _style.SEQUENTIAL, "coloraxis"),
        ("student − teacher", result.student_resized[sample] - result.teacher[sample], _style.DIVERGING, "coloraxis2"),
    ]
    has_img = result.images is not None
    titles = (["input"] if has_img else []) + [p[0] for p in panels]
    fig = make_subplots(
        rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.09
    )  # room for col 2's y title
    col = 1
    if result.images is not None:
        fig.add_trace(_style.image_trace(result.images[sample]), row=1, col=1)
        col = 2
    for k, (name, z, _, axis) in enumerate(panels):
        fig.add_trace(
            go.Heatmap(
                z=z.numpy(),
                coloraxis=axis,
                name=name,
                hovertemplate="row %{y}, column %{x}<br>%{z:.4f}<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=col + k,
        )
    diff = float((result.student_resized[sample] - result.teacher[sample]).abs().max()) or 1.0
    fig.update_layout(
        coloraxis={
            "colorscale": _style.SEQUENTIAL,
            "cmin": 0.0,
            "colorbar": {"title": {"text": "a(F)"}, "x": 1.0, "thickness": 12},
        },
        coloraxis2={
            "colorscale": _style.DIVERGING,
            "cmid": 0.0,
            "cmin": -diff,
            "cmax": diff,
            "colorbar": {"title": {"text": "diff."}, "x": 1.09, "thickness": 12},
        },
    )
    fig.update_yaxes(autorange="reversed")
    for c in range(1, len(titles) + 1):
        unit = "pixels" if has_img and c == 1 else "feature-map cells"
        fig.update_xaxes(title_text=f"width ({unit})", row=1, col=c)
        if c <= 2:
            fig.update_yaxes(title_text=f"height ({unit})", row=1, col=c)
    loss = result.per_sample["loss"].iloc[sample]
    return _style.finish(
        fig, title=f"Attention-transfer maps, input {sample} (p = {result.p:g}; AT loss {loss:.4g})", legend=False
    )


def _check_index(name: str, value: int, n: int, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
        raise ValueError(
            f"The '{name}' parameter of {where} must be an integer in [0, {n - 1}]. Got {value!r} instead."
        )


def figure(result: AttentionResult | AttentionTransferResult, **kwargs: Any) -> go.Figure:
    """The main figure of a result: :func:`maps_figure` for attention, :func:`attention_transfer_figure`
    for attention-transfer maps (keyword arguments pass through)."""
    return _style.figure_by_type(
        result,
        {AttentionTransferResult: attention_transfer_figure, AttentionResult: maps_figure},
        where="analyses.attention.figure",
        expected="an AttentionResult or an AttentionTransferResult",
        **kwargs,
    )
