"""The workshop server's participant gate and sidebar badge (app/workshop_server.py has its settings).

In workshop mode a browser session names its workspace once, before any page shows; the name is
kept in its session_state (another browser tab or a reload asks again: the same name opens the same
workspace). The Instructor page needs no workspace: it asks for the instructor code instead.
"""

from __future__ import annotations

import streamlit as st

from app import workshop_server as ws
from kdcore.jobs.workspace import NAME_MAX, WorkspaceError, check_name

INSTRUCTOR_PATH = "instructor"


def _enter() -> None:
    try:
        st.session_state[ws.PARTICIPANT_KEY] = check_name(st.session_state.get("workspace_name", ""))
        st.session_state.pop("workspace_error", None)
    except WorkspaceError as exc:
        st.session_state["workspace_error"] = str(exc)


def gate(url_path: str) -> None:
    """On a workshop server, stop the page until this session has named its workspace."""
    if not ws.enabled() or st.session_state.get(ws.PARTICIPANT_KEY) or url_path == INSTRUCTOR_PATH:
        return
    limit = ws.settings().max_queued
    st.title("Welcome to the workshop")
    st.markdown(
        "This KD Workbench is shared by the whole class. Your runs live in a **workspace** of your own: every "
        "list here (runs, protocols, leaderboards, experiments) shows only your workspace's runs, and nobody "
        f"else sees them. You may have up to **{limit}** runs queued or running at once. The instructor sees "
        "everyone's runs and a class leaderboard."
    )
    with st.form("workspace_form"):
        st.text_input(
            "Your workspace name",
            key="workspace_name",
            max_chars=NAME_MAX,
            placeholder="e.g. ada or team_2",
            help=f"1 to {NAME_MAX} letters, digits, - or _. Use the same name after a reload to get your runs back.",
        )
        st.form_submit_button("Enter the workshop", type="primary", icon=":material/login:", on_click=_enter)
    if err := st.session_state.get("workspace_error"):
        st.error(err, icon=":material/error:")
    st.stop()


def badge() -> None:
    """The sidebar's line naming this session's workspace and how full its queue is."""
    name = st.session_state.get(ws.PARTICIPANT_KEY)
    if not ws.enabled() or not name:
        return
    from app import state

    active, limit = state.store().active_runs(), ws.settings().max_queued
    st.sidebar.markdown(f"### Workspace: {name}")
    st.sidebar.caption(
        f"Workshop server · {active} of {limit} runs queued or running · you see only this workspace's runs."
    )
