"""AppTest of the Leaderboard page: it offers every method of the table that fits the pair, queues the
leaderboard on the worker (here run in this process on a tiny budget), shows progress, then the table
and the chart with the stored numbers; the same settings asked again are read, not trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.apptest import open_page
from tests.helpers.figdata import arr


@pytest.fixture
def home(tmp_path, monkeypatch):
    from kdcore.jobs import worker

    monkeypatch.setenv("KDWB_HOME", str(tmp_path))
    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # queue only
    return tmp_path


def _open(**state) -> AppTest:
    return open_page("leaderboard", **{"sample_pair": "digits", "probe_size": 32, **state})


def _ask(at: AppTest, methods: list[str], seeds: str) -> AppTest:
    at.multiselect(key="board_methods_digits").set_value(methods)
    at.text_input(key="board_seeds_digits").set_value(seeds)
    at.number_input(key="board_epochs_digits").set_value(1)
    at.number_input(key="board_train_digits").set_value(32)
    at.number_input(key="board_batch_digits").set_value(32)
    next(b for b in at.button if "Run the leaderboard" in str(b.proto.label)).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_offers_every_fitting_method_and_explains_itself(home):
    from kdcore.jobs.recipes import pair_recipe
    from kdcore.methods import methods_for

    at = _open()
    offered = at.multiselect(key="board_methods_digits")
    fitting = [m.name for m in methods_for("classification") if m.name != "ce"]
    assert offered.options == fitting and offered.value == fitting  # all registered methods, all picked
    assert at.number_input(key="board_epochs_digits").value == pair_recipe("digits").epochs
    assert at.latex and any("same budget" in m.value for m in at.markdown)
    assert any("No leaderboard yet" in i.value for i in at.info)


@pytest.mark.slow  # trains 6 tiny runs and renders the page four times (~10 s)
def test_queue_progress_then_table_and_chart_then_read_back(home):
    from kdcore.jobs import RunStore, worker
    from kdcore.jobs.leaderboard import leaderboard_status

    store = RunStore(home)
    at = _ask(_open(), ["kd", "dkd"], "0, 1")
    assert not at.error, [e.value for e in at.error]
    assert len(store.list_runs(state="queued")) == 6  # ce, kd, dkd × 2 seeds
    assert any("0 of 6 runs finished" in str(p.proto.text) for p in at.get("progress"))
    assert worker.work(store) == 0  # the worker's job, in this process
    at = _open()
    pid = at.selectbox(key="board_pick").value
    res, done, total = leaderboard_status(store, pid)
    assert (done, total) == (6, 6) and list(res.table["n_seeds"]) == [2, 2, 2]
    table = at.dataframe[0].value
    assert list(table["method"]) == list(res.table.sort_values("rank")["method"])
    assert set(table["best epoch (mean ± std)"]) == set(res.table["best"])
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    best = next(t for t in chart["data"] if t.get("name") == "best epoch")
    want = res.table.set_index("method")["best_mean"]
    np.testing.assert_allclose(arr(best["y"]), [want[m] for m in best["x"]])
    assert "Method leaderboard on digits" in chart["layout"]["title"]["text"]
    n_runs = len(store.list_runs())
    at = _ask(at, ["kd", "dkd"], "0, 1")  # the same settings again: read, not queued
    assert len(store.list_runs()) == n_runs and not len(store.list_runs(state="queued"))
    assert any("nothing trained" in s.value for s in at.success)
    assert at.selectbox(key="board_pick").value == pid


def test_bad_seeds_are_explained_in_plain_words(home):
    at = _ask(_open(), ["kd"], "0, one")
    assert at.error and "seeds must be whole numbers" in at.error[0].value


@pytest.mark.parametrize("pair", ["shapes_multilabel", "tinylang"])
def test_page_on_other_tasks_offers_their_methods(home, pair):
    from kdcore.methods import methods_for
    from sample_models import load_pair

    at = _open(sample_pair=pair)
    assert at.selectbox(key="board_pair").value == pair  # the sidebar's pair comes first
    task = load_pair(pair).dataset.task
    assert at.multiselect(key=f"board_methods_{pair}").options == [m.name for m in methods_for(task) if m.name != "ce"]


@pytest.mark.slow  # trains 2 tiny tinylang runs (~5 s)
def test_language_model_leaderboard_ranks_by_heldout_exact_match_or_val_loss(home):
    from kdcore.jobs import RunStore, worker
    from kdcore.jobs.leaderboard import leaderboard_status

    store = RunStore(home)
    at = _open(sample_pair="tinylang")
    at.multiselect(key="board_methods_tinylang").set_value(["token"])
    at.text_input(key="board_seeds_tinylang").set_value("0")
    for key, value in (("epochs", 1), ("train", 16), ("batch", 8)):
        at.number_input(key=f"board_{key}_tinylang").set_value(value)
    next(b for b in at.button if "Run the leaderboard" in str(b.proto.label)).click().run()
    assert not at.exception and worker.work(store) == 0
    at = _open(sample_pair="tinylang")
    assert at.radio(key="board_metric").value == "heldout_em"  # the task's answer, not the objective's loss
    pid = at.selectbox(key="board_pick").value
    for metric in ("heldout_em", "val_loss"):
        at.radio(key="board_metric").set_value(metric).run()
        assert not at.exception, [e.value for e in at.exception]
        want = leaderboard_status(store, pid, metric)[0].table
        assert set(want["metric"]) == {metric}
        table = at.dataframe[0].value
        assert set(table["best epoch (mean ± std)"]) == set(want["best"])
        (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        best = next(t for t in chart["data"] if t.get("name") == "best epoch")
        np.testing.assert_allclose(arr(best["y"]), [want.set_index("method")["best_mean"][m] for m in best["x"]])


def test_a_leaderboard_of_a_pair_outside_the_samples_opens_ranked_by_each_runs_metric(home):
    """A leaderboard run from the command line on a module:factory pair (here a tiny classifier) is listed
    and shown: the page reads the task from the sample manifest, not by loading the pair."""
    from kdcore.jobs import RunStore
    from kdcore.jobs.leaderboard import compare_methods, leaderboard_status
    from tests.helpers.toys import TOY

    store = RunStore(home)
    base = {"epochs": 1, "train_size": 64, "batch_size": 32, "val_size": 32, "checkpoints": 1}
    compare_methods(TOY, ["kd"], [0], base=base, store=store)
    at = _open()
    assert not at.exception, [e.value for e in at.exception]
    assert "board_metric" not in [r.key for r in at.radio]  # a classifier: ranked by its runs' own metric (val_acc)
    pid = at.selectbox(key="board_pick").value
    want = leaderboard_status(store, pid)[0].table
    assert set(at.dataframe[0].value["best epoch (mean ± std)"]) == set(want["best"])
