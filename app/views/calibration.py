"""Calibration: does each model's confidence match its accuracy?"""

import streamlit as st

from analyses import calibration as cal
from analyses import claims
from app import compute, ui

ctx = ui.page(
    "Calibration: are the models as sure as they are right?",
    "A model is calibrated when, among the inputs it answers with 80 % confidence, 80 % are right. The "
    "reliability diagram bins the predictions by confidence and sets each bin's accuracy against its mean "
    "confidence; the diagonal is perfect calibration. ECE sums the gaps, weighted by how full each bin is.",
    "Bars below the diagonal are over-confidence. A distilled student can inherit the teacher's softer "
    "outputs and be better calibrated than the same student trained alone: compare the baseline with the "
    "distilled student (the line under the table says which is better here). NLL and Brier score punish "
    "confident mistakes.",
    [
        r"\mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{n}\,\big|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\big|",
        r"\mathrm{MCE} = \max_m \big|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\big|,\qquad "
        r"\mathrm{Brier} = \frac{1}{n}\sum_{i}\sum_c (p_{ic} - \mathbb{1}[c = y_i])^2",
    ],
    kinds=ui.PROBABILITY_KINDS,
)
if ctx:
    pair, key, device, n = ctx
    n_bins = st.slider("Bins (M)", 5, 30, 15, key="cal_bins", help="Equal-width confidence bins.")
    if pair.dataset.task == "multilabel":
        st.caption("Multi-label data: every (image, label) pair is a yes/no prediction with its sigmoid probability.")
    elif pair.kind == "causal_lm":
        st.caption("Language model: every predicted token position counts as one prediction.")
    with ui.guard("measure calibration"):
        res = compute.calibration(key, device, n, int(n_bins))
        st.dataframe(cal.metrics_table(res), hide_index=True)
        ui.claim(claims.distilled_better_calibrated(res))
        ui.show_figure(
            cal.figure_reliability(res),
            "calibration_reliability",
            caption="Accuracy against confidence per bin; bin counts underneath.",
        )
        ui.show_figure(cal.figure_metrics(res), "calibration_metrics", caption="Lower is better for all four.")
