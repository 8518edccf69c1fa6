"""Overview: the pair scorecard (size, speed, accuracy kept) and the risk relation as numbers."""

import streamlit as st

from app import compute, ui


def _lm_section(pair, key: tuple, device: str) -> None:
    """The generation scorecard of an LM pair (methods/15 §15.6), measured on request (it generates and times)."""
    st.subheader("Generation scorecard")
    st.markdown(
        "Exact match of greedy completions on held-out prompts, unique parameters, and end-to-end generation "
        "speed with a KV cache (`python -m kdcore scorecard RUN_ID` prints the same for a run's student)."
    )
    n_prompts = st.number_input("Held-out prompts", 10, 500, 100, step=10, key="lm_scorecard_prompts")
    if not st.button("Measure generation", key="lm_scorecard_go") and not st.session_state.get("lm_scorecard_done"):
        return
    st.session_state["lm_scorecard_done"] = True
    try:
        card = compute.lm_scorecard(key, device, int(n_prompts))
    except ValueError as exc:  # data without reference completions
        st.info(str(exc))
        return
    c = st.columns(3)
    lo, hi = card.pct_ci
    c[0].metric("Exact match kept", f"{card.pct_of_teacher:.1f} %", help=f"95 % paired bootstrap {lo:.1f}–{hi:.1f} %")
    c[1].metric("Fewer parameters", f"{card.param_reduction:.1f} %", help="unique parameters, tied embeddings once")
    c[2].metric("Generates faster", f"{card.speedups['e2e_b1']:.2f}×", help="end-to-end median at batch 1")
    st.markdown("\n".join(card.text().splitlines()[1:]))
    for role, table in card.speed.items():
        st.caption(f"{role}: generation speed per batch size")
        st.dataframe(ui.readable_table(table), hide_index=True)


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
        if pair.dataset.task == "causal_lm":
            _lm_section(pair, key, device)
