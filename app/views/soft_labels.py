"""Soft labels and temperature: how T reshapes the teacher's output, and what λ weighs in the KD loss."""
import streamlit as st
import torch.nn.functional as F

from app import compute, figures, ui
from kdcore.losses import kd_loss

ctx = ui.page(
    "Soft labels and temperature",
    "The teacher's output softened by a temperature *T*: at T = 1 it is nearly one-hot, and as T grows the "
    "probabilities of the wrong classes — the *dark knowledge* that says which classes look alike — rise. "
    "Classic KD trains the student on a mix of the true label and these soft labels, weighted by λ.",
    "Move T and watch the entropy and the effective number of classes climb while the target probability "
    "falls. Find the T where the wrong classes carry visible mass without flattening everything. The gradient "
    "panel shows why the loss is multiplied by T²: without it the gradient would shrink as 1/T. At very high T, "
    "T²·KL approaches the logit-matching limit.",
    [r"p_i(T) = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}",
     r"\mathcal{L}_{KD} = (1-\lambda)\,\mathrm{CE}\big(y, \mathrm{softmax}(z_s)\big) + "
     r"\lambda\, T^2\, \mathrm{KL}\big(p^{t}(T) \,\|\, p^{s}(T)\big)",
     r"H = -\sum_i p_i \log p_i, \qquad \text{effective classes} = e^{H}, \qquad "
     r"\lim_{T\to\infty} T^2\,\mathrm{KL} = \frac{1}{2C}\sum_i (\Delta z_i - \overline{\Delta z})^2"],
)
if ctx:
    pair, key, device, n = ctx
    c1, c2, c3 = st.columns([2, 2, 1])
    T = c1.slider("Temperature T", 0.5, 20.0, 4.0, 0.5, key="sl_temperature",
                  help="Divides the logits before the softmax. T = 1 is the model's own output.")
    lam = c2.slider("λ (weight of the soft labels)", 0.0, 1.0, 0.9, 0.05, key="sl_lambda",
                    help="KD's mix: (1 − λ) on the true label, λ on the teacher's soft labels.")
    with ui.guard("sweep the temperature"):
        res = compute.sweep(key, device, n)
        t, s, y = res["teacher"], res["student"], res["labels"]
        sample = c3.number_input("Input #", 0, t.shape[0] - 1, 0, key="sl_sample",
                                 help="Which probe input (or, for a language model, which token position) to show.")
        kl_term = float(kd_loss(s, t, None, temperature=T))
        ce = float(F.cross_entropy(s, y)) if y is not None else None
        total = (1 - lam) * ce + lam * kl_term if ce is not None else kl_term
        row = res["sweep"].query("role == 'teacher'").iloc[(res["sweep"].query("role == 'teacher'")["temperature"] - T).abs().argmin()]
        m = st.columns(4)
        m[0].metric("Teacher entropy", f"{row['entropy']:.2f} nats")
        m[1].metric("Effective classes", f"{row['effective_classes']:.1f}")
        m[2].metric("Dark knowledge (1 − p_y)", f"{row['dark_knowledge']:.2f}")
        m[3].metric("KD loss at (T, λ)", f"{total:.3f}", help="On the probe inputs, with the current student.")
        left, right = st.columns(2)
        with left:
            ui.show_figure(figures.probabilities_at(t[sample], s[sample], T, class_names=res["class_names"]),
                           "soft_labels_at_T", caption="Teacher and student probabilities of one input at the chosen T.")
        with right:
            ui.show_figure(figures.kd_terms(ce, kl_term, lam), "soft_labels_kd_terms",
                           caption="The hard-label term and the soft-label term, as weighted in the loss."
                           + ("" if ce is not None else " (No single true label here: the KL term alone.)"))
        figs = compute.sweep_figures(key, device, n)
        ui.show_figure(figures.mark_x(figs["sweep"], T), "soft_labels_sweep", caption="Mean over the probe inputs; the dashed line is your T.")
        ui.show_figure(figures.mark_x(figs["gradient"], T), "soft_labels_gradient", caption="The student's KD gradient scale, and T²·KL with its limit.")
        with st.expander("Per-class probability curves of three inputs"):
            ui.show_figure(figures.mark_x(figs["classes"], T), "soft_labels_classes")
