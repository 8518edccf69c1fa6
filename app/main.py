"""KD Workbench — the Streamlit entry point: `python -m app` (app/__main__.py: 127.0.0.1 unless --address).

Sets up the page, the shared sidebar (pair, device, probe size) and the navigation; each page in
app/views/ reads the sidebar's choices, calls cached analyses and renders figures.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# `app` is the installed package (`pip install -e .`): `streamlit run app/main.py` puts app/ itself on the path.
from app import guide, sidebar, ui, workshop_server, workspace_gate

st.set_page_config(
    page_title="KD Workbench",
    page_icon=":material/science:",
    layout="wide",
    menu_items={"About": "KD Workbench: see knowledge distillation work, and find out why it did not."},
)

from app import safety  # noqa: E402

safety.show_address_banner()  # a warning when listening beyond this machine; no pages when that was not asked for

VIEWS = Path(__file__).parent / "views"


def _page(view: str, title: str, icon: str, **options) -> st.Page:
    """The page app/views/<view>.py at the URL path <view> (with - for _), under a Material icon."""
    return st.Page(
        VIEWS / f"{view}.py", title=title, icon=f":material/{icon}:", url_path=view.replace("_", "-"), **options
    )


PAGES = {
    "Start": [
        _page("overview", "Overview", "home", default=True),
        _page("workshop", "Workshop path", "school"),
    ],
    "Explore the pair": [
        _page("soft_labels", "Soft labels & temperature", "thermostat"),
        _page("features", "Features (CKA)", "grid_on"),
        _page("attention", "Attention", "visibility"),
        _page("cams", "Class activation maps", "local_fire_department"),
        _page("divergences", "Divergence components", "stacked_bar_chart"),
        _page("calibration", "Calibration", "target"),
    ],
    "Train & diagnose": [
        _page("distill", "Distill", "science"),
        _page("leaderboard", "Leaderboard", "leaderboard"),
        _page("doctor", "Doctor", "medical_services"),
        _page("experiments", "Experiments", "experiment"),
    ],
}

if workshop_server.enabled():  # a shared workshop server: the instructor's page (app/workspace_gate.py)
    instructor = {"Workshop server": [_page("instructor", "Instructor", "groups")]}
    PAGES = {"Start": PAGES["Start"], **instructor, **{k: v for k, v in PAGES.items() if k != "Start"}}  # in view
    workshop_server.export_workers()

nav = st.navigation(PAGES)
with ui.guard("open your workspace"):
    workspace_gate.gate(nav.url_path)  # workshop mode: a session names its workspace before any page shows
with ui.guard("show this page"):
    workspace_gate.badge()
# Last line of defence: whatever a page raises outside its own guards is shown in plain words,
# never as a stack trace (st.rerun/st.switch_page are BaseExceptions and pass through).
with ui.guard("show this page"):
    sidebar.render()
with ui.guard("show this page"):
    guide.banner(nav.url_path)  # the Workshop path's step panel, on the current step's page
with ui.guard("show this page"):
    nav.run()
