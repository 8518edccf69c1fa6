"""KD Workbench's Streamlit app: `streamlit run app/main.py` (pages in app/views/)."""
