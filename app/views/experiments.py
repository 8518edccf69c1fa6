"""Experiments: the survey's plan (floor, T sweep, λ sweep at the best T), the capacity-gap study,
one method across pairs and the reproducibility report, each run in the background; their reports."""

from __future__ import annotations

import datetime

import streamlit as st

from analyses import experiments as ex
from app import experiment_jobs as jobs
from app import state, ui
from app.experiment_report import experiment_html
from kdcore.jobs.across import AcrossSpec
from kdcore.jobs.capacity_study import CapacitySpec
from kdcore.jobs.experiment import PlanSpec
from kdcore.jobs.experiment_store import list_experiments, load_report
from kdcore.jobs.recipes import pair_recipe
from kdcore.jobs.repro import ReproSpec
from kdcore.jobs.sweeps import SelectionRule

ui.intro(
    "Experiments",
    "The survey's first study runs as **one experiment**: the student trained alone (the *floor*), a "
    "temperature sweep at a fixed λ, then a λ sweep at the temperature that won — every run on the pair's "
    "recipe budget, repeated over seeds. The report shows each variant's best- and final-epoch validation "
    "metric (mean ± std over seeds), its gain over the floor with a 95 % t-interval (paired by seed), the "
    "validation curves, and the chosen T and λ with their intervals.\n\n"
    "The **capacity gap** tab trains every student size of the pair's ladder, alone and with KD at several "
    "temperatures: the heatmap shows where distilling pays and where the student is too small to follow the "
    "teacher. **Across pairs** runs one method on every pair it fits, against each pair's student alone. "
    "**Reproducibility** re-runs one config over seeds and thread counts and says which metrics are "
    "bit-identical. Overfitting to the teacher (training accuracy racing ahead of validation while the KD "
    "term falls) is a Doctor check on any run: `overfit.teacher`.",
    "A winner whose interval overlaps the others' is not a clear winner: more seeds, or accept the lower T. "
    "A gain interval that contains 0 means distilling did not measurably help on this budget. In the heatmap, "
    "gains that shrink (or turn negative, red) as the student gets smaller are the capacity gap: a teacher "
    "assistant (TAKD) or a lower temperature may help there.",
    [
        r"\text{gain}_s = \text{metric}_s(\text{KD}) - \text{metric}_s(\text{alone}),\quad "
        r"\bar g \pm t_{0.975,\,n-1}\,\frac{s_g}{\sqrt{n}}",
        r"T^\* = \min\,\{T : \overline{\text{best}}(T) \ge \max_{T'} \overline{\text{best}}(T') - \text{tol}\}",
    ],
)

store = state.store()
SWEEPABLE = [p for p in state.sample_pair_names() if (r := pair_recipe(p)) is not None and r.objective in ("kd", "bkd")]
LADDERS = [p for p in SWEEPABLE if p in ("digits", "shapes")]


def _numbers(text: str, kind: type = float) -> tuple:
    try:
        return tuple(kind(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"Expected numbers separated by commas (e.g. 1, 2, 5, 10). Got {text!r}.") from None


def _budget(epochs: int, train: int) -> dict:
    return {k: v for k, v in (("epochs", int(epochs) or None), ("train_size", int(train) or None)) if v}


def _budget_inputs(epochs_col, train_col, prefix: str) -> dict:
    """A form's epochs and training-samples inputs (0: the recipe's), as the budget they set."""
    epochs = epochs_col.number_input("Epochs (0: recipe's)", 0, 500, 0, key=f"{prefix}_epochs")
    train = train_col.number_input("Training samples (0: recipe's)", 0, 1_000_000, 0, key=f"{prefix}_train")
    return _budget(epochs, train)


def _launch(what: str, build) -> None:
    with ui.guard(f"start the {what}"):
        argv = build()
        jobs.start(store, argv)
        st.success(
            f"The {what} started in the background; it appears below as its runs finish.",
            icon=":material/check_circle:",
        )


tab_plan, tab_cap, tab_across, tab_repro = st.tabs(["Plan", "Capacity gap", "Across pairs", "Reproducibility"])
with tab_plan, st.form("exp_plan"):
    c1, c2, c3 = st.columns(3)
    pair = c1.selectbox("Pair", SWEEPABLE, key="exp_pair")
    seeds = c2.text_input("Seeds", "0, 1, 2", key="exp_seeds")
    lam = c3.text_input("λ of the T sweep (empty: the recipe's)", "", key="exp_lam")
    c1, c2 = st.columns(2)
    temps = c1.text_input("Temperatures", "1, 2, 5, 10", key="exp_temps")
    lams = c2.text_input("λ values (at the winning T)", "0.1, 0.5, 0.9", key="exp_lams")
    c1, c2, c3, c4, c5 = st.columns(5)
    metric = c1.selectbox("Select by", ["best", "final"], key="exp_rule", help="best-epoch or final-epoch metric")
    ties = c2.selectbox("Ties go to", ["lower", "higher"], key="exp_ties")
    tol = c3.number_input("Tie tolerance", 0.0, 1.0, 0.0, step=0.001, format="%.3f", key="exp_tol")
    budget = _budget_inputs(c4, c5, "exp")
    if st.form_submit_button("Run the plan"):
        _launch(
            "plan",
            lambda: jobs.plan_argv(
                PlanSpec(
                    pair=pair,
                    seeds=_numbers(seeds, int),
                    temperatures=_numbers(temps),
                    lams=_numbers(lams),
                    lam=float(lam) if lam.strip() else None,
                    rule=SelectionRule(metric=metric, ties=ties, tolerance=float(tol)),
                    budget=budget,
                )
            ),
        )
with tab_cap, st.form("exp_capacity"):
    c1, c2, c3, c4, c5 = st.columns(5)
    cpair = c1.selectbox("Pair (with a student ladder)", LADDERS, key="cap_pair")
    cseeds = c2.text_input("Seeds", "0, 1, 2", key="cap_seeds")
    ctemps = c3.text_input("Temperatures", "1, 4, 10", key="cap_temps")
    cbudget = _budget_inputs(c4, c5, "cap")
    if st.form_submit_button("Run the capacity-gap study"):
        _launch(
            "capacity-gap study",
            lambda: jobs.capacity_argv(CapacitySpec(cpair, _numbers(cseeds, int), _numbers(ctemps), budget=cbudget)),
        )
with tab_across, st.form("exp_across"):
    c1, c2, c3, c4 = st.columns(4)
    method = c1.text_input("Method", "kd", key="acr_method")
    apairs = c2.multiselect("Pairs", state.sample_pair_names(), default=SWEEPABLE, key="acr_pairs")
    aseeds = c3.text_input("Seeds", "0, 1, 2", key="acr_seeds")
    aepochs = c4.number_input("Epochs (0: each recipe's)", 0, 500, 0, key="acr_epochs")
    if st.form_submit_button("Run across pairs"):
        _launch(
            "across-pairs study",
            lambda: jobs.across_argv(AcrossSpec(method, apairs, _numbers(aseeds, int), budget=_budget(aepochs, 0))),
        )
with tab_repro, st.form("exp_repro"):
    c1, c2, c3, c4 = st.columns(4)
    rpair = c1.selectbox("Pair (its recipe)", SWEEPABLE, key="rep_pair")
    rseeds = c2.text_input("Seeds (at least two)", "0, 1", key="rep_seeds")
    rthreads = c3.text_input("Thread counts", "1, 2", key="rep_threads")
    repochs = c4.number_input("Epochs (0: recipe's)", 0, 500, 5, key="rep_epochs")
    if st.form_submit_button("Run the reproducibility report"):
        from kdcore.jobs.experiment import recipe_base

        _launch(
            "reproducibility report",
            lambda: jobs.repro_argv(
                store,
                ReproSpec(recipe_base(rpair, _budget(repochs, 0)), _numbers(rseeds, int), _numbers(rthreads, int)),
            ),
        )

st.header("Reports")
with ui.guard("list the experiments"):
    metas = list_experiments(store)
    if not metas:
        st.info("No experiments yet: start one above, or `python -m kdcore experiment plan --pair digits`.")
        st.stop()

    def _label(m: dict) -> str:
        when = datetime.datetime.fromtimestamp(m["created"]).strftime("%Y-%m-%d %H:%M")
        status = "report ready" if m["has_report"] else f"{m['done']} of {m['planned']} runs"
        return f"{m['id']} · {m['kind']} · {m['pair'] or 'several pairs'} · {when} · {status}"

    labels = {m["id"]: _label(m) for m in metas}
    eid = st.selectbox("Experiment", list(labels), format_func=labels.get, key="exp_pick")
    meta = next(m for m in metas if m["id"] == eid)


@st.fragment(run_every=2.0 if not meta["has_report"] else None)
def report_view(eid: str) -> None:
    with ui.guard("show the report"):
        report = load_report(store, eid)
        if report is None:
            m = next((x for x in list_experiments(store) if x["id"] == eid), meta)
            planned = max(int(m["planned"] or 1), 1)
            text = f"{m['done']} of {planned} runs finished; the report comes at the end"
            st.progress(min(m["done"] / planned, 1.0), text=text)
            return
        if not meta["has_report"]:  # it just finished: redraw the page without the timer
            st.rerun()
        st.caption(f"{report['state']} · {report.get('wall_s') or 0:.1f} s of training in all")
        for title, df in ex.report_tables(report).items():
            st.subheader(title)
            st.dataframe(df, hide_index=True)
        for i, fig in enumerate(ex.report_figures(report)):
            ui.show_figure(fig, key=f"exp_{eid}_{i}")
        ui.html_download(
            st,
            "Download the report (HTML)",
            lambda: experiment_html(report),
            f"experiment-{eid}.html",
            f"exp_dl_{eid}",
            icon=":material/download:",
        )


report_view(eid)
