"""The Workshop path as a guided mode: its steps, and the banner each step's page shows (Try, a
Notice computed from what the page shows, Previous / Next).

`banner(url_path)` is called by app/main.py before the page runs; it draws nothing unless the
session is on the path and the page is the current step's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from analyses import claims
from analyses.claims import Claim
from app import compute, state
from sample_models.recipes import RECIPES

_DIGITS = RECIPES["digits"]
PRESET_BUTTON = "Queue the recipe run and the student alone"  # the Distill page's workshop preset
STEP_KEY = "workshop_step"  # session state: the index of the current step (absent: not on the path)


@dataclass(frozen=True)
class Step:
    url_path: str  # the page's url path (app/main.py)
    page: str  # the page's file, for st.switch_page
    icon: str
    title: str
    pair: str  # the sample pair the step uses
    try_this: str  # what to do on the page
    look: str  # what to look at (no result: the computed claim says what the data shows)
    claim: Callable[[tuple, str, int], list[Claim]] | None = None  # (pair key, device, probe size) -> claims


def _overview(key, device, n):
    card = compute.scorecard(key, device, n)
    return [claims.distilled_beats_baseline(card), claims.risk_bound(card)]


def _soft_labels(key, device, n):
    return [claims.temperature_softens(compute.sweep(key, device, n)["sweep"])]


def _distill(key, device, n):
    kd, alone = same_budget_runs(key[1])
    return [claims.kd_beats_alone(kd, alone)]


def _features(key, device, n):
    kind = st.session_state.get("cka_kind", "linear")
    debiased = bool(st.session_state.get("cka_debiased", False)) and kind == "linear"
    opts = compute.cka_token_kwargs({k: st.session_state.get(k, d) for k, d in compute.CKA_TOKEN_DEFAULTS.items()})
    return [claims.cka_diagonal(compute.cka(key, device, n, kind, debiased, **opts)["teacher × student"])]


def _cams(key, device, n):
    res = compute.cams(
        key, device, n, st.session_state.get("cam_explain", "label"), float(st.session_state.get("cam_q", 20))
    )
    return [claims.student_looks_like_teacher(res.localisation())]


def _components(key, device, n):
    res = compute.components(
        key,
        device,
        n,
        float(st.session_state.get("div_temperature", 4.0)),
        int(st.session_state.get("div_k", 2)),
        float(st.session_state.get("div_tau", 0.9)),
    )
    return [claims.nckd_carries_kl(res.dkd)]


def _attention(key, device, n):
    res = compute.attention(
        key, device, n, st.session_state.get("att_metric", "kl"), st.session_state.get("att_mode", "one_to_one")
    )
    return [claims.induction_head(res)]


def _tokens(key, device, n):
    res = compute.token_components(
        key, device, n, int(st.session_state.get("tok_index", 0)), float(st.session_state.get("tok_temperature", 1.0))
    )
    return [claims.kl_directions_disagree(res.per_position)]


def _calibration(key, device, n):
    return [
        claims.distilled_better_calibrated(
            compute.calibration(key, device, n, int(st.session_state.get("cal_bins", 15)))
        )
    ]


STEPS = [
    Step(
        "overview",
        "views/overview.py",
        ":material/home:",
        "The pair at a glance",
        "digits",
        "Read the scorecard: how much smaller and faster is the student, and how much accuracy does it keep?",
        "Compare the distilled student with the baseline (the same network trained on labels alone), then read "
        "the bound: the student's error is at most the teacher's error plus how often they disagree.",
        _overview,
    ),
    Step(
        "soft-labels",
        "views/soft_labels.py",
        ":material/thermostat:",
        "Soft labels and temperature",
        "digits",
        "Move the temperature slider from 1 to 10. Pick a few inputs with the 'Input #' box.",
        "Watch the teacher's top probability and the mass on the wrong classes as T rises; which wrong classes "
        "get more than others (3 and 8, 4 and 9?) is the dark knowledge the student learns from.",
        _soft_labels,
    ),
    Step(
        "distill",
        "views/distill.py",
        ":material/science:",
        "Distil a student yourself",
        "digits",
        f"In the Start tab's **Workshop preset**, press '{PRESET_BUTTON}': it queues a KD run on the pair's "
        f"recipe ({_DIGITS.settings_text()}) and the baseline, the student alone (objective ce) with the same "
        "budget, and shows them side by side when both finish. Reload the page while they run: the jobs are "
        "still there.",
        "Compare the two final accuracies and the validation curves under the preset; in the Live tab, watch the "
        "KD component and the agreement with the teacher.",
        _distill,
    ),
    Step(
        "features",
        "views/features.py",
        ":material/grid_on:",
        "Compare the layers (CKA)",
        "digits",
        "Look at the teacher × student heatmap, then pick your run under 'Across a run's checkpoints'.",
        "Look for a band along the diagonal: the student building its features in the teacher's order.",
        _features,
    ),
    Step(
        "cams",
        "views/cams.py",
        ":material/local_fire_department:",
        "Where do they look? (Grad-CAM)",
        "shapes",
        "Switch the sidebar to the shapes pair. Step through images with 'Image #'.",
        "The outline is the true shape. Does the student's map fall on it as the teacher's does? The pointing-game "
        "and energy bars measure it.",
        _cams,
    ),
    Step(
        "divergences",
        "views/divergences.py",
        ":material/stacked_bar_chart:",
        "Which part of the mismatch matters?",
        "shapes",
        "Compare the strong-set rules, then choose 'target' and read the DKD figure.",
        "DKD splits the KL into the target part (TCKD: how sure to be) and the non-target part (NCKD: the dark "
        "knowledge). Which one carries it?",
        _components,
    ),
    Step(
        "attention",
        "views/attention.py",
        ":material/visibility:",
        "Attention heads",
        "tinylang",
        "Switch to tinylang. Look at the teacher's second layer, then the head matching matrix.",
        "Look for an induction head: a stripe that jumps back to the token after the previous copy. Does the "
        "shallower student have a head like it? The divergence matrix says which student head comes closest.",
        _attention,
    ),
    Step(
        "divergences",
        "views/divergences.py",
        ":material/stacked_bar_chart:",
        "Token by token",
        "tinylang",
        "On tinylang, the Divergence page shows every divergence over the tokens of a text.",
        "Find the hot tokens, where the student departs from its teacher. Do forward and reverse KL agree on "
        "where it hurts most?",
        _tokens,
    ),
    Step(
        "calibration",
        "views/calibration.py",
        ":material/target:",
        "Calibration",
        "digits",
        "Back to digits: compare the three reliability diagrams.",
        "Compare the distilled student's calibration scores with the baseline's (lower is better).",
        _calibration,
    ),
    Step(
        "doctor",
        "views/doctor.py",
        ":material/medical_services:",
        "Diagnose a run",
        "digits",
        "Open the Doctor on the runs you made (try a run with T = 0.5 or λ = 1 and 1 epoch).",
        "Each finding comes with its evidence and a suggested fix; a fix that is a run has a button that queues it.",
        None,
    ),
]


def same_budget_runs(pair: str) -> tuple[dict | None, dict | None]:
    """The newest completed KD run on the pair and a completed student-alone run with its budget (summaries)."""
    from kdcore.doctor.capacity import same_budget

    store = state.store()
    done = store.list_runs(state="completed")
    done = done[done["pair"] == pair]
    kd = next((store.get_run(r) for r in done.loc[done["objective"] == "kd", "id"]), None)
    if kd is None:
        return None, None
    alone = next(
        (
            store.get_run(r)
            for r in done.loc[done["objective"] == "ce", "id"]
            if same_budget(kd["config"] or {}, store.get_run(r)["config"] or {})
        ),
        None,
    )
    return kd.get("summary") or {}, None if alone is None else alone.get("summary") or {}


def go(index: int) -> None:
    """Button callback: make `index` the current step, choose its pair in the sidebar, open its page."""
    step = STEPS[index]
    st.session_state[STEP_KEY] = index
    st.session_state["pair_source"] = "Sample pair"
    st.session_state["sample_pair"] = step.pair
    st.session_state["_workshop_go"] = step.page


def leave() -> None:
    st.session_state.pop(STEP_KEY, None)


def notice(step: Step) -> list[Claim]:
    """The step's computed claims on the current sidebar choice (empty when the step has none)."""
    if step.claim is None:
        return []
    key = ("sample", step.pair)
    if state.pair_key() != key:  # the page shows another pair: no claim about this one
        return [
            Claim(
                False,
                f"This step is about the {step.pair} sample pair, and the sidebar shows another: "
                f"press 'Open on {step.pair}' to see what its data shows.",
            )
        ]
    return step.claim(key, state.device(), state.probe_size())


def show_step(index: int, *, where: str) -> None:
    """Step `index`: title, Try, what to look at, the computed Notice, and Previous / Next."""
    step = STEPS[index]
    st.markdown(f"**Workshop path · step {index + 1} of {len(STEPS)}: {step.title}** (pair **{step.pair}**)")
    st.markdown(f"**Try:** {step.try_this}")
    st.markdown(f"**Look at:** {step.look}")
    from app import ui

    with ui.guard("check this step's notice on the data"):
        for c in notice(step):
            st.markdown(f"{'✅' if c.holds else 'ℹ️'} **Notice:** {c.sentence}")
    prev, here, nxt, out = st.columns(4)
    prev.button(
        "Previous",
        icon=":material/arrow_back:",
        disabled=index == 0,
        key=f"{where}_prev",
        on_click=go,
        args=(index - 1,),
    )
    here.button(f"Open on {step.pair}", icon=step.icon, key=f"{where}_open", on_click=go, args=(index,))
    nxt.button(
        "Next",
        icon=":material/arrow_forward:",
        disabled=index == len(STEPS) - 1,
        key=f"{where}_next",
        on_click=go,
        args=(index + 1,),
    )
    out.button("Leave the path", icon=":material/close:", key=f"{where}_leave", on_click=leave)


def banner(url_path: str) -> None:
    """On the current step's page: the step's panel at the top (nothing otherwise)."""
    switch_if_asked()
    index = st.session_state.get(STEP_KEY)
    if index is None or not 0 <= index < len(STEPS) or STEPS[index].url_path != url_path:
        return
    with st.container(border=True):
        show_step(index, where="guide")


def switch_if_asked() -> None:
    """After the buttons' callbacks: open the page a button asked for."""
    target = st.session_state.pop("_workshop_go", None)
    if target:
        st.switch_page(target)
