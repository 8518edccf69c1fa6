"""KD Workbench — the Streamlit entry point: `python -m app` (app/__main__.py: 127.0.0.1 unless --address).

Sets up the page, the shared sidebar (pair, device, probe size) and the navigation; each page in
app/views/ reads the sidebar's choices, calls cached analyses and renders figures.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# `app` is the installed package (`pip install -e .`): `streamlit run app/main.py` puts app/ itself on the path.
from app import guide, sidebar, ui

st.set_page_config(
    page_title="KD Workbench",
    page_icon=":material/science:",
    layout="wide",
    menu_items={"About": "KD Workbench: see knowledge distillation work, and find out why it did not."},
)

from app import safety  # noqa: E402

safety.show_address_banner()  # a warning when listening beyond this machine; no pages when that was not asked for

VIEWS = Path(__file__).parent / "views"
PAGES = {
    "Start": [
        st.Page(VIEWS / "overview.py", title="Overview", icon=":material/home:", url_path="overview", default=True),
        st.Page(VIEWS / "workshop.py", title="Workshop path", icon=":material/school:", url_path="workshop"),
    ],
    "Explore the pair": [
        st.Page(
            VIEWS / "soft_labels.py",
            title="Soft labels & temperature",
            icon=":material/thermostat:",
            url_path="soft-labels",
        ),
        st.Page(VIEWS / "features.py", title="Features (CKA)", icon=":material/grid_on:", url_path="features"),
        st.Page(VIEWS / "attention.py", title="Attention", icon=":material/visibility:", url_path="attention"),
        st.Page(
            VIEWS / "cams.py", title="Class activation maps", icon=":material/local_fire_department:", url_path="cams"
        ),
        st.Page(
            VIEWS / "divergences.py",
            title="Divergence components",
            icon=":material/stacked_bar_chart:",
            url_path="divergences",
        ),
        st.Page(VIEWS / "calibration.py", title="Calibration", icon=":material/target:", url_path="calibration"),
    ],
    "Train & diagnose": [
        st.Page(VIEWS / "distill.py", title="Distill", icon=":material/science:", url_path="distill"),
        st.Page(VIEWS / "doctor.py", title="Doctor", icon=":material/medical_services:", url_path="doctor"),
    ],
}

nav = st.navigation(PAGES)
# Last line of defence: whatever a page raises outside its own guards is shown in plain words,
# never as a stack trace (st.rerun/st.switch_page are BaseExceptions and pass through).
with ui.guard("show this page"):
    sidebar.render()
with ui.guard("show this page"):
    guide.banner(nav.url_path)  # the Workshop path's step panel, on the current step's page
with ui.guard("show this page"):
    nav.run()
