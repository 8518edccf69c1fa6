"""Features: CKA between every teacher layer and every student layer, and how it grows during a run."""

import streamlit as st

from analyses import cka as cka_an
from app import compute, report, state, ui

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
        res = compute.cka(key, device, n, kind, debiased and kind == "linear")
        ui.show_figure(
            cka_an.figure_heatmap(res["teacher × student"], title="CKA: teacher layers × student layers"),
            "cka_pair",
            caption=f"{n} probe inputs"
            + (", token features mean-pooled per sequence." if pair.kind == "causal_lm" else "."),
        )
        ui.show_figure(
            cka_an.figure_heatmaps(
                {k: v for k, v in res.items() if k != "teacher × student"}, title="Each model against itself"
            ),
            "cka_self",
        )

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
