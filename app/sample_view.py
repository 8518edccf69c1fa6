"""The Divergence page's generated samples (causal LMs): teacher and student continue one prompt, and
each generated token is coloured by the divergence between the two models at the position that
predicted it (kdcore.sample_divergence; figure: analyses.generated_samples)."""

from __future__ import annotations

import streamlit as st

from analyses import generated_samples as gs
from app import compute, ui

EXPLAIN = (
    "Each model continues the prompt on its own (greedy unless you sample; sampling is seeded). Both models "
    "then read each continuation token by token (teacher-forced, the same ids for both), and every generated "
    "token is coloured by the divergence between their next-token distributions at the position that "
    "predicted it. On the **student's own continuation** this is what on-policy distillation (GKD, MiniLLM, "
    "DistiLLM) trains on: the places where the student's text drifts from what the teacher would say. "
    "Forward KL(p_T ‖ q_S) is large where the teacher expects tokens the student misses; reverse "
    "KL(q_S ‖ p_T) where the student puts mass the teacher does not. Both are in nats (natural log), at "
    "temperature T; 0 means the two models agree exactly there."
)


def _prompt(key: tuple, device: str) -> tuple[list[int], int | None, int] | None:
    """(prompt ids, stop id, pad id) from the user's choice: a held-out prompt record or typed text."""
    listed = compute.sample_prompts(key, device)
    sources = (["held-out prompt"] if listed else []) + ["type a prompt"]
    source = st.radio("Prompt", sources, horizontal=True, key="gen_prompt_source")
    if source == "held-out prompt" and listed:
        prompts, eos, pad = listed
        shown = [" ".join(compute.token_text(key, device, i) for i in p) for p in prompts]
        i = st.selectbox("Held-out prompt", range(len(prompts)), format_func=lambda j: shown[j], key="gen_prompt")
        return prompts[int(i)], eos, pad
    text = st.text_input("Prompt text (the pair's tokenizer)", "Once upon a time", key="gen_prompt_text")
    ids = compute.encode_prompt(key, device, text)
    if not ids:
        st.info("Type a prompt: it has no token yet.")
        return None
    eos, pad = compute.stop_ids(key, device)
    return ids, eos, pad


def _settings() -> tuple:
    c1, c2, c3 = st.columns(3)
    divergence = c1.selectbox(
        "Divergence", ["fkl", "rkl"], format_func=gs.LABELS.get, key="gen_divergence", help="Forward or reverse KL."
    )
    T = c2.slider("Temperature T (of the scored distributions)", 0.5, 4.0, 1.0, 0.5, key="gen_T")
    new = c3.number_input("max_new_tokens", 1, 128, 24, key="gen_new")
    with st.expander("Sampling (§15: greedy by default)"):
        s1, s2, s3, s4, s5 = st.columns(5)
        sample = s1.checkbox("do_sample", False, key="gen_sample")
        tau = s2.number_input("τ_s", 0.05, 5.0, 1.0, 0.05, key="gen_tau", disabled=not sample)
        top_k = s3.number_input("top_k (0 = off)", 0, 1000, 0, key="gen_topk", disabled=not sample)
        top_p = s4.number_input("top_p (1 = off)", 0.05, 1.0, 1.0, 0.05, key="gen_topp", disabled=not sample)
        seed = s5.number_input("seed", 0, 2**31 - 1, 0, key="gen_seed")
    return tuple(
        sorted(
            dict(
                divergence=divergence,
                temperature=float(T),
                max_new_tokens=int(new),
                do_sample=bool(sample),
                sample_temperature=float(tau),
                top_k=int(top_k),
                top_p=float(top_p),
                seed=int(seed),
            ).items()
        )
    )


def render(key: tuple, device: str) -> None:
    """The section: prompt, settings, the coloured token grid, and the per-token table."""
    st.subheader("Generated samples, coloured by the per-token divergence")
    st.markdown(EXPLAIN)
    with ui.guard("generate and score the samples"):
        chosen = _prompt(key, device)
        settings = _settings()
        if chosen is None:
            return
        prompt, eos, pad = chosen
        res = compute.generated_samples(key, device, tuple(prompt), eos, pad, settings)
        decode = lambda i: compute.token_text(key, device, i)  # noqa: E731
        cols = st.columns(2)
        for col, (who, s) in zip(cols, res.samples.items()):
            col.metric(
                f"mean over the {gs.WHO[who]}",
                f"{res.summary[f'{who}_mean']:.3f} nats",
                help=f"{len(s.tokens)} tokens" + (", truncated (no stop token)" if s.truncated else ""),
            )
        ui.show_figure(
            gs.figure(res, decode),
            "divergence_generated",
            caption=f"Colour = {gs.divergence_label(res)} at the position that predicted the token (legend on "
            "the right; one scale for both samples). Hover for p_T and q_S of the token.",
        )
        st.dataframe(gs.table(res, decode), hide_index=True, height=240)
