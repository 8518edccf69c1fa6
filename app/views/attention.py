"""Attention: per-head maps of teacher and student (transformers), or attention-transfer maps (CNNs)."""

import streamlit as st

from analyses import attention as att
from analyses import claims
from app import compute, state, ui

_chosen = state.current_pair(quiet=True)
if _chosen is not None and _chosen.kind == "causal_lm":
    ui.intro(
        "Attention heads of a language model",
        "Each head's attention map over one text: row *i* shows how much the token at position *i* draws from "
        "each earlier position (the maps are lower-triangular: a language model cannot look ahead). Heads are "
        "compared across models by the divergence of their rows, and matched one to one.",
        (
            "In *tinylang*, a copied segment can only be predicted by an *induction head*: a stripe that runs "
            "parallel to the diagonal, one step after the earlier copy of the current token. The teacher's second "
            "layer has one; the one-layer student cannot build it. Does any student head come close (low divergence "
            "in the matching matrix)? "
            if state.marks_position_kinds(_chosen)
            else "Look for heads that attend to the previous token (a stripe beside the diagonal), to the first "
            "token in every row (an attention sink) or broadly, and for induction heads (a stripe one step after "
            "an earlier copy of the current token): does every teacher head find a student head with a low "
            "divergence in the matching matrix? A shallower student often keeps the broad heads and loses the "
            "sharp ones. "
        )
        + "Low entropy means a focused head; ln L a uniform one.",
        [
            r"A = \mathrm{softmax}\!\left(QK^\top / \sqrt{d} + M_{\text{causal}}\right),\qquad "
            r"\mathcal{L}_{attn} = \frac{1}{B H L}\sum_{b,h,i} \mathrm{KL}\big(A^{t}_{b,h,i} \,\|\, A^{s}_{b,h,i}\big)"
        ],
    )
elif _chosen is not None and compute.token_inputs(_chosen):
    ui.intro(
        "Attention heads of an encoder",
        "Each head's attention map over one sentence: row *i* shows how much the token at position *i* draws from "
        "every position, before and after it (an encoder reads the whole sentence; padding is cut off). Heads "
        "are compared across models by the divergence of their rows and matched one to one.",
        "Look for heads that attend to [CLS] or [SEP] (a column lit in every row), to the previous or next "
        "token (a stripe beside the diagonal) or broadly: does every teacher head find a student head with a "
        "low divergence in the matching matrix? A shallower student often keeps the broad heads and loses the "
        "sharp ones. Low entropy means a focused head; ln L a uniform one.",
        [
            r"A = \mathrm{softmax}\!\left(QK^\top / \sqrt{d} + M_{\text{padding}}\right),\qquad "
            r"\mathcal{L}_{attn} = \frac{1}{B H L}\sum_{b,h,i} \mathrm{KL}\big(A^{t}_{b,h,i} \,\|\, A^{s}_{b,h,i}\big)"
        ],
    )
else:
    ui.intro(
        "Attention: where each model looks",
        "For transformers, each head's attention map: row *i* shows how much query position *i* draws from each "
        "earlier position. Heads are compared across models by the KL divergence of their rows and matched one to "
        "one. For convolutional networks, the attention-transfer map of a layer: where its activations are strongest.",
        "In the token language, copied segments need *induction heads*: a stripe one step off the diagonal that jumps "
        "back to the previous copy. Does the student have a head that matches the teacher's (low divergence in the "
        "matching matrix)? Low entropy means a focused head. For CNNs, compare where the maps light up.",
        [
            r"A = \mathrm{softmax}\!\left(QK^\top / \sqrt{d}\right),\qquad "
            r"\mathcal{L}_{attn} = \frac{1}{B H L}\sum_{b,h,i} \mathrm{KL}\big(A^{t}_{b,h,i} \,\|\, A^{s}_{b,h,i}\big)",
            r"a(F) = \frac{\mathrm{vec}\big(\tfrac{1}{C}\sum_c |F_c|^p\big)}{\big\lVert \mathrm{vec}\big(\tfrac{1}{C}\sum_c |F_c|^p\big)\big\rVert_2},"
            r"\qquad \mathcal{L}_{AT} = \mathrm{mean}\big(a(F_s) - a(F_t)\big)^2",
        ],
    )

ctx = ui.page_context()
if ctx:
    pair, key, device, n = ctx
    if compute.token_inputs(pair):  # language models, encoders, sequence classifiers: heads over tokens
        c1, c2, c3 = st.columns(3)
        metric = c1.selectbox(
            "Head divergence",
            ["kl", "js", "mse"],
            key="att_metric",
            help="KL(teacher ‖ student) as MiniLM; Jensen–Shannon is symmetric and bounded.",
        )
        mode = c2.selectbox(
            "Head matching",
            ["one_to_one", "nearest"],
            key="att_mode",
            help="One-to-one: best assignment overall. Nearest: each student head to its closest teacher head.",
        )
        with ui.guard("capture attention"):
            res = compute.attention(key, device, n, metric, mode)
            if pair.kind == "causal_lm":  # an induction head copies forward: a causal LM's pattern
                ui.claim(claims.induction_head(res))  # computed on input #0
            sample = c3.number_input("Input #", 0, res.student[0].shape[0] - 1, 0, key="att_sample")
            layer = st.selectbox(
                "Compared layers (student → teacher)",
                range(len(res.layer_map)),
                key="att_layer",
                format_func=lambda i: f"student layer {res.layer_map[i][0]} ↔ teacher layer {res.layer_map[i][1]}",
            )
            s_l, t_l = res.layer_map[layer]
            ui.show_figure(
                att.maps_figure(res, sample=int(sample), student_layer=s_l, teacher_layer=t_l),
                "attention_maps",
                height=760,
                caption="Rows are query positions, columns the positions they attend to"
                + (", labelled with the decoded tokens" if res.input_tokens is not None else "")
                + ("; padding cut off." if res.real is not None else "."),
            )
            ui.show_figure(
                att.matching_figure(res, pair=layer),
                "attention_matching",
                height=420,
                caption="Divergence of every student head from every teacher head; matched pairs marked.",
            )
            ui.show_figure(
                att.entropy_figure(res),
                "attention_entropy",
                height=420,
                caption="Entropy per head (nats): low is focused, ln L is uniform.",
            )
            st.dataframe(res.matches, hide_index=True)
    else:
        with ui.guard("list the convolutional layers"):
            s_layers, t_layers = compute.conv_layers(key, device)
        if not s_layers or not t_layers:
            st.info(
                "Attention maps need transformer attention or convolutional feature maps; this pair has neither. "
                "Try the **Features** page."
            )
        else:
            c1, c2, c3, c4 = st.columns(4)
            t_layer = c1.selectbox("Teacher layer", t_layers, index=len(t_layers) - 1, key="at_teacher_layer")
            s_layer = c2.selectbox("Student layer", s_layers, index=len(s_layers) - 1, key="at_student_layer")
            p = c3.select_slider(
                "Exponent p",
                [1.0, 2.0, 4.0],
                value=2.0,
                key="at_p",
                help="Higher p stresses the most active positions.",
            )
            with ui.guard("compute attention-transfer maps"):
                res = compute.attention_transfer(key, device, n, s_layer, t_layer, p)
                sample = c4.number_input("Image #", 0, res.teacher.shape[0] - 1, 0, key="at_sample")
                ui.show_figure(
                    att.attention_transfer_figure(res, sample=int(sample)),
                    "attention_transfer",
                    caption="The student's map is resized to the teacher's grid for the difference.",
                )
                st.dataframe(
                    res.per_sample.rename(columns={"loss": "attention-transfer loss"}), hide_index=True, height=220
                )
