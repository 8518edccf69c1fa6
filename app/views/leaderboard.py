"""Leaderboard: every method of the table on one pair, the same budget and seeds, side by side with the
student alone (kdcore.jobs.leaderboard). The runs train on the background worker; the leaderboard is
kept in the run store, so the same settings asked again, or the page opened again, read it at once."""

import streamlit as st

import sample_models
from analyses import leaderboard as board_figure
from app import runs, state, ui
from kdcore.jobs import JobConfig, cancel
from kdcore.jobs.config import SCHEDULES
from kdcore.jobs.leaderboard import leaderboard_status, queue_leaderboard
from kdcore.jobs.leaderboard_cache import leaderboards
from kdcore.jobs.recipes import pair_recipe
from kdcore.jobs.store import FINAL_STATES
from kdcore.methods import get_method, methods_for

ui.intro(
    "Leaderboard: which method distils best on this pair?",
    "Every distillation method of the method table that fits the pair's task is trained on the **same budget** "
    "(the pair's recipe: epochs, training samples, learning rate, schedule, batch size) and the **same seeds**, "
    "next to the student trained alone on the labels (*ce*, always run as the floor). Each method keeps its own "
    "parameter defaults; methods matching features (feature_l2, at) match the deepest default layers. The table "
    "gives the validation metric's mean ± std over seeds at the best and at the final epoch, the gain over the "
    "student alone with its 95 % interval, and the training seconds per run; the chart draws the same numbers "
    "as bars with error bars, like the tables of the methods' papers. The runs go to the background worker: "
    "leave the page and come back. A leaderboard is kept in the run store: asking again with the same settings "
    "reads it instead of training, and runs already done with the same config and seed are reused.",
    "A gain whose interval includes 0 is not a gain at this budget: add seeds before believing it. Methods "
    "that rank high at the best epoch but fall at the final one are unstable late in training. The ranking is "
    "this pair's, at this budget: a longer budget or another pair can reorder it.",
    [
        r"\text{mean} \pm \text{std} = \bar v \pm \sqrt{\tfrac{1}{S-1}\textstyle\sum_s (v_s - \bar v)^2}"
        r"\quad\text{over seeds } s = 1..S",
        r"\text{gain} = \tfrac{1}{S}\textstyle\sum_s \big(v_s^{\text{method}} - v_s^{\text{student alone}}\big)"
        r"\ \pm\ t_{0.975,\,S-1}\,\tfrac{\text{sd}}{\sqrt S}",
    ],
    expanded=False,
)

store = state.store()
sample_names = state.sample_pair_names()
current = state.sample_name(state.pair_key())
if current is None and st.session_state.get("pair_source") == "Your own models":
    st.caption(
        "Your own models are not offered here: the worker loads a pair by its name. Register them as a pair "
        "(README: Bringing your own models) to rank methods on them."
    )


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(";", ",").split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"The seeds must be whole numbers separated by commas, e.g. 0, 1, 2. Got {text!r}.") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"Give at least one seed, each ≥ 0 (e.g. 0, 1, 2). Got {text!r}.")
    return seeds


def _budget_form(pair: str) -> dict:
    """The budget fields, starting from the pair's recipe (JobConfig's defaults without one); keyed per pair."""
    recipe = pair_recipe(pair)
    default = recipe if recipe is not None else JobConfig()
    c1, c2, c3, c4, c5 = st.columns(5)
    epochs = c1.number_input("Epochs", 1, 500, int(default.epochs), key=f"board_epochs_{pair}")
    train = c2.number_input(
        "Training samples (0 = all)", 0, 1_000_000, int(default.train_size or 0), key=f"board_train_{pair}"
    )
    lr = c3.number_input("Learning rate", 1e-5, 1.0, float(default.lr), format="%.4f", key=f"board_lr_{pair}")
    batch = c4.number_input("Batch size", 1, 1024, int(default.batch_size), key=f"board_batch_{pair}")
    schedule = c5.selectbox(
        "Schedule", SCHEDULES, index=SCHEDULES.index(default.schedule), key=f"board_schedule_{pair}"
    )
    budget = {"epochs": int(epochs), "train_size": int(train) or None, "lr": float(lr), "batch_size": int(batch)}
    return {**budget, "schedule": schedule, "device": state.device()}


# ---- ask for a leaderboard -------------------------------------------------------------------------------
with st.container(border=True):
    c1, c2 = st.columns([1, 3])
    pair = c1.selectbox(
        "Pair",
        sample_names,
        index=sample_names.index(current) if current in sample_names else 0,
        key="board_pair",
        format_func=state.describe_sample_pair,
        help="A sample pair; the sidebar's pair (or the pair of its run) is chosen first.",
    )
    task = state.pair_from_key(("sample", pair)).dataset.task
    offered = [m.name for m in methods_for(task) if m.name != "ce"]
    with st.form(f"board_form_{pair}"):
        methods = st.multiselect(
            "Methods (the student alone, ce, is always run)",
            offered,
            default=offered,
            key=f"board_methods_{pair}",
            help="Every method of the table that fits this pair's task (`python -m kdcore methods` lists them).",
        )
        seeds_text = st.text_input("Seeds", "0, 1, 2", key=f"board_seeds_{pair}", help="Comma-separated seeds.")
        budget = _budget_form(pair)
        st.caption(runs.recipe_note(pair, pair_recipe(pair)))
        started = st.form_submit_button("Run the leaderboard", type="primary", icon=":material/leaderboard:")
    if started:
        with ui.guard("start the leaderboard"):
            seeds = _seeds(seeds_text)
            if not methods:
                raise ValueError("Choose at least one method to set against the student alone.")
            pid = queue_leaderboard(pair, methods, seeds, base=budget, store=store)
            members = store.protocol_runs(pid)
            done, total = int(members["state"].isin(FINAL_STATES).sum()), len(members)
            st.session_state["board_pick"] = pid
            if done == total:
                st.success(
                    "Read from the run store: this leaderboard was run before with these settings, nothing trained.",
                    icon=":material/bolt:",
                )
            else:
                st.success(
                    f"{total} runs ({len(methods) + 1} methods × {len(seeds)} seeds; {done} already done and "
                    "reused) go to the background worker: progress below.",
                    icon=":material/check_circle:",
                )


# ---- the stored leaderboards -------------------------------------------------------------------------------
def _label(meta: dict) -> str:
    budget = meta.get("budget") or {}
    return (
        f"{meta['pair']} · ce + {len(meta.get('methods') or []) - 1} methods · seeds {meta.get('seeds')} · "
        f"{budget.get('epochs')} epochs · {meta['id']}"
    )


def _shown(table):
    """The leaderboard's columns as the page shows them, best rank first."""
    cols = {
        "rank": "rank",
        "method": "method",
        "n_seeds": "seeds",
        "best": "best epoch (mean ± std)",
        "final": "final epoch (mean ± std)",
        "gain": "gain over the student alone [95 % CI]",
        "wall_s": "s per run",
    }
    out = table.sort_values("rank", na_position="last")[list(cols)].rename(columns=cols)
    out["what it is"] = [get_method(m).help for m in out["method"]]
    return out


@st.cache_data(max_entries=16, show_spinner=False)
def _finished_status(pid: str, home: str, runs_and_states: tuple, metric: str | None):
    """A finished leaderboard's status, kept while its runs and their states stay the same (instant reopen)."""
    return leaderboard_status(store, pid, metric)


def board_status(pid: str, metric: str | None):
    """(result, runs finished, runs in all): read from the store, or from the cache once every run is final."""
    members = store.protocol_runs(pid)
    if members["state"].isin(FINAL_STATES).all():
        key = tuple(zip(members["run_id"], members["state"]))
        return _finished_status(pid, str(store.root), key, metric)
    return leaderboard_status(store, pid, metric)


# what a language-model leaderboard can rank by (kdcore.jobs.leaderboard's metric); classifiers: val_acc
LM_METRICS = {
    "heldout_em": "held-out exact match (greedy completions of the test prompts, %)",
    "val_loss": "validation loss (next-token cross-entropy, lower is better)",
}


def language_model_board(meta: dict) -> bool:
    """Whether a leaderboard's pair is a causal language model, without loading it: a sample pair's task
    from the sample manifest; another pair's (a module:factory or registered pair's board made on the command
    line) from its runs, where a finished causal-LM run records its held-out exact match."""
    task = sample_models.manifest()["pairs"].get(meta["pair"], {}).get("task")
    if task is not None:
        return task == "causal_lm"
    ids = [r["run_id"] for r in meta["runs"] if r.get("run_id")]
    return any("final_heldout_em" in (store.get_run(i).get("summary") or {}) for i in ids)


def rank_metric(meta: dict) -> str | None:
    """The metric a leaderboard is ranked by: the user's choice for a language model, None (each run's own:
    validation accuracy) for a classifier."""
    if not language_model_board(meta):
        return None
    return st.radio(
        "Rank by",
        list(LM_METRICS),
        format_func=LM_METRICS.get,
        horizontal=True,
        key="board_metric",
        help="Validation loss measures how well the student predicts the next token of held-out text; held-out "
        "exact match whether its greedy continuation of a test prompt is the reference, the task's real answer. "
        "Runs started with held-out prompts off (0) have no exact match and drop out of that ranking.",
    )


boards = leaderboards(store)
if not boards:
    st.info("No leaderboard yet: choose the methods above and press **Run the leaderboard**.", icon=":material/info:")
else:
    labels = {m["id"]: _label(m) for m in boards}
    if st.session_state.get("board_pick") not in labels:
        st.session_state.pop("board_pick", None)
    pid = st.selectbox("Leaderboard", list(labels), format_func=labels.get, key="board_pick")
    meta = next(m for m in boards if m["id"] == pid)
    board_active = any(r.get("state") not in FINAL_STATES for r in meta["runs"])

    metric = rank_metric(meta)

    @st.fragment(run_every=2.0 if board_active else None)
    def show_board(pid: str) -> None:
        with ui.guard("show the leaderboard"):
            res, done, total = board_status(pid, metric)
            running = res.runs[res.runs["state"] == "running"]
            now = f" · training {running.iloc[0]['variant']} seed {running.iloc[0]['seed']}" if len(running) else ""
            st.progress(done / total if total else 1.0, text=f"{done} of {total} runs finished{now}")
            if done < total and st.button("Cancel the remaining runs", key=f"board_cancel_{pid}"):
                for r in res.runs.itertuples():
                    if r.state not in FINAL_STATES:
                        cancel(r.run_id, store=store)
            budget = ", ".join(f"{k} {v}" for k, v in res.budget.items() if v is not None and k != "checkpoints")
            st.caption(f"Budget of every run: {budget}.")
            finished = res.table[res.table["n_seeds"] > 0]
            if len(finished):
                st.dataframe(_shown(res.table), hide_index=True)
                total_s = float((res.table["wall_s"].fillna(0) * res.table["n_seeds"]).sum())
                st.caption(f"Training time of the finished runs: {total_s:.1f} s in all.")
                ui.show_figure(
                    board_figure.figure(res.table, pair=meta["pair"]),
                    f"board_{pid}",
                    caption="Bars: mean over seeds at the best and the final epoch; error bars: ± 1 std over "
                    "seeds; dashed line: the student alone at its best epoch; labels: gain over it.",
                )
            if done == total and board_active:
                st.rerun()  # finished: redraw the page, polling off

    show_board(pid)
