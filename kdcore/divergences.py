"""Token-level divergences between a student and a teacher language model (METHODS.md §6).

For logits [..., V] (for example [batch, length, vocabulary]) every divergence gives one value per
position, [...], and ``divergence_loss`` their mean over the positions a mask keeps. p is the
teacher's distribution, q the student's, both ``softmax(z / T)``; the student comes first in
every signature. Token-level values are *not* multiplied by T² (as in TRL, DistiLLM and DSKD).

Kinds (``KINDS``; ``DIVERGENCES`` maps each to its per-position function):

- ``fkl``      KL(p ‖ q), forward, mode-covering (Hinton et al. 2015).
- ``rkl``      KL(q ‖ p), reverse, mode-seeking (MiniLLM, Gu et al., arXiv 2306.08543).
- ``jsd``      β·KL(p ‖ m) + (1 − β)·KL(q ‖ m), m = β·p + (1 − β)·q, 0 < β < 1 (GKD, Agarwal et al.,
               arXiv 2306.13649; TRL ≥ 0.16 and Liger use the same convention; DistiLLM's lam = 1 − β).
- ``tvd``      ½·Σ|p − q|.
- ``skew_fkl`` KL(p ‖ α·p + (1 − α)·q) and ``skew_rkl`` KL(q ‖ α·q + (1 − α)·p), 0 ≤ α < 1
               (DistiLLM, Ko et al., arXiv 2402.03898).
- ``akl``      w·fkl + (1 − w)·rkl with the head/tail weight of Wu et al. 2024 (arXiv 2404.02657).
- ``uld``      Σ|sort↓(p) − sort↓(q)|, the shorter vocabulary padded with zeros (Boizard et al.,
               arXiv 2402.12030): the cross-tokenizer option, vocabularies may differ.

Numerics: arithmetic is float32 (float64 if an input is float64) whatever the input dtype, so bf16
and fp16 logits are fine. A logit of -inf (a masked vocabulary entry) has probability 0 and adds 0,
never NaN, and gets a zero gradient. If one side gives probability 0 to a token the other side
supports, KL-type divergences are infinite in exact arithmetic; here they come out +inf or a
very large finite number (about 1e38 times that probability).

Memory: positions are processed in chunks of rows, so only [chunk, V] probabilities exist at a
time. ``chunk_size=None`` picks 2**24 // V rows (about 64 MiB per float32 intermediate; a handful
of intermediates live at once). With a gradient and more than one chunk, each chunk is
checkpointed, so backward memory is bounded too. Results equal the unchunked computation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from kdcore import _divergence_kernels as _k
from kdcore._divergence_chunks import auto_chunk_rows, per_position
from kdcore.validation import check_float_tensor, check_int_range, check_logit_rows, check_positive, check_range

KINDS = ("fkl", "rkl", "jsd", "tvd", "skew_fkl", "skew_rkl", "akl", "uld")
ALIGNS = (None, "truncate")


@dataclass(frozen=True)
class _Options:
    """The keyword options of ``token_divergence`` (and ``divergence_loss``'s ``**params``), checked in ``_compute``."""

    temperature: float = 1.0  # T > 0; both distributions are softmax(z / T), no T² factor
    beta: float = 0.5  # jsd's mixture weight, 0 < β < 1
    alpha: float = 0.1  # skew_fkl/skew_rkl's skew, 0 ≤ α < 1
    mu: float = 0.5  # akl's head mass, 0 ≤ μ ≤ 1
    chunk_size: int | None = None  # positions per chunk; None: about 64 MiB per intermediate
    align: str | None = None  # None (vocabularies must match, except for uld) or "truncate"


_LOSS_PARAMS = tuple(f.name for f in fields(_Options))


def token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    kind: str,
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
    mu: float = 0.5,
    chunk_size: int | None = None,
    align: str | None = None,
) -> Tensor:
    """Per-position divergence of ``kind`` between student and teacher logits [..., V] -> [...].

    Args:
        student_logits: [..., Vs] float logits of the student (any float dtype; -inf masks an entry).
        teacher_logits: [..., Vt] logits of the teacher, same leading shape.
        kind: one of ``KINDS``.
        temperature: T > 0; both distributions are softmax(z / T). No T² factor is applied.
        beta: jsd's mixture weight, 0 < β < 1 (use fkl/rkl for the end points).
        alpha: skew_fkl/skew_rkl's skew, 0 ≤ α < 1 (α = 0 is the plain KL).
        mu: akl's head mass, 0 ≤ μ ≤ 1.
        chunk_size: positions per chunk (int ≥ 1), or None for about 64 MiB per intermediate.
        align: None (vocabulary sizes must match, except for uld) or "truncate" (keep the token ids
            both vocabularies share, 0..min(Vs, Vt) − 1).

    Returns: float32 (float64 for float64 inputs) tensor of shape [...]. Parameters a kind does not
    use are ignored.
    """
    options = _Options(temperature, beta, alpha, mu, chunk_size, align)
    return _compute(student_logits, teacher_logits, kind, options, keep=None, where=f"token_divergence(kind={kind!r})")


def divergence_loss(
    student_logits: Tensor, teacher_logits: Tensor, kind: str, *, mask: Tensor | None = None, **params: Any
) -> Tensor:
    """Mean of ``token_divergence`` over the positions kept, a scalar.

    Args:
        mask: bool [...] (or 0/1 integers, such as an attention mask), True where a position counts.
        labels: (keyword, optional) integer [...] next-token labels; a position whose label is -100
            never counts. With both ``mask`` and ``labels``, a position counts only if both keep it.
        **params: ``temperature``, ``beta``, ``alpha``, ``mu``, ``chunk_size``, ``align`` as in
            ``token_divergence``.

    Masked positions are never computed, so they may hold anything (even NaN). Positions are pooled:
    the mean is over every kept position of the batch (for uld the authors average per sequence
    first; the two agree when all sequences keep the same number of positions).
    """
    where = f"divergence_loss(kind={kind!r})"
    _check_params(params, ("mask", "labels") + _LOSS_PARAMS, where="divergence_loss")
    labels = params.pop("labels", None)
    check_float_tensor("student_logits", student_logits, where=where)
    lead = tuple(student_logits.shape[:-1])
    keep = _kept_positions(mask, labels, lead, student_logits.device, where=where)  # [...] bool
    values = _compute(student_logits, teacher_logits, kind, _Options(**params), keep=keep, where=where)  # [kept]
    return values.mean()


def _check_params(params: dict[str, Any], known: tuple[str, ...], *, where: str) -> None:
    """Refuse the keyword parameters of a ``**params`` function that are not in ``known``."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{where} got unknown parameter(s) {unknown}. Expected some of {known}.")


def _compute(
    student_logits: Any, teacher_logits: Any, kind: Any, options: _Options, *, keep: Tensor | None, where: str
) -> Tensor:
    """Validate, align, flatten positions and run the chunked kernel. Returns [...] or [kept]."""
    _check_kind(kind, where=where)
    if options.align not in ALIGNS:
        raise ValueError(f"The 'align' parameter of {where} must be None or 'truncate'. Got {options.align!r} instead.")
    temperature = check_positive("temperature", options.temperature, where=where)
    params = _kind_params(kind, options, where=where)
    chunk_size = options.chunk_size
    if chunk_size is not None:
        chunk_size = check_int_range("chunk_size", chunk_size, 1, 2**62, where=where)
    student, teacher = _aligned(student_logits, teacher_logits, kind, options.align, where=where)
    neg_inf = check_logit_rows("student_logits", student, where=where, keep=keep)
    neg_inf = check_logit_rows("teacher_logits", teacher, where=where, keep=keep) or neg_inf

    lead = tuple(student.shape[:-1])
    vs, vt = student.shape[-1], teacher.shape[-1]
    rows = chunk_size if chunk_size is not None else auto_chunk_rows(max(vs, vt))
    values = per_position(
        _k.KERNELS[kind],
        student.reshape(-1, vs),
        teacher.reshape(-1, vt),
        temperature=temperature,
        chunk_rows=rows,
        neg_inf=neg_inf,
        keep=None if keep is None else keep.reshape(-1),
        params=params,
    )
    return values if keep is not None else values.reshape(lead)


def _check_kind(kind: Any, *, where: str) -> None:
    """Refuse a ``kind`` outside ``KINDS``."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of {where} must be one of {KINDS}. Got {kind!r} instead.")


def _kind_params(kind: str, options: _Options, *, where: str) -> dict:
    """The validated parameters ``kind`` uses (β, α or μ of ``options``)."""
    if kind == "jsd":
        return {
            "beta": check_range(
                "beta",
                options.beta,
                0.0,
                1.0,
                where=where,
                lo_open=True,
                hi_open=True,
                hint=(
                    "At beta = 0 or 1 the JSD is identically 0: use kind='fkl' (TRL's beta = 0) or kind='rkl' "
                    "(TRL's beta = 1) instead."
                ),
            )
        }
    if kind in ("skew_fkl", "skew_rkl"):
        return {
            "alpha": check_range(
                "alpha",
                options.alpha,
                0.0,
                1.0,
                where=where,
                hi_open=True,
                hint=("alpha = 0 is the plain KL; at alpha = 1 the skew divergence is identically 0."),
            )
        }
    if kind == "akl":
        return {"mu": check_range("mu", options.mu, 0.0, 1.0, where=where)}
    return {}


def _aligned(student: Any, teacher: Any, kind: str, align: str | None, *, where: str) -> tuple[Tensor, Tensor]:
    """Check types and leading shapes; truncate the vocabularies to the shared ids when asked."""
    check_float_tensor("student_logits", student, where=where)
    check_float_tensor("teacher_logits", teacher, where=where)
    if student.shape[:-1] != teacher.shape[:-1]:
        raise ValueError(
            f"student_logits and teacher_logits of {where} must have the same leading (position) shape. "
            f"Got {tuple(student.shape)} for the student and {tuple(teacher.shape)} for the teacher."
        )
    vs, vt = student.shape[-1], teacher.shape[-1]
    if vs == vt:
        return student, teacher
    if align == "truncate":
        v = min(vs, vt)
        return student[..., :v], teacher[..., :v]
    if kind == "uld":
        return student, teacher
    raise ValueError(
        f"The vocabulary sizes of {where} differ: the student has {vs} entries, the teacher has {vt}. "
        f"If the extra ids are padding of the same tokenizer, pass align='truncate' to compare the "
        f"{min(vs, vt)} shared token ids; for different tokenizers use kind='uld', the "
        f"cross-tokenizer divergence."
    )


def _kept_positions(
    mask: Any, labels: Any, lead: tuple, device: torch.device, *, where: str, of: str = "logits'"
) -> Tensor:
    """Bool [...] (shape ``lead``) of the positions that count: where ``mask`` keeps them (bool or 0/1,
    None: all) and the label is not -100 (None: all). Refuses a mask that keeps none. ``of`` names the
    inputs whose leading shape the labels must have, for the error."""
    keep = torch.ones(lead, dtype=torch.bool, device=device)
    if mask is not None:
        keep = keep & _as_mask(mask, lead, where=where).to(device)
    if labels is not None:
        keep = keep & (_as_labels(labels, lead, where=where, of=of) != -100).to(device)
    if not bool(keep.any()):
        raise ValueError(
            f"The mask of {where} keeps no position (every label is -100 or every mask entry False): "
            f"there is nothing to average. Got {keep.numel()} position(s), none kept."
        )
    return keep


def _as_mask(mask: Any, lead: tuple, *, where: str) -> Tensor:
    """A bool mask [...] of kept positions from a bool or 0/1 integer tensor."""
    if not isinstance(mask, Tensor):
        raise ValueError(
            f"The 'mask' argument of {where} must be a bool torch.Tensor of shape {list(lead)}. "
            f"Got {type(mask).__name__} instead."
        )
    if tuple(mask.shape) != lead:
        raise ValueError(
            f"The 'mask' argument of {where} must have the logits' leading shape {list(lead)} "
            f"(one entry per position). Got shape {tuple(mask.shape)} instead."
        )
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.is_complex() or bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(
            f"The 'mask' argument of {where} must be bool (or integers 0/1, like an attention mask). "
            f"Got dtype {mask.dtype} instead."
        )
    return mask != 0


def _as_labels(labels: Any, lead: tuple, *, where: str, of: str = "logits'") -> Tensor:
    """Integer labels [...]; -100 marks a position that never counts."""
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        got = f"dtype {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"The 'labels' argument of {where} must be an integer torch.Tensor (-100 where a position "
            f"does not count). Got {got} instead."
        )
    if tuple(labels.shape) != lead:
        raise ValueError(
            f"The 'labels' argument of {where} must have the {of} leading shape {list(lead)}. "
            f"Got shape {tuple(labels.shape)} instead."
        )
    return labels


# Per-position functions, one per kind: each is token_divergence with its kind fixed.
_KIND_DOCS = {
    "fkl": "Forward KL(p ‖ q) per position (options as ``token_divergence``).",
    "rkl": "Reverse KL(q ‖ p) per position (MiniLLM, arXiv 2306.08543).",
    "jsd": "Generalised JSD(β) per position (GKD, arXiv 2306.13649); ``beta`` in (0, 1).",
    "tvd": "Total variation ½·Σ|p − q| per position.",
    "skew_fkl": "Skew forward KL(p ‖ α·p + (1 − α)·q) per position (DistiLLM, arXiv 2402.03898).",
    "skew_rkl": "Skew reverse KL(q ‖ α·q + (1 − α)·p) per position (DistiLLM, arXiv 2402.03898).",
    "akl": "Adaptive KL per position (Wu et al. 2024, arXiv 2404.02657); ``mu`` the head mass.",
    "uld": "Universal logit distillation per position (Boizard et al. 2024, arXiv 2402.12030); vocabularies may differ.",
}


def _fixed_kind(kind: str) -> Callable[..., Tensor]:
    """``token_divergence`` with ``kind`` fixed: ``f(student_logits, teacher_logits, **options)``, named ``kind``."""

    def divergence(student_logits: Tensor, teacher_logits: Tensor, **options: Any) -> Tensor:
        return token_divergence(student_logits, teacher_logits, kind, **options)

    divergence.__name__ = divergence.__qualname__ = kind
    divergence.__doc__ = _KIND_DOCS[kind]
    return divergence


DIVERGENCES = {kind: _fixed_kind(kind) for kind in KINDS}
fkl, rkl, jsd, tvd, skew_fkl, skew_rkl, akl, uld = DIVERGENCES.values()
