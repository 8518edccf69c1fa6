"""Distill: configure and start a job on the background worker, watch it live, cancel, compare runs,
run the standard protocols, download a run's report. Everything is read back from the run store."""

import streamlit as st

from analyses.self_distill import virtual_teacher_figure
from app import chain_view, guide, procedure_view, report, run_figures, run_table, runs, schedule_form, state, ui
from app.onpolicy_figures import onpolicy_caption, onpolicy_figures
from app.strategy_figures import strategy_figures
from app.student_init_form import factory_student_init, pair_student_init
from app.widget_state import seeded
from kdcore.adapters.hf_files import num_layers
from kdcore.jobs import JobConfig, cancel, compare, get_status, prepare_run, submit
from kdcore.jobs.chain import plan_chain
from kdcore.jobs.config import HELDOUT_PROMPTS, LAYER_RULES, SCHEDULES, with_source_label
from kdcore.jobs.form import config_from_form
from kdcore.jobs.own_source import OwnPairSource
from kdcore.jobs.pair_source import own_pair_objective
from kdcore.jobs.procedures import check_procedure
from kdcore.jobs.recipes import form_defaults, pair_recipe
from kdcore.methods import all_methods, get_method, methods_for

ui.intro(
    "Distill: train a student and watch it learn",
    "Start a distillation job: it runs in a separate worker process, so you can keep exploring, reload the "
    "page or close the tab — the job goes on and is found again here. Every loss component is logged at each "
    "step; validation accuracy, agreement with the teacher, CKA and the divergence components at checkpoints.",
    "Compare the distilled student with the baseline (objective *ce*, the student alone): distillation pays "
    "when it beats it. Watch which loss component falls first, and whether agreement with the teacher rises "
    "with accuracy. The protocols run the same comparison over temperatures, λ and seeds, with mean ± std.",
    [
        r"\mathcal{L} = w_{CE}\,\mathrm{CE}(y, q) + \sum_k w_k\,\mathcal{L}_k(\text{student}, \text{teacher})",
        r"\text{agreement} = P\big(\arg\max q = \arg\max p\big)",
    ],
    expanded=False,
)

store = state.store()
sample_names = state.sample_pair_names()
own_spec, own_pair = state.own_job_pair()  # the sidebar's own pair (directories or factories), when it loads
pair_names = sample_names + ([runs.OWN] if own_pair is not None else [])
_current = state.sample_name(state.pair_key())
default_pair = (
    runs.OWN
    if state.pair_key()[0] == "own" and own_pair is not None
    else (_current if _current in sample_names else sample_names[0])
)
sample_default = default_pair if default_pair in sample_names else sample_names[0]


def pair_option(name: str) -> str:
    if name == runs.OWN:
        return f"Your own models: {runs.own_pair_label(own_spec)}"
    return state.describe_sample_pair(name)


tab_new, tab_live, tab_runs, tab_protocol = st.tabs(["Start a run", "Live", "Runs & reports", "Protocols"])

_RECIPE_KEYS = (
    "job_objective",
    "job_epochs",
    "job_lr",
    "job_batch",
    "job_train_size",
    "job_schedule",
    "job_teacher_cache",
)


def follow_recipe(pair: str) -> None:
    """A pair newly chosen: forget the form's recipe fields, so they start again from its recipe."""
    if st.session_state.get("_job_recipe_pair") == pair:
        return
    for k in [
        k
        for k in st.session_state
        if k in _RECIPE_KEYS or (str(k).startswith("job_") and str(k).endswith(("_temperature", "_lam")))
    ]:
        del st.session_state[k]
    st.session_state["_job_recipe_pair"] = pair


@st.fragment(run_every=2.0)
def workshop_progress(pid: str) -> None:
    """The preset's two runs while they train; the page redraws with the comparison when both end."""
    rows, _, done = runs.workshop_summary(store, store.get_protocol(pid))
    if done:
        st.rerun()
    st.caption(
        " · ".join(f"**{r['label']}**: {r['state']}" for r in rows) + " — shown side by side here when both finish."
    )


def workshop_result(pid: str) -> None:
    """Both runs of the newest workshop preset: their final metric and validation curves in one chart."""
    rows, curves, done = runs.workshop_summary(store, store.get_protocol(pid))
    if not done:
        workshop_progress(pid)
        return
    cols = st.columns(len(rows))
    lower = rows[0]["metric"] == "val_loss"
    for col, r, other in zip(cols, rows, reversed(rows)):
        delta = None if r["final"] is None or other["final"] is None else r["final"] - other["final"]
        col.metric(
            f"{r['label']} ({r['state']})",
            "n/a" if r["final"] is None else f"{r['final']:.4f}",
            delta=None if delta is None else f"{delta:+.4f} vs the other run",
            delta_color="inverse" if lower else "normal",
            help=f"Final {r['metric'].replace('_', ' ')} on validation (run {r['id']}).",
        )
    ui.show_figure(
        run_figures.compare_curves(curves, rows[0]["metric"]),
        f"workshop_{pid}",
        caption="Validation after each epoch: the run on the recipe and the student alone, same budget.",
    )


def reopen_student(run_id: str) -> None:
    """Point the sidebar at a finished run's student (a callback: it runs before the sidebar is drawn)."""
    st.session_state["pair_source"] = "Student of a finished run"
    st.session_state["run_student"] = run_id


def workshop_box(pair: str, recipe) -> None:
    """The workshop preset of a sample pair: queue it, and compare its two runs once they finish."""
    with st.container(border=True):
        st.markdown(
            "**Workshop preset**: the run on the recipe and the student alone (objective *ce*) with the "
            "same epochs, training size, lr, schedule and seed, queued together and compared here."
        )
        if st.button(guide.PRESET_BUTTON, key="workshop_preset", icon=":material/compare_arrows:"):
            with ui.guard("queue the workshop preset"):
                runs.start_workshop(store, pair, recipe, device=state.device())
                st.success(
                    "Both runs queued: they train one after the other; the comparison appears below.",
                    icon=":material/check_circle:",
                )
        preset = runs.latest_workshop(store, pair)
        if preset is not None:
            with ui.guard("compare the workshop runs"):
                workshop_result(preset["id"])


def own_student_init(spec: OwnPairSource) -> tuple[str, int | None, str]:
    """Where the own pair's student starts (student_init, student_layers, layer_rule), chosen above the form."""
    with st.container(border=True):
        init = st.radio(
            "The student starts from",
            list(runs.STUDENT_INITS),
            format_func=runs.STUDENT_INITS.get,
            key="job_student_init",
            horizontal=True,
            help="pretrained: the student directory's weights; from_teacher: a shallower copy of the teacher "
            "(METHODS §14.2, the student directory is not used); reinit: the student's architecture, "
            "fresh random weights (seeded).",
        )
        if init != "from_teacher":
            return init, None, "spread"
        n_teacher = num_layers(spec.teacher)
        c1, c2 = st.columns(2)
        layers = c1.number_input(
            "Student layers",
            1,
            None if n_teacher is None else max(1, n_teacher - 1),
            1 if n_teacher is None else max(1, n_teacher // 2),
            key="job_student_layers",
            help="Fewer than the teacher's" + ("." if n_teacher is None else f" {n_teacher} layers."),
        )
        rule = c2.selectbox(
            "Teacher layers kept",
            LAYER_RULES,
            key="job_layer_rule",
            help="spread: the first and last, the others evenly between (DistilBERT's 12 → 6: 0, 2, 4, 7, 9, 11); "
            "stride: every k-th; first: the first N.",
        )
        return init, int(layers), rule


# ---- start -----------------------------------------------------------------------------------------
with tab_new:
    c1, c2 = st.columns([1, 2])
    pair = c1.selectbox(
        "Pair",
        pair_names,
        index=pair_names.index(default_pair),
        key="job_pair",
        format_func=pair_option,
        help="A sample pair, or your own models once loaded in the sidebar (Hugging Face directories with a data "
        "file, or module:factory with their weights).",
    )
    follow_recipe(pair)
    is_own = pair == runs.OWN
    recipe = None if is_own else pair_recipe(pair)
    the_pair = own_pair if is_own else state.pair_from_key(("sample", pair))
    task = the_pair.dataset.task
    offered = [m.name for m in methods_for(task)]
    # the recipe's method, else the default of an own pair's model kind (token for LMs, embed_distill for encoders)
    first = recipe.objective if recipe else own_pair_objective(the_pair.kind if the_pair.kind == "encoder" else "")
    objective = c2.selectbox(
        "Method",
        offered,
        key=seeded("job_objective", first if first in offered else offered[0]),
        format_func=runs.method_label,
        help="Every method of the table that fits this pair's task "
        "(`python -m kdcore methods` lists them with their sources).",
    )
    method = get_method(objective)
    initial = form_defaults(recipe, objective)  # the recipe's values, else the job's defaults
    if is_own:
        initial.update(runs.OWN_DEFAULTS)
        if own_spec.mode == "factory":
            st.caption(
                "Your own models: the teacher and student factories, their weights files and the data named in "
                "the sidebar. Starts from one epoch, batch 8, lr 1e-4."
            )
            has_weights = not own_spec.untrained_student  # without student weights: reinit or from_teacher
            init, rule = factory_student_init(the_pair, has_weights)  # its weights, fresh ones, or the teacher's
            own_init = (init, None, rule)
        else:
            st.caption(
                "Your own models: the teacher and student directories and the data file named in the sidebar; "
                "the text is tokenised by the teacher's tokenizer. Starts from one epoch, batch 8, lr 1e-4."
            )
            own_init = own_student_init(own_spec)
    else:
        st.caption(runs.recipe_note(pair, recipe))
        init, rule = pair_student_init(the_pair)  # reinit, or from_teacher where it fits
        own_init = (init, None, rule)
    if not is_own:
        workshop_box(pair, recipe)
    layers_hint = (
        f"Student layers: {', '.join(the_pair.student.layer_names()[:12])}. "
        f"Teacher layers: {', '.join(the_pair.teacher.layer_names()[:12])}."
    )
    schedules = schedule_form.schedule_controls(method, initial)
    with st.form("new_run"):
        st.caption(f"**{method.name}** ({method.section}): {method.help}")
        defaults = {
            **method.defaults(task),
            **{k: initial[k] for k in ("temperature", "lam") if initial[k] is not None and method.takes(k)},
        }
        if is_own:  # a feature method's layer map starts at the last blocks (the user may type another)
            layer_lists = (the_pair.teacher.default_layers(), the_pair.student.default_layers())
            defaults.update(runs.own_layer_defaults(method, *layer_lists, own_init))
        cols = st.columns(4)
        values = {
            p.name: runs.param_field(cols[i % 4], method, p, defaults[p.name], layers_hint)
            for i, p in enumerate(method.params)
        }
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs", 1, 500, key=seeded("job_epochs", int(initial["epochs"])))
        max_steps = c2.number_input("Stop after steps (0 = all)", 0, 100000, 0, key="job_max_steps")
        lr = c3.number_input("Learning rate", 1e-5, 1.0, format="%.4f", key=seeded("job_lr", float(initial["lr"])))
        batch = c4.number_input("Batch size", 1, 1024, key=seeded("job_batch", int(initial["batch_size"])))
        c1, c2, c3, c4 = st.columns(4)
        train_size = c1.number_input(
            "Training samples (0 = all)", 0, 1_000_000, key=seeded("job_train_size", int(initial["train_size"] or 0))
        )
        schedule = c2.selectbox("Learning-rate schedule", SCHEDULES, key=seeded("job_schedule", initial["schedule"]))
        seed = c3.number_input("Seed", 0, 10_000, 0, key="job_seed")
        name = c4.text_input("Name (optional)", key="job_name", placeholder="e.g. kd T=4")
        teacher_cache = st.checkbox(
            "Teacher cache (compute the teacher's outputs once)",
            key=seeded("job_teacher_cache", bool(initial["teacher_cache"])),
        )
        heldout = HELDOUT_PROMPTS
        if task == "causal_lm":
            heldout = st.columns(2)[0].number_input(
                "Held-out prompts decoded at each evaluation (0 = off)",
                0,
                10_000,
                HELDOUT_PROMPTS,
                key="job_heldout_prompts",
                help="Greedy completions of the test split's prompts give the run's held-out exact match "
                "(the quality curve). On a large model each evaluation decodes them all: lower it, or 0 to skip.",
            )
        started = st.form_submit_button("Start distillation", type="primary")
    if objective == "tfkd":  # the teacher Tf-KD pulls toward, at the form's values
        with st.expander("Tf-KD's virtual teacher", expanded=False), ui.guard("draw the virtual teacher"):
            ui.show_figure(
                virtual_teacher_figure(
                    the_pair.student.output_size,
                    0,
                    a=float(values["a"]),
                    temperature=float(values["temperature"] or defaults["temperature"]),
                    soften=values["soften"],
                ),
                "tfkd_virtual_teacher",
                caption="Its distribution for label 0 against the one-hot label (methods/13 §13.4c).",
            )
    if started:
        with ui.guard("start the run"):
            own_fields = runs.own_job_fields(own_spec, *own_init) if is_own else {}
            if not is_own and own_init[0] == "from_teacher":
                own_fields = {"student_init": "from_teacher", "layer_rule": own_init[2]}
            cfg = config_from_form(
                "" if is_own else pair,
                objective,
                values,
                recipe=recipe,
                name=name.strip(),
                epochs=int(epochs),
                max_steps=int(max_steps) or None,
                lr=float(lr),
                batch_size=int(batch),
                train_size=int(train_size) or None,
                schedule=schedule,
                seed=int(seed),
                teacher_cache=bool(teacher_cache),
                heldout_prompts=int(heldout),
                device=state.device(),
                schedules=schedules,
                **own_fields,
            )
            cfg = with_source_label(cfg)  # an own pair is listed as "hf:teacher→student" or "factory:…→…"
            # every problem named before queueing; an own pair is loaded as the worker will load it
            prepared = prepare_run(cfg, pair=None if is_own else the_pair)
            if get_method(cfg.objective).chain:  # takd, dgkd, ban: the worker runs the whole chain
                plan_chain(cfg, prepared.pair)
            check_procedure(cfg, prepared.pair)  # blockwise, pwkd, zskt: stages, widths, data refused here
            run_id = submit(cfg, store=store)
            st.session_state["watch_run"] = run_id
            st.success(f"Run **{run_id}** queued: follow it in the **Live** tab.", icon=":material/check_circle:")
    with ui.guard("draw the schedule"):
        plan = {"epochs": int(epochs), "batch_size": int(batch), "train_size": int(train_size), "max_steps": max_steps}
        frame = schedule_form.preview_frame(schedules, method, values, schedule_form.n_train(the_pair), plan)
        schedule_form.show_preview(frame)

# ---- live ------------------------------------------------------------------------------------------
with tab_live:
    active = runs.active_runs(store)
    watched = st.session_state.get("watch_run")
    choices = list(active["id"])
    if watched and watched not in choices:
        choices = [watched] + choices
    if not choices:
        recent = store.list_runs(limit=1)
        choices = list(recent["id"])
    if not choices:
        st.info("No run yet: start one in the **Start a run** tab.")
    else:
        names = dict(zip(choices, run_table.unique_labels([store.get_run(r) for r in choices])))
        run_id = st.selectbox("Run", choices, key="live_run", format_func=lambda r: names.get(r, r))
        is_active = not runs.is_final(get_status(run_id, store=store)["state"])

        @st.fragment(run_every=1.0 if is_active else None)
        def live(run_id: str) -> None:
            with ui.guard("read the run"):
                run = get_status(run_id, store=store)
                steps = store.metrics(run_id, "step")
                total = run.get("total_steps")  # written by the runner when it starts
                done = int(run.get("step") or 0)
                top = st.columns([3, 1])
                label = (
                    f"{run['state']} · step {done}"
                    + (f" of {total}" if total else "")
                    + f" · epoch {run.get('epoch') or 0} of {run['config'].get('epochs')}"
                )
                owner = runs.owner_text(store, run_id) if run["state"] == "running" else None
                label += f" · {owner}" if owner else ""
                top[0].progress(min(done / total, 1.0) if total else 0.0, text=label)
                if not runs.is_final(run["state"]):
                    if top[1].button("Cancel run", key=f"cancel_{run_id}", type="secondary"):
                        cancel(run_id, store=store)
                        st.toast(f"Cancelling {run_id}: it stops at its next step.")
                elif run["state"] == "completed":
                    top[1].success("Completed", icon=":material/check_circle:")
                else:
                    top[1].warning(run["state"].capitalize(), icon=":material/stop_circle:")
                if run.get("error") and run["state"] != "completed":
                    st.caption(run["error"])
                if len(steps):
                    last = steps.iloc[-1]
                    comps = [c for c in steps.columns if run_figures.is_loss_column(c)]
                    cols = st.columns(min(len(comps), 6))
                    for i, c in enumerate(comps[:6]):
                        cols[i].metric(c, f"{last[c]:.4g}")  # 4 significant digits: small losses stay readable
                    ui.show_figure(
                        run_figures.loss_components(steps, smooth=3),
                        f"live_loss_{run_id}",
                        caption="Each component before its weight in the objective (rolling mean of 3 steps).",
                    )
                    sched_fig = run_figures.scheduled_values(steps)
                    if sched_fig is not None:
                        ui.show_figure(
                            sched_fig,
                            f"live_sched_{run_id}",
                            caption="The values each step used: scheduled, or learned (CTKD's temperature).",
                        )
                epochs = store.metrics(run_id, "epoch")
                if len(epochs[epochs["epoch"] > 0]) if len(epochs) else False:
                    ui.show_figure(
                        run_figures.epoch_metrics(epochs, teacher_acc=(run["summary"] or {}).get("teacher_val_acc")),
                        f"live_epochs_{run_id}",
                    )
                    for i, fig in enumerate(strategy_figures(run, epochs)):  # byot exits, education grades
                        ui.show_figure(fig, f"live_strategy_{run_id}_{i}")
                    for i, fig in enumerate(onpolicy_figures(run, steps, epochs)):  # on-policy and seqkd/hybrid
                        ui.show_figure(fig, f"live_onpolicy_{run_id}_{i}", caption=onpolicy_caption(run))
                chain_view.show_chain(store, run, f"live_{run_id}")  # TAKD, DGKD, BAN: the stages
                procedure_view.show_procedure(store, run, f"live_{run_id}")  # blockwise, pwkd, zskt
                if runs.is_final(run["state"]) and is_active:
                    st.rerun()  # the job ended: redraw the page, polling off

        live(run_id)

# ---- runs and reports ------------------------------------------------------------------------------
with tab_runs:
    all_runs = run_table.runs_table(store)
    if not len(all_runs):
        st.info("No run yet.")
    else:
        st.caption(
            "Select rows to compare runs; select one to see its curves and download its report. "
            "T and λ are empty for objectives without them; the accuracy is the last epoch's, on validation."
        )
        picked = st.dataframe(
            all_runs,
            hide_index=True,
            on_select="rerun",
            selection_mode="multi-row",
            key="runs_table",
            height=260,
            column_config={
                "final val acc": st.column_config.NumberColumn(format="percent"),
                "T": st.column_config.NumberColumn(format="%g"),
                "λ": st.column_config.NumberColumn(format="%g"),
            },
        )
        ids = [all_runs.iloc[i]["id"] for i in picked.selection.rows] if picked and picked.selection else []
        if len(ids) >= 2:
            with ui.guard("compare the runs"):
                st.dataframe(compare(ids, store=store), hide_index=True)
                labels = run_table.unique_labels([store.get_run(r) for r in ids])
                curves = {lab: store.metrics(r, "epoch") for lab, r in zip(labels, ids)}
                ui.show_figure(run_figures.compare_curves(curves, "val_acc"), "compare_val_acc")
        if ids:
            rid = ids[-1]
            with ui.guard("show the run"):
                st.markdown(f"**Run {rid}**")
                chain_view.show_chain(store, store.get_run(rid), f"run_{rid}")
                procedure_view.show_procedure(store, store.get_run(rid), f"run_{rid}")
                for i, fig in enumerate(report.run_figures_for(store, rid)):
                    ui.show_figure(fig, f"run_{rid}_{i}")
                ui.html_download(
                    st,
                    "Download the run report (HTML)",
                    lambda: report.run_report(store, rid),
                    f"kdwb-run-{rid}.html",
                    f"report_{rid}",
                    type="primary",
                    help="One self-contained file: config, metrics, curves (opens offline).",
                )
                if store.get_run(rid)["state"] == "completed":
                    st.button(
                        "Analyse this student on every page",
                        key=f"reopen_{rid}",
                        on_click=reopen_student,
                        args=(rid,),
                        icon=":material/open_in_new:",
                        help="Sets the sidebar to **Student of a finished run** with this run, whatever its pair.",
                    )

# ---- protocols -------------------------------------------------------------------------------------
with tab_protocol:
    st.markdown(
        "A protocol queues the same job over several settings and seeds, with the student alone as the "
        "baseline, and summarises each variant as mean ± std over seeds."
    )
    with st.form("protocol"):
        c1, c2, c3 = st.columns(3)
        p_pair = c1.selectbox("Pair", sample_names, index=sample_names.index(sample_default), key="proto_pair")
        p_kind = c2.selectbox("Sweep", ["temperature", "λ", "none (objective vs baseline)"], key="proto_kind")
        p_obj = c3.selectbox(
            "Method",
            [m.name for m in all_methods() if m.takes("temperature")],
            key="proto_objective",
            format_func=runs.method_label,
            help="Methods with a temperature (λ sweeps: KD only).",
        )
        c1, c2, c3, c4 = st.columns(4)
        p_values = c1.text_input("Values", "1, 4, 8", key="proto_values", help="Comma-separated T or λ values.")
        p_seeds = c2.number_input("Seeds", 1, 10, 2, key="proto_seeds")
        p_epochs = c3.number_input("Epochs", 1, 100, 2, key="proto_epochs")
        p_train = c4.number_input("Training samples (0 = all)", 0, 1_000_000, 512, key="proto_train")
        go = st.form_submit_button("Queue the protocol")
    if go:
        with ui.guard("queue the protocol"):
            try:
                values = [float(v) for v in p_values.replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise ValueError(f"The values must be numbers separated by commas. Got {p_values!r}.") from None
            base = JobConfig(
                pair=p_pair,
                objective=p_obj,
                epochs=int(p_epochs),
                train_size=int(p_train) or None,
                device=state.device(),
            )
            pid = runs.start_protocol(
                store,
                base,
                temperatures=values if p_kind == "temperature" else (),
                lams=values if p_kind == "λ" else (),
                seeds=range(int(p_seeds)),
            )
            st.success(f"Protocol {pid} queued.", icon=":material/check_circle:")
    metas = runs.protocols(store)
    if metas:
        labels = {m["id"]: f"{m['id']} · {m['pair']} · {m['objective']} · {len(m['runs'])} runs" for m in metas}
        pid = st.selectbox("Protocol", list(labels), format_func=labels.get, key="proto_pick")
        meta = next(m for m in metas if m["id"] == pid)
        proto_active = runs.protocol_status(store, meta)[1] < len(meta["runs"])

        @st.fragment(run_every=2.0 if proto_active else None)
        def protocol_view(meta: dict) -> None:
            with ui.guard("summarise the protocol"):
                table, done, total = runs.protocol_status(store, meta)
                st.progress(done / total, text=f"{done} of {total} runs finished")
                st.dataframe(table.drop(columns=["run_ids"], errors="ignore"), hide_index=True)
                if st.button(
                    "Cancel the protocol's remaining runs", key=f"proto_cancel_{meta['id']}", disabled=done == total
                ):
                    for r in meta["runs"]:
                        cancel(r["run_id"], store=store)
                if done == total and proto_active:
                    st.rerun()

        protocol_view(meta)
