"""The Distill form's "the student starts from" choice for a sample (registered) pair: its own
architecture re-initialised, or "from teacher (layer subset)" (METHODS §14.2) where its student is a
shallower copy of its teacher; elsewhere the option is disabled with the reason
(kdcore.jobs.student_init.from_teacher_fit: nothing is copied to check). For the sidebar's module:factory
pair (factory_student_init): its student's weights file (not for a pair loaded without one), fresh weights, or
the teacher's blocks where they fit.
"""

from __future__ import annotations

import streamlit as st

from kdcore.jobs.config import LAYER_RULES
from kdcore.jobs.student_init import from_teacher_fit, mapping_text
from kdcore.pairs import Pair

FROM_TEACHER_LABEL = "Start the student from the teacher (layer subset)"
NO_WEIGHTS_NOTE = (
    "Not its own weights (pretrained): the pair was loaded without a student weights file. Name one in the "
    "sidebar's form to start from it."
)


def pair_student_init(pair: Pair) -> tuple[str, str]:
    """(student_init, layer_rule) for a sample pair's run: ("reinit", "spread") unless the box is ticked.
    Where the student does not fit, the disabled option and its reason sit in a closed expander."""
    mapping, reason = from_teacher_fit(pair)  # "spread" fits wherever any rule does
    box = (
        st.container(border=True)
        if mapping is not None
        else st.expander("Student initialisation: from the teacher's blocks is not available for this pair")
    )
    with box:
        on = st.checkbox(
            FROM_TEACHER_LABEL,
            key="job_pair_from_teacher",
            disabled=mapping is None,
            help="The student keeps its architecture; each of its stages starts from some of the teacher's "
            "blocks (spread: the first, the last, and evenly between), every other weight from the teacher's.",
        )
        if mapping is None:
            st.caption(f"Not for this pair: {reason}")
            return "reinit", "spread"
        if not on:
            return "reinit", "spread"
        return "from_teacher", _layer_rule(pair, "job_pair_layer_rule")


def factory_student_init(pair: Pair, has_weights: bool = True) -> tuple[str, str]:
    """(student_init, layer_rule) of the sidebar's module:factory pair: its student's weights file (pretrained;
    not offered, with the reason, when `has_weights` is False), fresh weights (reinit), or, where its student is
    a shallower copy of its teacher, the teacher's blocks."""
    from app.runs import STUDENT_INITS

    with st.container(border=True):
        mapping, reason = from_teacher_fit(pair)
        offered = [
            k
            for k in STUDENT_INITS
            if (k != "from_teacher" or mapping is not None) and (k != "pretrained" or has_weights)
        ]
        init = st.radio(
            "The student starts from",
            offered,
            format_func=STUDENT_INITS.get,
            key="job_factory_student_init",
            horizontal=True,
            help="pretrained: the student's weights file; reinit: its architecture, fresh random weights (seeded); "
            "from_teacher: its architecture, each stage from some of the teacher's blocks (METHODS §14.2).",
        )
        if not has_weights:
            st.caption(NO_WEIGHTS_NOTE)
        if mapping is None:
            st.caption(f"Not from the teacher's blocks: {reason}")
        if init != "from_teacher":
            return init, "spread"
        return "from_teacher", _layer_rule(pair, "job_factory_layer_rule")


def _layer_rule(pair: Pair, key: str) -> str:
    """The teacher blocks kept (a rule of LAYER_RULES), with the mapping it makes or why it does not fit."""
    rule = st.selectbox("Teacher blocks kept", LAYER_RULES, key=key)
    mapping, reason = from_teacher_fit(pair, rule)
    if mapping is None:
        st.warning(reason, icon=":material/warning:")
    else:
        st.caption(f"Student block ← teacher blocks: {mapping_text(mapping)}")
    return rule
