"""KD Workbench — the Streamlit entry point: `streamlit run app/main.py`.

Sets up the page, the shared sidebar (pair, device, probe size) and the navigation; each page in
app/views/ reads the sidebar's choices, calls cached analyses and renders figures.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ first, not the repository root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import sidebar  # noqa: E402

st.set_page_config(page_title="KD Workbench", page_icon="🧪", layout="wide",
                   menu_items={"About": "KD Workbench: see knowledge distillation work, and find out why it did not."})

VIEWS = Path(__file__).parent / "views"
PAGES = {
    "Start": [
        st.Page(VIEWS / "overview.py", title="Overview", icon="🏠", url_path="overview", default=True),
        st.Page(VIEWS / "workshop.py", title="Workshop path", icon="🎓", url_path="workshop"),
    ],
    "Explore the pair": [
        st.Page(VIEWS / "soft_labels.py", title="Soft labels & temperature", icon="🌡️", url_path="soft-labels"),
        st.Page(VIEWS / "features.py", title="Features (CKA)", icon="🧭", url_path="features"),
        st.Page(VIEWS / "attention.py", title="Attention", icon="👀", url_path="attention"),
        st.Page(VIEWS / "cams.py", title="Class activation maps", icon="🔥", url_path="cams"),
        st.Page(VIEWS / "divergences.py", title="Divergence components", icon="🧩", url_path="divergences"),
        st.Page(VIEWS / "calibration.py", title="Calibration", icon="🎯", url_path="calibration"),
    ],
    "Train & diagnose": [
        st.Page(VIEWS / "distill.py", title="Distill", icon="⚗️", url_path="distill"),
        st.Page(VIEWS / "doctor.py", title="Doctor", icon="🩺", url_path="doctor"),
    ],
}

nav = st.navigation(PAGES)
sidebar.render()
nav.run()
