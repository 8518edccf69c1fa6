"""kdcore: the workbench's backend — losses, divergences, model adapters, data, jobs, run store.

Imports neither streamlit nor plotly, so it runs in notebooks, scripts and on GPU machines that
have neither.
"""

__version__ = "0.1.0"
