"""Overview: the pair scorecard (size, speed, accuracy kept) and the risk relation as numbers."""

import streamlit as st

from app import compute, ui

ui.intro(
    "Overview: the pair at a glance",
    "What distillation bought: the student's size and speed against the teacher's, the accuracy of the "
    "teacher, of the student trained alone (the *baseline*) and of the distilled student, and how often "
    "the student disagrees with its teacher.",
    "Distillation paid if the distilled student beats the baseline at the same size. Then read the bound: "
    "the student's error can never exceed the teacher's error plus their disagreement. A large disagreement "
    "with a good teacher means the student has not yet matched it.",
    [
        r"\mathrm{err}(\text{student}) \;\le\; \mathrm{err}(\text{teacher}) + P(\text{student} \ne \text{teacher})",
        r"\text{retained} = \mathrm{acc}_{\text{student}} / \mathrm{acc}_{\text{teacher}}",
    ],
)

st.page_link(
    "views/workshop.py",
    label="New here? Follow the workshop path: ten steps through the pages",
    icon=":material/school:",
)
ctx = ui.page_context(kinds=ui.PROBABILITY_KINDS)
if ctx:
    pair, key, device, n = ctx
    st.caption(f"**{pair.name}** · {pair.dataset.description} · first {n} test inputs.")
    with ui.guard("score the pair"):
        card = compute.scorecard(key, device, n)
        if pair.dataset.task == "multilabel":
            from analyses import multilabel as ml

            st.markdown(
                "Multi-label pair: each label is a yes/no prediction (logit > 0). Micro F1 pools every "
                "(input, label) decision; macro F1 averages the labels' own F1, so rare labels count as much "
                "as common ones."
            )
            summary, per_label = compute.multilabel_scores(key, device, n)
            by_model = summary.set_index("model")
            c = st.columns(len(by_model))
            for col, (name, r) in zip(c, by_model.iterrows()):
                col.metric(f"{name}: micro F1", f"{r['micro F1']:.3f}", help=f"macro F1 {r['macro F1']:.3f}")
            st.dataframe(ui.readable_table(card), hide_index=True)
            st.dataframe(ui.readable_table(summary), hide_index=True)
            ui.show_figure(
                ml.figure_scores(summary, per_label),
                "overview_multilabel_scores",
                height=420,
                caption="Overall scores (left) and each label's F1 (right), per model.",
            )
        else:
            from analyses import scorecard as sc

            c = st.columns(4)
            c[0].metric("Compression", f"{card.param_ratio:.1f}×", help="teacher parameters / student parameters")
            c[1].metric(
                "Speed-up",
                f"{card.speedup:.1f}×" if card.speedup else "n/a",
                help="teacher latency / student latency on the probe batch",
            )
            c[2].metric("Accuracy retained", f"{100 * card.retained:.0f} %", help="student accuracy / teacher accuracy")
            c[3].metric(
                "Disagreement",
                f"{100 * card.disagreement:.1f} %",
                help="share of inputs where student and teacher predict different classes",
            )
            table = sc.scorecard_table(card)
            st.dataframe(ui.readable_table(table), hide_index=True)
            ui.show_figure(
                sc.figure_scorecard(card),
                "overview_scorecard",
                height=440,
                caption="Size, latency and accuracy of each model.",
            )
            ui.show_figure(
                sc.figure_risk(card.risk),
                "overview_risk",
                height=420,
                caption="The student's error beside its bound (teacher error + disagreement).",
            )
