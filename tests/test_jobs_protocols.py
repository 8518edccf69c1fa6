"""Protocols: the plan of variants and seeds, and the mean ± std table."""

import numpy as np
import pandas as pd
import pytest

from kdcore.jobs import (
    JobConfig,
    RunStore,
    protocol_configs,
    protocol_status,
    protocol_table,
    queue_protocol,
    run_protocol,
)
from tests.helpers.toys import TOY


def test_protocol_plan_expands_variants_and_seeds():
    base = JobConfig(pair=TOY, objective="kd", epochs=1)
    plan = protocol_configs(base, temperatures=[1, 4], lams=[0.5], seeds=[0, 1])
    assert [(v, c.seed) for v, c in plan] == [
        ("baseline (student alone)", 0),
        ("baseline (student alone)", 1),
        ("kd T=1", 0),
        ("kd T=1", 1),
        ("kd T=4", 0),
        ("kd T=4", 1),
        ("kd λ=0.5", 0),
        ("kd λ=0.5", 1),
    ]
    assert plan[0][1].objective == "ce" and plan[2][1].temperature == 1.0 and plan[6][1].lam == 0.5
    with pytest.raises(ValueError, match="λ sweep"):
        protocol_configs(JobConfig(objective="dkd"), lams=[0.5])
    with pytest.raises(ValueError, match="temperature"):
        protocol_configs(JobConfig(objective="normkd"), temperatures=[2])


def test_protocol_table_is_mean_and_std_over_seeds_of_best_and_final(data_dir):
    store = RunStore()
    curves = {
        ("a", 0): [0.2, 0.6, 0.5],
        ("a", 1): [0.3, 0.4, 0.45],
        ("a", 2): [0.1, 0.7, 0.7],
        ("b", 0): [0.9, 0.8, 0.1],
    }
    rows = []
    for (variant, seed), accs in curves.items():
        rid = store.create_run(JobConfig(seed=seed), state="completed")
        store.update_run(rid, summary={"metric": "val_acc"})
        store.log_metrics(rid, [("epoch", e, e, "val_acc", a) for e, a in enumerate(accs, 1)])
        rows.append({"variant": variant, "seed": seed, "run_id": rid})
    table = protocol_table(store, pd.DataFrame(rows)).set_index("variant")
    best, final = np.array([0.6, 0.45, 0.7]), np.array([0.5, 0.45, 0.7])
    assert table.loc["a", "n_seeds"] == 3
    assert table.loc["a", "best_mean"] == pytest.approx(best.mean()) and table.loc["a", "best_std"] == pytest.approx(
        best.std(ddof=1)
    )
    assert table.loc["a", "final_mean"] == pytest.approx(final.mean()) and table.loc["a", "final_std"] == pytest.approx(
        final.std(ddof=1)
    )
    assert table.loc["a", "best"] == f"{best.mean():.4f} ± {best.std(ddof=1):.4f}"
    assert table.loc["b", "best_mean"] == pytest.approx(0.9) and np.isnan(table.loc["b", "best_std"])
    assert table.loc["b", "final"] == "0.1000 (1 seed)"


def test_run_protocol_end_to_end(data_dir):
    res = run_protocol(
        JobConfig(pair=TOY, objective="kd", epochs=1, batch_size=128, val_size=64, probe_size=16),
        temperatures=[2.0],
        seeds=[0, 1],
        store=RunStore(),
    )
    assert list(res.table["variant"]) == ["baseline (student alone)", "kd T=2"]
    assert (res.runs["state"] == "completed").all() and len(res.runs) == 4
    assert (res.table["n_seeds"] == 2).all() and res.table["final_std"].notna().all()


def test_run_protocol_records_its_runs_as_one_protocol_in_the_store(data_dir):
    store = RunStore()
    res = run_protocol(
        JobConfig(pair=TOY, objective="kd", epochs=1, batch_size=128, val_size=64, probe_size=16),
        temperatures=[2.0],
        seeds=[0],
        store=store,
    )
    proto = store.get_protocol(res.protocol_id)
    assert proto["pair"] == TOY and proto["temperatures"] == [2.0] and proto["seeds"] == [0]
    pd.testing.assert_frame_equal(store.protocol_runs(res.protocol_id), res.runs)
    table, done, total = protocol_status(store, res.protocol_id)
    assert (done, total) == (2, 2)
    pd.testing.assert_frame_equal(table, res.table)


def test_a_queued_protocol_is_found_again_from_the_store(data_dir):
    """What the app's Protocols tab shows comes from the store: membership, progress, table."""
    from app import runs as app_runs

    store = RunStore()
    pid = queue_protocol(
        JobConfig(pair=TOY, objective="kd", epochs=1), lams=[0.5, 0.9], seeds=[0, 1], store=store, start_worker=False
    )
    members = store.protocol_runs(pid)
    assert members["variant"].tolist() == ["baseline (student alone)"] * 2 + ["kd λ=0.5"] * 2 + ["kd λ=0.9"] * 2
    assert members["seed"].tolist() == [0, 1] * 3 and (members["state"] == "queued").all()
    assert [store.get_run(r)["config"]["seed"] for r in members["run_id"]] == [0, 1] * 3
    for rid in members["run_id"][:2]:
        store.set_state(rid, "completed")
    status = protocol_status(store, pid)
    assert (status.done, status.total) == (2, 6) and len(status.table) == 3
    metas = app_runs.protocols(store)
    assert [m["id"] for m in metas] == [pid] and len(metas[0]["runs"]) == 6
    assert app_runs.protocol_status(store, metas[0])[1:] == (2, 6)
