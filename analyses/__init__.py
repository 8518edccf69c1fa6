"""analyses: compute functions returning result objects or DataFrames, and pure plotly figure
builders. Never imports streamlit."""
