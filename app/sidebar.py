"""The shared sidebar: which pair, on which device, with how many probe inputs.

Widgets are keyed, so every page reads the same choice from `st.session_state` through `choice()`.
Each browser session has its own session_state: one user's choice never changes another's.
"""

from __future__ import annotations

import streamlit as st
import torch

from app import make_student_box, state

SOURCES = ("Sample pair", "Student of a finished run", "Your own models")


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def render() -> None:
    sb = st.sidebar
    sb.markdown("### Teacher → student pair")
    source = sb.radio(
        "Pair source",
        SOURCES,
        key="pair_source",
        label_visibility="collapsed",
        help="A shipped sample pair, the student of a distillation run you finished, or your own models.",
    )
    if source == SOURCES[0]:
        sb.selectbox(
            "Sample pair",
            state.sample_pair_names(),
            key="sample_pair",
            format_func=state.describe_sample_pair,
            help="Small teacher/student pairs trained on data that ships with the workbench.",
        )
    elif source == SOURCES[1]:
        runs = state.finished_runs()
        if not runs:
            sb.info("No finished run yet. Start one on the **Distill** page.")
        else:
            sb.selectbox(
                "Run",
                list(runs),
                key="run_student",
                format_func=lambda r: runs[r],
                help="Analyse the student this run trained, against its teacher.",
            )
    else:
        state.own_models_form(sb)
        make_student_box.render(sb)
    sb.markdown("### Compute")
    sb.selectbox("Device", _devices(), key="device", help="Where the analyses run. CUDA appears when a GPU is present.")
    sb.select_slider(
        "Probe size",
        options=[16, 32, 64, 128, 256, 512],
        value=512,
        key="probe_size",
        help="How many test inputs the analyses use (default 512: all 360 of digits). Larger is steadier, and "
        "slower; below 256 the distilled student and the baseline tie on digits.",
    )
    pair = state.current_pair(quiet=True)
    if pair is not None:
        sb.caption(
            f"**{pair.name}** · {pair.kind} · teacher {pair.teacher.num_parameters():,} params · "
            f"student {pair.student.num_parameters():,} params"
        )
        if state.untrained_student(state.pair_key()):
            sb.caption(state.UNTRAINED_NOTE)
