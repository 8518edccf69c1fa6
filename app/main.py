"""KD Workbench — Streamlit entry point: `streamlit run app/main.py`."""
import streamlit as st

st.set_page_config(page_title="KD Workbench", page_icon="🧪", layout="wide")
st.title("KD Workbench")
st.write("An interactive workbench for knowledge distillation. The views arrive page by page.")
