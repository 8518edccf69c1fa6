"""The workshop server's Instructor page (shown only in workshop mode, opened by the instructor code):
everyone's runs with their workspace, and the class leaderboard, read from the whole run store."""

import streamlit as st

from app import run_table, ui
from app import workshop_server as ws
from kdcore.jobs.class_board import class_leaderboard
from kdcore.jobs.store import RunStore

ui.intro(
    "Instructor",
    "The whole class at a glance: every participant's runs (the workspace column says whose), and the class "
    "leaderboard — for each pair and method, each workspace's best validation accuracy over its completed runs, "
    "ranked (1 = best; ties share a rank). Participants never see this page's lists, only their own runs.",
    "Look for workspaces with nothing completed yet (stuck on setup?), failed runs (their error is on the "
    "participant's Distill page), and methods where the class spreads widely: a good one to discuss.",
)

conf = ws.settings()
if not st.session_state.get(ws.INSTRUCTOR_KEY):
    if conf.instructor_code is None:
        st.warning(
            "No instructor code was set when this server started, so this page stays closed. Restart it with "
            "`python -m app --workshop --instructor-code CODE` (or set KDWB_INSTRUCTOR_CODE).",
            icon=":material/lock:",
        )
        st.stop()
    st.info(
        "This page is for the instructor. Enter the instructor code: it was printed in the terminal where "
        "`python -m app --workshop` started (or set with --instructor-code / KDWB_INSTRUCTOR_CODE).",
        icon=":material/lock:",
    )
    with st.form("instructor_form"):
        code = st.text_input("Instructor code", type="password", key="instructor_code")
        opened = st.form_submit_button("Open the instructor view", type="primary", icon=":material/key:")
    if opened and not ws.code_matches(code, conf.instructor_code):
        st.error("That is not the instructor code set at launch. Check the server's terminal.", icon=":material/error:")
    if not (opened and ws.code_matches(code, conf.instructor_code)):
        st.stop()
    st.session_state[ws.INSTRUCTOR_KEY] = True
    st.rerun()  # without the form

store = RunStore()  # the whole store: every workspace
with ui.guard("read the class's runs"):
    runs = run_table.runs_table(store, with_workspace=True)
    people = sorted({w for w in runs["workspace"] if w})
    cols = st.columns(4)
    cols[0].metric("Participants", len(people), help="Workspaces with at least one run.")
    cols[1].metric("Queued or running", int(runs["state"].isin(["queued", "running"]).sum()))
    cols[2].metric("Completed", int((runs["state"] == "completed").sum()))
    cols[3].metric(
        "Workers",
        conf.workers,
        help=f"Background workers training runs side by side; each participant may have {conf.max_queued} "
        "runs queued or running at once.",
    )
    st.subheader("Class leaderboard")
    st.caption(
        "Per pair and method: each workspace's best validation accuracy over its completed runs, rank 1 best. "
        "`runs` counts the workspace's completed runs of that pair and method; `best run` is the one that scored."
    )
    board = class_leaderboard(store)
    if board.empty:
        st.info("No completed run in any workspace yet: the board fills as runs finish.", icon=":material/info:")
    else:
        st.dataframe(
            board,
            hide_index=True,
            key="class_board",
            column_config={"best val acc": st.column_config.NumberColumn(format="%.3f")},
        )
    st.subheader("Everyone's runs")
    st.caption(
        "Every run on this server, newest first; `workspace` is the participant's name (empty: made "
        "outside the workshop)."
    )
    st.dataframe(runs, hide_index=True, key="class_runs")
    if st.button("Refresh", icon=":material/refresh:", key="instructor_refresh"):
        st.rerun()
