"""Doctor (placeholder: the Doctor page is built by the `doctor` helper and replaces this file)."""
import streamlit as st

from app import ui

ui.intro("Doctor: why did a student run fail?",
         "The doctor reads a run and its pair and reports findings, each with its evidence and a suggested fix.",
         "Findings marked as errors first.")
st.info("The doctor is not available in this build yet. Until it is, run `python -m kdcore doctor RUN_ID`.")
