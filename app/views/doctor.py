"""Doctor: pick a run from the store; see what went wrong, with evidence and a fix per finding."""

from __future__ import annotations

import json

import streamlit as st

from analyses.doctor import figure
from app import safety, state, ui
from kdcore.doctor import CHECKS, SEVERITIES, diagnose
from kdcore.jobs import submit

_ICONS = {
    "error": ":material/error:",
    "warning": ":material/warning:",
    "info": ":material/info:",
}  # Streamlit icons: no emoji font needed
_HEADINGS = {"error": "Errors", "warning": "Warnings", "info": "Notes"}

ui.intro(
    "Doctor",
    "The doctor reads a finished (or failed) distillation run — its config, its per-step and per-epoch "
    "metrics, its saved student — together with its teacher/student pair and data, and runs a set of "
    "checks. Each finding says what is wrong in plain words, shows the numbers (and a figure where one "
    "helps) and proposes a concrete fix.",
    "Start with the errors: a teacher in train mode, a NaN loss or loss counted on padding make every "
    "other number meaningless. Then the warnings: soft labels that carry no information at the run's "
    "temperature, a KD term drowned by CE (or the reverse), a miscalibrated or often-wrong teacher, a "
    "student too small to follow it. A check that could not run says why at the bottom.",
    [
        r"\text{balance} = \frac{\lVert \nabla_\theta\, \lambda T^2\,\mathrm{KL}(p_T \Vert q_T) \rVert}"
        r"{\lVert \nabla_\theta\, (1-\lambda)\,\mathrm{CE}(y, q) \rVert}",
        r"\mathrm{ECE} = \sum_m \tfrac{|B_m|}{n}\,\lvert \mathrm{acc}(B_m) - \mathrm{conf}(B_m) \rvert",
    ],
)


@st.cache_data(show_spinner="Examining the run…", max_entries=16)
def _report(run_id: str, updated: float):
    """The doctor's report on a run (cached per run and its last update)."""
    safety.check_run_factories(state.store().get_run(run_id)["config"])  # its factories load only if allowed
    return diagnose(run_id, store=state.store())


def _runs() -> dict[str, str]:
    df = state.store().list_runs()
    df = df[df["state"].isin(["completed", "failed", "cancelled", "interrupted"])]
    return {r.id: f"{r.id} · {r.pair} · {r.objective} · {r.state}" for r in df.itertuples()}


def _queue_buttons(finding, run: dict, key: str) -> None:
    """One button per fix that is a run: it queues that run on the background worker (as Distill does)."""
    for j, proposed in enumerate(finding.runs):
        if st.button(
            f"Queue: {proposed.label}",
            icon=":material/play_arrow:",
            key=f"{key}_run{j}",
            help="Queues this run with the diagnosed run's settings and the change named; follow it on "
            "the Distill page's Live tab.",
        ):
            with ui.guard("queue the run"):
                new_id = submit(proposed.config(run["config"]), store=state.store())
                st.session_state["watch_run"] = new_id
                st.success(
                    f"Run **{new_id}** queued: follow it on the **Distill** page's Live tab, then diagnose it here.",
                    icon=":material/check_circle:",
                )


with ui.guard("list the runs"):
    runs = _runs()
    if not runs:
        st.info(
            "No finished runs yet. Train one on the **Distill** page (or `python -m kdcore distill --pair digits`), "
            "then come back here."
        )
        st.stop()
    run_id = st.selectbox("Run to diagnose", list(runs), format_func=runs.get, key="doctor_run")
    run = state.store().get_run(run_id)
    cols = st.columns(4)
    cols[0].metric("State", run["state"])
    cols[1].metric("Objective", str(run["objective"]))
    cols[2].metric("Steps", int(run["step"] or 0))
    summary = run.get("summary") or {}
    if summary.get("final_val_acc") is not None:
        cols[3].metric("Final val. accuracy", f"{summary['final_val_acc']:.3f}")

with ui.guard("diagnose the run"):
    report = _report(run_id, float(run["updated"]))
    groups = report.by_severity()
    counts = {s: len(groups[s]) for s in SEVERITIES}
    if not report.findings:
        st.success(
            f"No problems found: {sum(v == 'ran' for v in report.checks.values())} checks ran and all passed.",
            icon="✅",
        )
    else:
        st.markdown(" · ".join(f"{_ICONS[s]} **{counts[s]}** {s}{'s' if counts[s] != 1 else ''}" for s in SEVERITIES))
    for severity in SEVERITIES:
        if not groups[severity]:
            continue
        st.subheader(_HEADINGS[severity])
        for i, f in enumerate(groups[severity]):
            with st.expander(f"{_ICONS[severity]} {f.title}", expanded=severity != "info"):
                st.caption(f"check `{f.id}`")
                ev = f.to_dict()["evidence"]
                st.markdown("**Evidence**")
                st.table({"measure": list(ev), "value": [str(v) for v in ev.values()]})
                if f.figure is not None:
                    ui.show_figure(figure(f), key=f"doctor_{run_id}_{f.id}_{i}")
                st.markdown(f"**Fix.** {f.fix}")
                _queue_buttons(f, run, key=f"doctor_{run_id}_{f.id}_{i}")
    with st.expander("Checks run"):
        summaries = {c.id: c.summary for c in CHECKS}
        st.table(
            {
                "check": list(report.checks),
                "looks for": [summaries.get(k, "") for k in report.checks],
                "status": list(report.checks.values()),
            }
        )
    st.download_button(
        "Download the report (JSON)",
        data=json.dumps(report.to_dict(), indent=2),
        file_name=f"doctor-{run_id}.json",
        mime="application/json",
        key="doctor_json",
    )
