"""Which teacher layers a shallower student starts from (METHODS §14.2, layer-subset initialisation).

    spread (default): j_i = rint(i·(L_t − 1)/(L_s − 1)), i = 0..L_s−1 (round half to even); [0] if L_s = 1
    stride:           j_i = i·k + offset, k = L_t/L_s an integer, 0 ≤ offset < k
    first:            j_i = i
    an explicit list: strictly increasing teacher layer indices, one per student layer

"spread" keeps the first and the last layer and reproduces DistilBERT's [0, 2, 4, 7, 9, 11] for
12 → 6. The quotient is evaluated exactly (fractions), never in floating point.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from kdcore.validation import InvalidParameterError, check_int_range

RULES = ("spread", "stride", "first")
_WHERE = "layer_subset_indices"
_MAX_LAYERS = 100_000


def layer_subset_indices(
    n_teacher: int, n_student: int, rule: str | Sequence[int] = "spread", offset: int = 0
) -> list[int]:
    """The teacher layer j_i that student layer i copies, for i = 0..n_student−1 (strictly increasing).

    n_teacher: the teacher's number of layers L_t (>= 1)
    n_student: the student's L_s, 1 <= L_s <= L_t (a student deeper than its teacher is refused)
    rule:      "spread" | "stride" | "first", or an explicit increasing list of L_s teacher indices
    offset:    "stride" only: which layer of each group of k = L_t/L_s, 0 <= offset < k
    """
    n_t = check_int_range("n_teacher", n_teacher, 1, _MAX_LAYERS, where=_WHERE)
    n_s = check_int_range("n_student", n_student, 1, _MAX_LAYERS, where=_WHERE)
    if n_s > n_t:
        raise InvalidParameterError(
            f"The 'n_student' parameter of {_WHERE} must be at most n_teacher={n_t}: a student initialised "
            f"from its teacher's layers (from_teacher) cannot be deeper than the teacher. Got {n_s} instead. "
            f"Choose at most {n_t} layers, or initialise the student otherwise (reinit or pretrained)."
        )
    if not isinstance(rule, str):
        _check_offset_unused(offset, "an explicit list")
        return _explicit(rule, n_t, n_s)
    if rule not in RULES:
        raise InvalidParameterError(
            f"The 'rule' parameter of {_WHERE} must be one of {list(RULES)} or an "
            f"increasing list of teacher layer indices. Got {rule!r} instead."
        )
    if rule == "stride":
        return _stride(n_t, n_s, offset)
    _check_offset_unused(offset, repr(rule))
    if rule == "first":
        return list(range(n_s))
    if n_s == 1:
        return [0]
    return [round(Fraction(i * (n_t - 1), n_s - 1)) for i in range(n_s)]  # round(): half to even


def _stride(n_t: int, n_s: int, offset: Any) -> list[int]:
    if n_t % n_s:
        raise InvalidParameterError(
            f"rule='stride' of {_WHERE} needs n_teacher divisible by n_student. Got "
            f"{n_t} teacher and {n_s} student layers. Use rule='spread' instead."
        )
    k = n_t // n_s
    off = check_int_range("offset", offset, 0, k - 1, where=_WHERE)
    return [i * k + off for i in range(n_s)]


def _check_offset_unused(offset: Any, rule: str) -> None:
    if isinstance(offset, bool) or offset != 0:
        raise InvalidParameterError(
            f"The 'offset' parameter of {_WHERE} applies to rule='stride' only; it must be "
            f"0 for rule {rule}. Got {offset!r} instead."
        )


def _explicit(rule: Sequence[int], n_t: int, n_s: int) -> list[int]:
    items = list(rule) if isinstance(rule, Sequence) else None
    ok = (
        items is not None
        and len(items) == n_s
        and all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < n_t for j in items)
        and all(a < b for a, b in zip(items, items[1:]))
    )
    if not ok:
        raise InvalidParameterError(
            f"An explicit 'rule' of {_WHERE} must be a strictly increasing list of "
            f"{n_s} teacher layer indices in [0, {n_t - 1}]. Got {rule!r} instead."
        )
    return list(items or [])
