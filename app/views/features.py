"""Features: CKA between every teacher layer and every student layer, and how it grows during a run."""

import streamlit as st

from analyses import cka as cka_an
from app import compute, heads_view, report, state, ui

POOLS = {"mean": "mean over tokens (one row per text)", "per_token": "every token (one row per token)"}
PITFALL = (
    "**CKA on token sequences.** A transformer layer gives one vector per token; CKA needs one row per input, "
    "so the tokens must become rows. Raw CKA between a language model's layers often reads ≈ 1 almost "
    "everywhere, for two reasons. The **first token** (BOS, or whatever starts a packed row; [CLS] in an "
    "encoder) attends only to itself, so its hidden state is nearly the same in every text and carries huge "
    "activations (the *attention sink*): it forms one far-away cluster that every layer shares. And a few "
    "**outlier dimensions** of huge magnitude can hold most of the variance, so CKA compares only those "
    "coordinates.\n\n"
    "- **Rows: mean over tokens** (default): one row per text, the mean of its kept tokens. The rows are then "
    "independent inputs, as CKA assumes, and what every text shares cancels when the rows are centred. "
    "**Every token**: one row per kept token; the geometry of single tokens, where position and token identity "
    "weigh in (the first texts, up to 16,384 token rows).\n"
    "- **Drop the first token** (default on): leaves position 0 of every text out.\n"
    "- **Drop special tokens** (default on): the tokenizer's special tokens (BOS, EOS, padding, markers) are left "
    "out wherever they sit, also where documents meet inside a packed row.\n"
    "- **Padding** is always left out (the attention mask).\n\n"
    "The defaults (mean over tokens, first and special tokens dropped) measure what the texts' content does to "
    "each layer. Turn them off to see the pitfall. Whatever the options, the page warns when the top 3 "
    "dimensions of a layer hold more than half of its centred squared norm (on the rows CKA sees): that layer's "
    "CKA then mostly compares those few dimensions."
)


def _token_options(specials: tuple[int, ...]) -> dict:
    """The token widgets (token-sequence pairs only): pool, drop first, drop special."""
    st.markdown(PITFALL)
    c1, c2, c3 = st.columns(3)
    pool = c1.radio(
        "CKA rows", list(POOLS), format_func=POOLS.get, key="cka_pool", help="One row per text, or per token."
    )
    first = c2.toggle(
        "Drop the first token", value=True, key="cka_drop_first", help="Position 0: BOS, the attention sink, [CLS]."
    )
    shown = ", ".join(str(i) for i in specials[:8]) + (" …" if len(specials) > 8 else "")
    special = c3.toggle(
        "Drop special tokens",
        value=True,
        key="cka_drop_special",
        disabled=not specials,
        help=f"Token ids {shown}." if specials else "The dataset's tokenizer names no special token.",
    )
    return {"cka_pool": pool, "cka_drop_first": bool(first), "cka_drop_special": bool(special and specials)}


def _caption(result, n: int) -> str:
    opts = result.attrs.get("token_options")
    if not opts:
        return f"{n} probe inputs."
    dropped = [w for w, on in (("first token", opts["drop_first"]), ("special tokens", opts["drop_special"])) if on]
    rows = "token features mean-pooled per text" if opts["pool"] == "mean" else "every kept token one row"
    return (
        f"{opts.get('texts', n)} probe texts, {rows}; padding"
        + (f", {', '.join(dropped)}" if dropped else "")
        + " left out."
    )


ctx = ui.page(
    "Features: where the student's layers resemble the teacher's (CKA)",
    "Centered kernel alignment (CKA) compares two layers by how similarly they arrange the same inputs: "
    "1 means the same geometry up to rotation and scale, 0 means unrelated. The heatmap crosses every "
    "teacher layer with every student layer; the self-similarity maps show each model's own structure.",
    "A bright diagonal band means the student builds its representation in the same order as the teacher. "
    "A dark late layer against the teacher's late layers shows where the student fails to copy the teacher, "
    "and is where a feature loss (FitNets) would help. Across a run's checkpoints, watch the band sharpen.",
    [
        r"\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F\, \lVert Y^\top Y \rVert_F}"
        r"\quad (X, Y \text{ column-centred, } n \times d)",
        r"\text{RBF: } K_{ij} = \exp\!\left(-\lVert x_i - x_j\rVert^2 / 2\sigma^2\right),\quad "
        r"\mathrm{CKA} = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}}",
    ],
)
if ctx:
    pair, key, device, n = ctx
    c1, c2 = st.columns(2)
    kind = c1.radio(
        "Kernel",
        ["linear", "rbf"],
        horizontal=True,
        key="cka_kind",
        help="Linear CKA is the standard; RBF is sensitive to local neighbourhoods.",
    )
    debiased = c2.toggle(
        "Debiased (unbiased HSIC)",
        value=False,
        key="cka_debiased",
        disabled=kind == "rbf",
        help="Removes the upward bias of CKA with few inputs and wide layers (needs n ≥ 4).",
    )
    with ui.guard("compute CKA"):
        token_opts = dict(compute.CKA_TOKEN_DEFAULTS)  # used only for token inputs
        if compute.token_inputs(pair):
            token_opts = _token_options(compute.special_ids(pair))
        res = compute.cka(key, device, n, kind, debiased and kind == "linear", **compute.cka_token_kwargs(token_opts))
        warning = cka_an.dominance_warning(res["teacher × student"])
        if warning:
            st.warning(warning, icon=":material/warning:")
        ui.show_figure(
            cka_an.figure_heatmap(res["teacher × student"], title="CKA: teacher layers × student layers"),
            "cka_pair",
            caption=_caption(res["teacher × student"], n),
        )
        ui.show_figure(
            cka_an.figure_heatmaps(
                {k: v for k, v in res.items() if k != "teacher × student"}, title="Each model against itself"
            ),
            "cka_self",
        )
        with st.expander("Top-dimension share of every layer (what the warning measures)"):
            st.dataframe(cka_an.dominance_table(res["teacher × student"]), hide_index=True)

    st.subheader("Across a run's checkpoints")
    runs = state.store().list_runs()
    runs = runs[runs["pair"] == state.pair_label(key)] if len(runs) else runs
    if not len(runs):
        st.info(
            "No distillation run of this pair yet. Start one on the **Distill** page; each checkpoint "
            "records the CKA of the student's layers against the teacher's."
        )
    else:
        labels = {r.id: f"{r.name or r.id} · {r.objective} · {r.state}" for r in runs.itertuples()}
        run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="cka_run")
        with ui.guard("read the run's checkpoints"):
            heat = report.checkpoint_cka(state.store(), run_id)
            if not heat:
                st.info("This run has no checkpoint yet.")
            else:
                ui.show_figure(
                    cka_an.figure_heatmaps(heat, title="CKA at each checkpoint (teacher rows, student columns)"),
                    "cka_checkpoints",
                    caption="Measured by the job on its validation probe batch.",
                )

    heads_view.show(key, device, n)  # MGD's generator and FAM-KD's frequency filter (methods/14 §14.1, §14.4)
