"""The learned feature heads of MGD and FAM-KD on the Features page (analyses.feature_heads).

The heads are fresh (seeded) on a sample pair; with "Student of a finished run" chosen in the sidebar
and that run an `mgd` / `famkd` run, its trained heads are read from the run's resume state. The
α·L_MGD / CE ratio per epoch is read from an MGD run's step metrics.
"""

from __future__ import annotations

import streamlit as st

from analyses import feature_heads as fh
from app import compute, state, ui

HEAD_MAX = 64  # probe inputs the heads run on


def _run(key: tuple) -> dict | None:
    """The run behind a "Student of a finished run" key, else None."""
    if key[0] != "run" or not key[1]:
        return None
    try:
        return state.store().get_run(key[1])
    except Exception:  # noqa: BLE001 — a deleted run: fresh heads
        return None


def _trained(key: tuple, objective: str, s_layer: str, t_layer: str) -> str | None:
    """The head key of the chosen run's trained head for this layer pair, else None."""
    run = _run(key)
    if run is None or run.get("objective") != objective:
        return None
    layers = ((run.get("config") or {}).get("params") or {}).get("layers") or {}
    if layers.get(s_layer) != t_layer:
        return None
    return f"{objective}__{s_layer.replace('.', '__')}"


def _head_inputs(key: tuple, device: str, n: int, objective: str, s_layer: str, t_layer: str) -> tuple:
    """(pair, probe inputs, probe labels, the head's keywords: its layer pair and the chosen run's trained
    weights or None) for the head of `objective` on the layer pair."""
    pair = compute._pair(key, device)
    x, y, _ = state.probe(pair, min(n, HEAD_MAX))
    head_key = _trained(key, objective, s_layer, t_layer)
    weights = fh.head_state(state.store(), key[1], head_key) if head_key else None
    return pair, x, y, {"student_layer": s_layer, "teacher_layer": t_layer, "head_state": weights}


_MGD_OPTS = ("lambda_mask", "mask", "sample", "channel", "seed")  # the order of mgd's `opts` tuple


@st.cache_data(show_spinner="Running the MGD head…", max_entries=16)
def mgd(key: tuple, device: str, n: int, s_layer: str, t_layer: str, opts: tuple) -> fh.MGDView:
    """The MGD view; `opts` = (lambda_mask, mask, sample, channel, seed), a tuple so the cache can hash it."""
    pair, x, y, head = _head_inputs(key, device, n, "mgd", s_layer, t_layer)
    return fh.mgd_view_from_adapters(
        pair.student, pair.teacher, x, y, **head, **dict(zip(_MGD_OPTS, opts, strict=True))
    )


@st.cache_data(show_spinner="Running the frequency attention module…", max_entries=16)
def fam(key: tuple, device: str, n: int, s_layer: str, t_layer: str, cuton: float) -> fh.FAMView:
    pair, x, _, head = _head_inputs(key, device, n, "famkd", s_layer, t_layer)
    return fh.fam_view_from_adapters(pair.student, pair.teacher, x, **head, cuton=cuton)


def _layer_pair(prefix: str, s_layers: list[str], t_layers: list[str]) -> tuple[str, str]:
    c1, c2 = st.columns(2)
    s = c1.selectbox("Student layer", s_layers, index=len(s_layers) - 1, key=f"{prefix}_s")
    t = c2.selectbox("Teacher layer", t_layers, index=len(t_layers) - 1, key=f"{prefix}_t")
    return s, t


def _mgd_section(key: tuple, device: str, n: int, s_layers: list[str], t_layers: list[str]) -> None:
    st.markdown(
        "**MGD** (Yang et al. 2022, arXiv 2205.01529; methods/14 §14.1): the student's feature, aligned "
        "to the teacher's width, is masked at random and a generator must rebuild the teacher's feature."
    )
    s, t = _layer_pair("mgd", s_layers, t_layers)
    c1, c2, c3, c4 = st.columns(4)
    lam = c1.slider("Mask ratio λ", 0.0, 1.0, 0.15, 0.05, key="mgd_lambda")
    mask = c2.radio("Mask", ["channel", "spatial"], horizontal=True, key="mgd_mask")
    sample = int(c3.number_input("Input", 0, HEAD_MAX - 1, 0, key="mgd_sample"))
    channel = int(c4.number_input("Teacher channel", 0, 1023, 0, key="mgd_channel"))
    with ui.guard("run the MGD head"):
        view = mgd(key, device, n, s, t, (lam, mask, sample, channel, 0))
        trained = _trained(key, "mgd", s, t) is not None
        ui.show_figure(
            fh.mgd_figure(view),
            "mgd_maps",
            caption=("The run's trained head." if trained else "A fresh head (seed 0): untrained.")
            + " α·L_MGD / CE near 1 means the rescaled α weighs both terms alike.",
        )
    run = _run(key)
    if run is not None and run.get("objective") == "mgd":
        with ui.guard("read the run's loss terms"):
            st.dataframe(fh.component_ratio(state.store().metrics(run["id"], "step")), hide_index=True)


def _fam_section(key: tuple, device: str, n: int, s_layers: list[str], t_layers: list[str]) -> None:
    st.markdown(
        "**FAM-KD** (Pham et al. 2024, arXiv 2403.05894; methods/14 §14.4): a learned filter per "
        "frequency maps the student's channels to the teacher's; a high-pass removes the lowest frequencies."
    )
    s, t = _layer_pair("fam", s_layers, t_layers)
    cuton = st.select_slider("High-pass cut-on c", [0.1, 0.2, 0.25, 0.3, 0.4, 0.5], value=0.1, key="fam_cuton")
    with ui.guard("run the frequency attention module"):
        view = fam(key, device, n, s, t, float(cuton))
        trained = _trained(key, "famkd", s, t) is not None
        ui.show_figure(
            fh.fam_figure(view),
            "fam_spectra",
            caption=("The run's trained module." if trained else "A fresh module (seed 0): untrained.")
            + f" The high-pass removed {view.removed} of {view.total} frequencies (red box).",
        )


def show(key: tuple, device: str, n: int) -> None:
    """The section: MGD and FAM-KD heads on the chosen pair (conv feature maps only)."""
    st.subheader("Learned feature heads: MGD and FAM-KD")
    s_layers, t_layers = compute.conv_layers(key, device)
    if not s_layers or not t_layers:
        st.info("MGD and FAM-KD distil conv feature maps [B, C, H, W]; this pair has none.")
        return
    _mgd_section(key, device, n, s_layers, t_layers)
    _fam_section(key, device, n, s_layers, t_layers)
