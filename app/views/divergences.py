"""Divergence components: KL split into CAKD's BCD/SCD/WCD and DKD's TCKD/NCKD; per-token divergences for LMs."""

import streamlit as st

from analyses import claims
from analyses import components as comp
from analyses import tokens as tokens_an
from app import compute, sample_view, state, ui

_chosen = state.current_pair(quiet=True)
if _chosen is not None and _chosen.kind == "causal_lm":
    ui.intro(
        "Token by token: where the student departs from its teacher",
        "A language model predicts a distribution over the vocabulary at every position. Here teacher (p) and "
        "student (q) are compared position by position with every token-level divergence the workbench trains "
        "with: each weighs the mismatch differently. Forward KL punishes the student for missing tokens the "
        "teacher thinks likely (mode-covering); reverse KL for putting mass where the teacher puts none "
        "(mode-seeking); JSD, TVD and the skewed KLs sit in between; AKL mixes forward and reverse per position; "
        "ULD compares sorted probabilities, so it works across tokenizers.",
        (
            "In *tinylang*, copied segments can only be predicted by looking back at the earlier run (an induction "
            "head); local positions follow from the current token alone. Compare the divergences on copy positions "
            "with those on local positions, and the models' accuracy on each: the split shows which skill the "
            "student has not taken from its teacher. "
            if state.marks_position_kinds(_chosen)
            else "Find the tokens where every divergence is high at once (the student misses what the teacher is "
            "sure of) and those where only reverse KL is high (the student is sure where the teacher hesitates). "
            "Rare words, numbers and the first tokens of a text usually carry most of the mismatch; padding never "
            "counts. "
        )
        + "The line above the token chart says whether forward and reverse KL agree on where the student departs.",
        list(tokens_an.FORMULAS.values()),
    )
else:
    ui.intro(
        "Divergence components: which part of the mismatch matters",
        "The KL divergence between teacher and student is a sum of parts. DKD splits it into the target class "
        "(TCKD: do they agree how sure to be?) and the non-target classes (NCKD: do they rank the wrong classes "
        "alike?). CAKD splits the classes into a *strong* set S (correlated with the answer) and a weak set W.",
        "Which component carries the KL? If NCKD dominates, the student has the answer but not the dark knowledge: "
        "DKD's β weighs it up. Per class, look for classes whose weak-set part (WCD) is large.",
        [
            r"\mathrm{KL}(p\,\|\,q) = \mathrm{TCKD} + (1 - p^{t}_{y})\,\mathrm{NCKD}",
            r"\mathrm{KL}(p\,\|\,q) = \mathrm{BCD} + p^{t}_{S}\,\mathrm{SCD} + p^{t}_{W}\,\mathrm{WCD}",
            r"\mathrm{BCD} = \mathrm{KL}\big((p_S, p_W)^{t} \,\|\, (p_S, p_W)^{s}\big),\quad "
            r"\mathrm{SCD} = \mathrm{KL}(\hat p^{t}_S \,\|\, \hat p^{s}_S),\quad \mathrm{WCD} = \mathrm{KL}(\hat p^{t}_W \,\|\, \hat p^{s}_W)",
        ],
    )

ctx = ui.page_context(kinds=ui.PROBABILITY_KINDS)
if ctx:
    pair, key, device, n = ctx
    if pair.kind == "causal_lm":
        c1, c2 = st.columns(2)
        T = c1.slider("Temperature T", 0.5, 8.0, 1.0, 0.5, key="tok_temperature")
        index = c2.number_input("Text #", 0, n - 1, 0, key="tok_index", help="Which probe sequence to show.")
        with ui.guard("compare the models token by token"):
            res = compute.token_components(key, device, n, int(index), float(T))
            cols = st.columns(min(len(res.means), 4))
            for i, (kind, value) in enumerate(list(res.means.items())[:4]):
                cols[i].metric(f"mean {kind}", f"{value:.4f}")
            ui.claim(claims.kl_directions_disagree(res.per_position))
            kinds = compute.position_kinds(key, device, n)
            ui.show_figure(
                comp.token_figure(res, position_kind=None if kinds is None else kinds[int(index)]),
                "divergence_tokens",
                caption="Each row a divergence, each column a token of the text; hover for values."
                + (
                    " Token labels: red = copied (induction) positions, blue = local ones." if kinds is not None else ""
                ),
            )
            st.dataframe(res.per_position, hide_index=True, height=240)
        with ui.guard("split the mismatch by position kind"):
            split = compute.token_split(key, device, n, float(T))
            if split is not None:
                st.subheader("Copy positions against local positions")
                ui.show_figure(
                    tokens_an.figure_split(split),
                    "divergence_copy_local",
                    caption=f"Over all {n} probe texts. Copy positions need an induction head; "
                    "local ones only the current token.",
                )
                st.dataframe(split, hide_index=True)
        sample_view.render(key, device)
    else:
        c1, c2, c3 = st.columns(3)
        T = c1.slider("Temperature T", 0.5, 10.0, 4.0, 0.5, key="div_temperature")
        k = c2.slider(
            "Top-k strong set (k)",
            1,
            max(1, min(5, pair.output_size - 1)),
            min(2, pair.output_size - 1),
            key="div_k",
            help="Rule 'topk': the k classes the teacher ranks highest.",
        )
        tau = c3.slider(
            "Mass strong set (τ)",
            0.5,
            0.99,
            0.9,
            0.01,
            key="div_tau",
            help="Rule 'mass': the fewest top classes holding τ of the teacher's probability.",
        )
        with ui.guard("split the divergence"):
            res = compute.components(key, device, n, float(T), int(k), float(tau))
            ui.show_figure(
                comp.rules_figure(res),
                "divergence_rules",
                caption="Share of the KL in each CAKD component, for each way of choosing the strong set.",
            )
            rule = st.selectbox("Strong-set rule", list(res.rules), key="div_rule")
            ui.show_figure(
                comp.class_figure(res, rule=rule),
                "divergence_classes",
                caption="Per class: components stacked to the mean KL (left), and their shares (right). With more "
                'than 20 classes, the 20 holding the most KL are drawn and "the rest" pools every other class '
                "exactly (means weighted by sample count, shares as ratios of sums).",
            )
            ui.claim(claims.nckd_carries_kl(res.dkd))
            if res.dkd is not None:
                ui.show_figure(
                    comp.dkd_figure(res),
                    "divergence_dkd",
                    caption="DKD: the target part and the weighted non-target part, per class (beyond 20 classes, "
                    'the top 20 by total KL and "the rest").',
                )
            with st.expander("The samples with the largest KL"):
                ui.show_figure(comp.sample_figure(res, rule=rule, top=32), "divergence_samples")
