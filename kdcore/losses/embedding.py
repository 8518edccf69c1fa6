"""Embedding distillation: the student's pooled sentence embedding matched to the teacher's.

With e_s [B, D_s], e_t [B, D_t] and g a learned linear map D_s -> D_t (the identity when the widths
agree; `make_projector`):

- loss="cosine": (1/B)·Σ_b (1 − cos(g(e_s)_b, e_t,b)), ‖a‖·‖b‖ floored at 1e-8 (a zero vector has
  cosine 0); DistilBERT's cosine embedding loss on hidden states (Sanh et al. 2019, arXiv 1910.01108);
- loss="mse":    (1/(B·D_t))·Σ_b ‖g(e_s)_b − e_t,b‖², the mean squared error of the embeddings
  (Reimers & Gurevych 2020, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
  Distillation", arXiv 2004.09813, eq. 1: MSE of student and teacher sentence embeddings).

Computed in float32 or wider whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from kdcore.losses._kl import _upcast
from kdcore.validation import InvalidParameterError, check_finite_tensor, check_same_batch

EMBED_LOSSES = ("cosine", "mse")
_COS_EPS = 1e-8


def embedding_distill_loss(
    student_embeddings: Tensor,
    teacher_embeddings: Tensor,
    *,
    loss: str = "cosine",
    projector: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Cosine (1 − cos, batch mean) or MSE (mean over batch and dimensions) between g(e_s) [B, D_t] and
    e_t [B, D_t]; g is ``projector`` (``make_projector(e_s.shape, e_t.shape)``) or the identity."""
    where = "embedding_distill_loss"
    if loss not in EMBED_LOSSES:
        raise InvalidParameterError(
            f"The 'loss' parameter of {where} must be one of {list(EMBED_LOSSES)}. Got {loss!r} instead."
        )
    es = check_finite_tensor("student_embeddings", student_embeddings, where=where, dims=2)  # [B, D_s]
    et = check_finite_tensor("teacher_embeddings", teacher_embeddings, where=where, dims=2)  # [B, D_t]
    check_same_batch(es, et, where=where, student_name="student_embeddings", teacher_name="teacher_embeddings")
    if projector is not None:
        es = _project(projector, es, where)
    if es.shape != et.shape:
        raise InvalidParameterError(
            f"student_embeddings{' after the projector' if projector is not None else ''} and teacher_embeddings "
            f"of {where} must have the same width. Got {tuple(es.shape)} and {tuple(et.shape)}. Pass "
            f"projector=make_projector(student.shape, teacher.shape) and train it with the student."
        )
    a, b = _upcast(es, et)
    if loss == "mse":
        return (a - b).pow(2).mean()
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(_COS_EPS)  # [B]
    return (1.0 - cos).mean()


def _project(projector: Any, es: Tensor, where: str) -> Tensor:
    if not callable(projector):
        raise InvalidParameterError(
            f"The 'projector' argument of {where} must be a module or function (e.g. from make_projector) "
            f"or None. Got {type(projector).__name__} instead."
        )
    return projector(es)
