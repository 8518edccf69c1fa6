"""Class activation maps: which pixels each model's decision rests on (Grad-CAM), and whether they agree."""

import streamlit as st

from analyses import cams as cams_an
from app import compute, ui

ctx = ui.page(
    "Class activation maps (Grad-CAM)",
    "Grad-CAM weighs the last convolutional layer's channels by how much the class score depends on them, "
    "and shows the result as a heat map over the image. Teacher and student are explained for the same class. "
    "On the *shapes* data the true shape's pixels are known, so localisation is measured, not just shown.",
    "Does the student look at the same place as the teacher (high correlation, high top-region IoU)? Does its "
    "map's peak fall on the shape (pointing game), and how much of its map lies inside the shape (energy)? "
    "A student that is right for the wrong reason shows up here before it shows up in accuracy.",
    [
        r"\alpha_k^c = \frac{1}{HW}\sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}},\qquad "
        r"L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)",
        r"\text{energy} = \frac{\sum_{(i,j)\in\text{mask}} L_{ij}}{\sum_{i,j} L_{ij}}",
    ],
)
if ctx:
    pair, key, device, n = ctx
    if pair.kind != "classifier" or pair.teacher.cam_layer is None or pair.student.cam_layer is None:
        st.info(
            "Grad-CAM needs image classifiers with a convolutional layer. For language models, the "
            "**Divergence components** page shows per-token heatmaps over the text instead.",
            icon=":material/info:",
        )
    else:
        c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
        explain = c1.radio(
            "Explain",
            ["label", "teacher"],
            horizontal=True,
            key="cam_explain",
            format_func={"label": "the true class", "teacher": "the teacher's prediction"}.get,
        )
        q = c2.slider("Top region (%)", 5, 50, 20, 5, key="cam_q", help="The IoU compares each map's top q % pixels.")
        opacity = c3.slider("Overlay opacity", 0.1, 0.9, 0.5, 0.1, key="cam_opacity")
        with ui.guard("compute Grad-CAM"):
            res = compute.cams(key, device, n, explain, float(q))
            index = c4.number_input("Image #", 0, res.images.shape[0] - 1, 0, key="cam_index")
            ui.show_figure(
                cams_an.overlay_figure(res, index=int(index), opacity=opacity),
                "cam_overlay",
                caption="Teacher (left) and student (right); the outline is the true shape where known.",
            )
            ui.show_figure(
                cams_an.agreement_figure(res),
                "cam_agreement",
                height=420,
                caption="Each dot is an image: map correlation against top-region overlap.",
            )
            if res.masks is not None:
                ui.show_figure(
                    cams_an.localisation_figure(res),
                    "cam_localisation",
                    height=400,
                    caption="How well each model's map finds the true shape.",
                )
            else:
                st.info(
                    "No ground-truth masks for this data: localisation is measured on the *shapes* pairs.",
                    icon=":material/info:",
                )
            st.dataframe(res.per_image, hide_index=True, height=220)
