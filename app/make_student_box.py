"""The sidebar's "make a shallower student" box (METHODS §14.2, layer-subset initialisation).

For the own pair's Hugging Face teacher directory: pick the student's number of layers and the rule,
see which teacher layers are kept (DistilBERT's 12 → 6 by "spread": 0, 2, 4, 7, 9, 11), write the
student to a directory (default: $KDWB_HOME/students/<teacher>-<N>of<L>-<rule>) with
`kdcore.adapters.make_student_from_teacher`, and select it: the form's student directory is set to it
and the pair reloads with it (as "Load pair" does).

For a module:factory pair (loaded with "Load pair") whose student is a shallower copy of its teacher
(the same class, fewer blocks per stage: ResNet stages, layer lists), the box initialises the student
from the teacher's blocks (kdcore.jobs.student_init, on clones: the cached pair is never changed), shows
which teacher block each student block copies, and offers the weights as student.safetensors. The
sample CNNs hold one block per stage, each stage changing the width, so no stage can be dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from kdcore.adapters.hf_files import check_model_dir, read_config
from kdcore.adapters.layer_subset import layer_subset_indices
from kdcore.jobs.config import LAYER_RULES
from kdcore.jobs.own_source import OwnPairSource
from kdcore.jobs.store import default_home

_ERROR = "make_student_error"  # session_state keys of the box's last outcome
_DONE = "make_student_done"
_NOT_SUBSETTABLE = (
    "Layer-subset students are made from a Hugging Face teacher directory (its config.json names "
    "num_hidden_layers). Choose Format 'Hugging Face directories'."
)
_MODULE_DONE = "make_student_module_done"  # session_state: (spec, rule, mapping rows, safetensors bytes)
_MODULE_HOW = (
    "Your student is the teacher's architecture with fewer blocks per stage. This copies into each student "
    "block one of the teacher's blocks of the same stage (*spread* keeps the first, which holds the stage's "
    "stride, the last, and others evenly between), and every other weight (stem, head, normalisation "
    "statistics) as it is. Distillation then starts from the teacher's knowledge instead of random weights."
)


@dataclass(frozen=True)
class LayerPlan:
    """Which teacher layers a student of `n_student` layers copies (`indices[i]` into student layer i)."""

    teacher_dir: Path
    n_teacher: int
    n_student: int
    rule: str
    indices: list[int]


def layer_plan(teacher_dir: str, n_student: int, rule: str = "spread") -> LayerPlan:
    """The plan for a shallower student of the teacher in `teacher_dir`, read from its config.json only;
    ValueError (with the fix) for a directory that is not a Hugging Face model, a model whose config has no
    layer count, or a student not shallower than the teacher."""
    if not (teacher_dir or "").strip():
        raise ValueError("Name the teacher directory in the form above first (and press Load pair).")
    src = check_model_dir(Path(teacher_dir.strip()).expanduser(), name="teacher directory", where="the sidebar")
    n_t = read_config(src).get("num_hidden_layers")
    if not isinstance(n_t, int) or isinstance(n_t, bool) or n_t < 1:
        raise ValueError(
            f"The teacher in {str(src)!r} cannot be subset by layers: its config.json has no num_hidden_layers "
            f"(got {n_t!r}). {_NOT_SUBSETTABLE}"
        )
    if n_t < 2:
        raise ValueError(f"The teacher in {str(src)!r} has a single layer: there is no shallower student to make.")
    if not isinstance(n_student, int) or isinstance(n_student, bool) or not 1 <= n_student < n_t:
        raise ValueError(
            f"The student must have fewer layers than the teacher's {n_t} (a shallower copy). Got {n_student!r}: "
            f"choose 1 to {n_t - 1}."
        )
    return LayerPlan(src, n_t, n_student, rule, layer_subset_indices(n_t, n_student, rule))


def default_out_dir(plan: LayerPlan) -> Path:
    """Where the student goes unless the user names a directory: under the workbench's data directory."""
    name = f"{plan.teacher_dir.name}-{plan.n_student}of{plan.n_teacher}-{plan.rule}"
    return default_home() / "students" / name


def check_out_dir(text: str, plan: LayerPlan) -> Path:
    """The output directory (empty text: `default_out_dir`), refused unless it is new or empty and can be
    written (checked before any weights are read)."""
    out = Path(text.strip()).expanduser() if (text or "").strip() else default_out_dir(plan)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is not empty" if out.is_dir() else "is a file"
        raise ValueError(f"The student directory {str(out)!r} {what}. Name a new or empty directory.")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"The student directory {str(out)!r} cannot be written: {str(existing)!r} is "
            f"{'not a directory' if not existing.is_dir() else 'not writable'}. Name a directory you can write to "
            f"(or leave the field empty for {str(default_out_dir(plan))!r})."
        )
    return out


def make_student(plan: LayerPlan, out_text: str) -> Path:
    """Write the student of `plan`; its directory. ValueError for an unwritable or non-empty directory."""
    from kdcore.adapters.make_student import make_student_from_teacher

    out = check_out_dir(out_text, plan)
    try:
        made = make_student_from_teacher(plan.teacher_dir, plan.n_student, out, rule=plan.rule)
    except OSError as exc:  # a disk that fills up or a directory that turns read-only meanwhile
        raise ValueError(f"Could not write the student to {str(out)!r}: {exc.strerror or exc}.") from exc
    return made.path


def _select(student_dir: Path) -> None:
    """The made student becomes the form's student directory, and the pair reloads with it."""
    from app import state

    ss = st.session_state
    ss["own_student_dir"] = str(student_dir)
    try:
        ss["own_spec"] = state._own_spec(
            ss.get("own_mode", "Hugging Face directories"),
            ss.get("own_kind", "classifier"),
            ss.get("own_teacher_dir", ""),
            str(student_dir),
            None,
            None,
            ss.get("own_data_choice", state.DATA_CHOICES[0]),
            ss.get("own_dataset", "digits"),
            ss.get("own_data_file"),
            ss.get("own_data_option", "label"),
            data_path=ss.get("own_data_path", ""),
            context_length=int(ss.get("own_context_length", state.CONTEXT_DEFAULT)),
            text_field=ss.get("own_text_field", state.TEXT_FIELD_DEFAULT),
        )
        ss.pop("own_error", None)
    except ValueError as exc:  # e.g. no data named yet: the form says so, as after "Load pair"
        ss["own_error"] = str(exc)


def _on_make(plan: LayerPlan) -> None:
    """The button's callback (it runs before the sidebar is drawn, so it may set the form's fields)."""
    ss = st.session_state
    ss.pop(_ERROR, None)
    ss.pop(_DONE, None)
    try:
        path = make_student(plan, ss.get("make_student_out", ""))
    except ValueError as exc:
        ss[_ERROR] = str(exc)
        return
    ss[_DONE] = f"Student written to {str(path)!r} (teacher layers {plan.indices}) and selected as the student."
    _select(path)


def render(sb) -> None:
    """The box, under the own-models form in the sidebar `sb`."""
    with sb.expander("Make a shallower student from the teacher", expanded=False):
        if not str(st.session_state.get("own_mode", "Hugging")).startswith("Hugging"):
            _module_box()
            return
        teacher = st.session_state.get("own_teacher_dir", "")
        try:
            depth = layer_plan(teacher, 1).n_teacher  # the directory and its depth, before any widget
        except ValueError as exc:
            st.warning(str(exc), icon=":material/warning:")
            return
        c1, c2 = st.columns(2)
        n = c1.number_input(
            "Student layers", 1, 100_000, max(1, depth // 2), key="make_student_layers", help=f"Fewer than {depth}."
        )
        rule = c2.selectbox(
            "Layers kept",
            LAYER_RULES,
            key="make_student_rule",
            help="spread: the first and last, the others evenly between (DistilBERT's 12 → 6: 0, 2, 4, 7, 9, 11); "
            "stride: every k-th; first: the first N.",
        )
        try:
            plan = layer_plan(teacher, int(n), rule)
        except ValueError as exc:
            st.warning(str(exc), icon=":material/warning:")
            return
        st.caption(f"Teacher {plan.n_teacher} layers → student {plan.n_student}: keeps teacher layers {plan.indices}.")
        st.text_input(
            "Write it to",
            key="make_student_out",
            placeholder=str(default_out_dir(plan)),
            help="A new or empty directory. Empty: under the workbench's data directory ($KDWB_HOME/students).",
        )
        st.button("Make the student and select it", key="make_student_go", on_click=_on_make, args=(plan,))
        if st.session_state.get(_ERROR):
            st.error(st.session_state[_ERROR], icon=":material/error:")
        elif st.session_state.get(_DONE):
            st.success(st.session_state[_DONE], icon=":material/check_circle:")


def _module_box() -> None:
    """The module:factory case: the loaded pair's student initialised from its teacher's blocks."""
    from app import state
    from kdcore.jobs.student_init import from_teacher_fit

    spec = st.session_state.get("own_spec")
    if not isinstance(spec, OwnPairSource) or spec.mode != "factory":
        st.info(
            "Load your module:factory pair with the form above first (Load pair): a student that is the "
            "teacher's architecture with fewer blocks per stage can start from the teacher's blocks.",
            icon=":material/info:",
        )
        return
    pair = state.pair_from_key(("own", spec))  # cached and shared: only cloned below
    st.caption(_MODULE_HOW)
    rule = st.selectbox("Teacher blocks kept", LAYER_RULES, key="make_student_module_rule")
    mapping, reason = from_teacher_fit(pair, rule)
    if mapping is None:
        st.warning(reason, icon=":material/warning:")
        return
    st.button(
        "Initialise the student from the teacher",
        key="make_student_module_go",
        on_click=_on_module,
        args=(pair, spec, rule),
    )
    done = st.session_state.get(_MODULE_DONE)
    if done and done[:2] == (spec, rule):
        st.dataframe(done[2], hide_index=True)
        st.download_button(
            "Download student.safetensors",
            done[3],
            file_name="student.safetensors",
            key="make_student_module_file",
            help="Load it as the student's weights (the student factory stays the same).",
        )


def _on_module(pair, spec: tuple, rule: str) -> None:
    """The button's callback: build the initialised student (a clone) and keep its table and file."""
    from kdcore.adapters.module_student import adapter_from_teacher
    from kdcore.jobs.student_init import mapping_rows, student_file_bytes

    student, mapping = adapter_from_teacher(pair.teacher, pair.student, rule)
    st.session_state[_MODULE_DONE] = (
        spec,
        rule,
        mapping_rows(mapping),
        student_file_bytes(student, pair.name, mapping),
    )
