"""Soft labels and temperature: how T reshapes the teacher's output, and what λ weighs in the KD loss."""

import pandas as pd
import streamlit as st
import torch.nn.functional as F

from analyses import logit_toy
from analyses import multilabel as ml
from app import compute, figures, state, ui
from kdcore.losses import kd_loss

_chosen = state.current_pair(quiet=True)
_task = None if _chosen is None or _chosen.dataset is None else _chosen.dataset.task
_INTROS = {
    "multilabel": (
        "Soft labels of a multi-label model",
        "Each label is its own yes/no question: the model's probability that label c is present is σ(z_c / T), "
        "a sigmoid per label, not a softmax over labels. Several labels can be present at once, so there is no "
        'single true class, no p_y and no mass "spread over the wrong classes". Softening with T pulls every '
        "label's probability towards ½: the teacher's soft labels say how sure it is about each label.",
        "Move T and watch the binary entropy per label rise towards ln 2 and the expected number of labels move "
        "towards half the label count. Compare how sure teacher and student are on the labels present and on "
        "those absent. The logit toy at the bottom shows why KD multiplies its loss by T².",
        [
            r"p_c(T) = \sigma(z_c / T) = \frac{1}{1 + e^{-z_c/T}}",
            r"h(p_c) = -p_c \log p_c - (1 - p_c)\log(1 - p_c) \le \ln 2,\qquad "
            r"\text{expected labels} = \sum_c p_c(T)",
        ],
    ),
    "causal_lm": (
        "Soft labels of a language model",
        "At every position a language model predicts the next token: a softmax over the vocabulary. The "
        "teacher's prediction softened by T is the soft label the student learns from, position by position; "
        "here every predicted position of the probe texts counts as one input, and the classes are tokens.",
        "Token distributions are rarely one-hot: where the language allows several next tokens the teacher's "
        "entropy is high even at T = 1, and where the next token is forced (a copied segment) it is near 0. "
        "Token-level KD usually trains at T = 1; watch how fast raising T flattens the vocabulary. The logit toy "
        "at the bottom shows why classic KD multiplies its loss by T².",
        [
            r"p_v(T) = \frac{\exp(z_v / T)}{\sum_{u \in V} \exp(z_u / T)}",
            r"\mathcal{L} = \frac{1}{|\text{positions}|}\sum_{i} T^2\,\mathrm{KL}\big(p^{t}_i(T) \,\|\, p^{s}_i(T)\big)",
        ],
    ),
}
if _task in _INTROS:
    ui.intro(*_INTROS[_task])
else:
    ui.intro(
        "Soft labels and temperature",
        "The teacher's output softened by a temperature *T*: at T = 1 it is nearly one-hot, and as T grows the "
        "probabilities of the wrong classes — the *dark knowledge* that says which classes look alike — rise. "
        "Classic KD trains the student on a mix of the true label and these soft labels, weighted by λ.",
        "Move T and watch the entropy and the effective number of classes climb while the target probability "
        "falls. Find the T where the wrong classes carry visible mass without flattening everything. The gradient "
        "panel shows why the loss is multiplied by T²: without it the gradient would shrink as 1/T. At very high T, "
        "T²·KL approaches the logit-matching limit.",
        [
            r"p_i(T) = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}",
            r"\mathcal{L}_{KD} = (1-\lambda)\,\mathrm{CE}\big(y, \mathrm{softmax}(z_s)\big) + "
            r"\lambda\, T^2\, \mathrm{KL}\big(p^{t}(T) \,\|\, p^{s}(T)\big)",
            r"H = -\sum_i p_i \log p_i, \qquad \text{effective classes} = e^{H}, \qquad "
            r"\lim_{T\to\infty} T^2\,\mathrm{KL} = \frac{1}{2C}\sum_i (\Delta z_i - \overline{\Delta z})^2",
        ],
    )


def _temperature_slider(where, divides: str) -> float:
    """The page's temperature slider (shared by both views, one session key); `divides` says what T divides."""
    return where.slider(
        "Temperature T",
        0.5,
        20.0,
        4.0,
        0.5,
        key="sl_temperature",
        help=f"{divides} T = 1 is the model's own output.",
    )


def multilabel_view(pair, key, device: str, n: int) -> None:
    """Per-label sigmoid soft labels: one input's labels at T, and the statistics against T."""
    c1, c2 = st.columns([3, 1])
    T = _temperature_slider(c1, "Divides each label's logit before its sigmoid.")
    with ui.guard("sweep the temperature over every label"):
        lg = compute.logits(key, device, n)
        sample = c2.number_input("Input #", 0, lg["teacher"].shape[0] - 1, 0, key="sl_sample")
        sweep = compute.multilabel_sweep(key, device, n)
        at = compute.multilabel_sweep(key, device, n, (float(T),))  # the statistics at exactly the slider's T
        teacher = at[at["role"] == "teacher"].iloc[0]
        m = st.columns(4)
        m[0].metric(
            "Teacher binary entropy",
            f"{teacher['binary_entropy']:.3f} nats",
            help="Mean over inputs and labels; at most ln 2 = 0.693.",
        )
        m[1].metric(
            "Teacher expected labels",
            f"{teacher['expected_labels']:.2f}",
            help=f"Σ_c σ(z_c/T), mean over inputs; the true mean is {teacher['true_labels']:.2f}.",
        )
        m[2].metric("Teacher p on present labels", f"{teacher['p_present']:.3f}")
        m[3].metric("Teacher p on absent labels", f"{teacher['p_absent']:.3f}")
        ui.show_figure(
            ml.figure_labels_at(
                lg["teacher"][sample], lg["student"][sample], lg["targets"][sample], T, class_names=lg["class_names"]
            ),
            "soft_labels_multilabel_at_T",
            caption="Each label's probability on its own (they need not sum to 1); ★ marks the labels present.",
        )
        ui.show_figure(
            figures.mark_x(ml.figure_sweep(sweep), T),
            "soft_labels_multilabel_sweep",
            caption="Mean over the probe inputs and labels; the dashed line is your T.",
        )
        st.dataframe(ui.readable_table(at.drop(columns=["true_labels"])), hide_index=True)


def logit_toy_view() -> None:
    """Hand-typed logits of five classes: p(T), each KL term, and the student's gradient with and without T²."""
    st.subheader("The logit toy: why KD multiplies the KL by T²")
    st.markdown(
        "Type a teacher's and a student's logits for five classes. The gradient that reaches the "
        "student's logits from KL(p_T ‖ q_T) is (q − p)/T: as T grows, q − p shrinks like 1/T too, so "
        "the gradient falls like 1/T². Multiplying the loss by T² gives T·(q − p), whose size stays "
        "about level — so changing T does not silently change the learning rate of the soft-label term."
    )
    st.latex(
        r"\frac{\partial\, \mathrm{KL}(p_T \,\|\, q_T)}{\partial z_s} = \frac{q_T - p_T}{T},\qquad "
        r"\frac{\partial\, T^2\,\mathrm{KL}(p_T \,\|\, q_T)}{\partial z_s} = T\,(q_T - p_T)"
    )
    c1, c2 = st.columns([2, 3])
    table = c1.data_editor(
        pd.DataFrame(
            {
                "class": [f"class {i}" for i in range(5)],
                "teacher logit": logit_toy.DEFAULT_TEACHER,
                "student logit": logit_toy.DEFAULT_STUDENT,
            }
        ),
        hide_index=True,
        disabled=["class"],
        key="toy_logits",
        column_config={
            "teacher logit": st.column_config.NumberColumn(format="%.2f", required=True),
            "student logit": st.column_config.NumberColumn(format="%.2f", required=True),
        },
    )
    T = c2.slider("Toy temperature T", 0.5, 20.0, 4.0, 0.5, key="toy_temperature")
    with ui.guard("compute the logit toy"):
        zt, zs = table["teacher logit"].astype(float).tolist(), table["student logit"].astype(float).tolist()
        res = logit_toy.toy(zt, zs, T, class_names=table["class"].tolist())
        m = c2.columns(3)
        m[0].metric("KL(p_T ‖ q_T)", f"{res.kl:.4f} nats")
        m[1].metric("‖gradient‖ without T²", f"{float((res.per_class['grad'] ** 2).sum() ** 0.5):.4f}")
        m[2].metric("‖gradient‖ with T²", f"{float((res.per_class['grad_t2'] ** 2).sum() ** 0.5):.4f}")
        ui.show_figure(
            logit_toy.figure_toy(res),
            "logit_toy",
            caption="Left: the soft labels. Middle: p·log(p/q) per class (sums to the KL). "
            "Right: what each student logit is pushed by, without and with T².",
        )
        ui.show_figure(
            logit_toy.figure_gradient_norms(logit_toy.gradient_norms(zt, zs), T),
            "logit_toy_norms",
            caption="The same logits at every T: without T² the push fades as 1/T²; with T² it levels off.",
        )


ctx = ui.page_context(kinds=ui.PROBABILITY_KINDS)
if ctx and ctx[0].dataset.task == "multilabel":
    multilabel_view(*ctx)
elif ctx:
    pair, key, device, n = ctx
    c1, c2, c3 = st.columns([2, 2, 1])
    T = _temperature_slider(c1, "Divides the logits before the softmax.")
    lam = c2.slider(
        "λ (weight of the soft labels)",
        0.0,
        1.0,
        0.9,
        0.05,
        key="sl_lambda",
        help="KD's mix: (1 − λ) on the true label, λ on the teacher's soft labels.",
    )
    with ui.guard("sweep the temperature"):
        res = compute.sweep(key, device, n)
        t, s, y = res["teacher"], res["student"], res["labels"]
        sample = c3.number_input(
            "Input #",
            0,
            t.shape[0] - 1,
            0,
            key="sl_sample",
            help="Which probe input (or, for a language model, which token position) to show.",
        )
        kl_term = float(kd_loss(s, t, None, temperature=T))
        ce = float(F.cross_entropy(s, y)) if y is not None else None
        total = (1 - lam) * ce + lam * kl_term if ce is not None else kl_term
        row = (
            res["sweep"]
            .query("role == 'teacher'")
            .iloc[(res["sweep"].query("role == 'teacher'")["temperature"] - T).abs().argmin()]
        )
        m = st.columns(4)
        m[0].metric("Teacher entropy", f"{row['entropy']:.2f} nats")
        m[1].metric("Effective classes", f"{row['effective_classes']:.1f}")
        m[2].metric("Dark knowledge (1 − p_y)", f"{row['dark_knowledge']:.2f}")
        m[3].metric("KD loss at (T, λ)", f"{total:.3f}", help="On the probe inputs, with the current student.")
        left, right = st.columns(2)
        with left:
            ui.show_figure(
                figures.probabilities_at(t[sample], s[sample], T, class_names=res["class_names"]),
                "soft_labels_at_T",
                caption="Teacher and student probabilities of one input at the chosen T.",
            )
        with right:
            ui.show_figure(
                figures.kd_terms(ce, kl_term, lam),
                "soft_labels_kd_terms",
                caption="The hard-label term and the soft-label term, as weighted in the loss."
                + ("" if ce is not None else " (No single true label here: the KL term alone.)"),
            )
        figs = compute.sweep_figures(key, device, n)
        ui.show_figure(
            figures.mark_x(figs["sweep"], T),
            "soft_labels_sweep",
            caption="Mean over the probe inputs; the dashed line is your T.",
        )
        ui.show_figure(
            figures.mark_x(figs["gradient"], T),
            "soft_labels_gradient",
            caption="The student's KD gradient scale, and T²·KL with its limit.",
        )
        with st.expander("Per-class probability curves of three inputs"):
            ui.show_figure(figures.mark_x(figs["classes"], T), "soft_labels_classes")

logit_toy_view()
