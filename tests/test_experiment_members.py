"""run_members: members run in order, each announced, rows appended; a cancelled run stops the rest."""

from __future__ import annotations

import pytest

from kdcore.jobs import JobConfig, experiment_store


@pytest.mark.parametrize("cancel_at", [None, 1])
def test_members_run_in_order_announced_and_stop_at_a_cancel(monkeypatch, cancel_at):
    calls: list[tuple] = []

    def fake_member(store, eid, variant, config, pair, *, callback=None, cancel=None):
        calls.append((store, eid, variant, config.seed, pair, cancel))
        state = "cancelled" if len(calls) - 1 == cancel_at else "completed"
        return {"variant": variant, "seed": config.seed, "run_id": f"r{len(calls)}", "state": state}

    monkeypatch.setattr(experiment_store, "run_member", fake_member)
    jobs = [(f"v{i}", JobConfig(pair="digits", seed=10 + i), f"pair{i}") for i in range(3)]
    events: list[dict] = []
    rows: list[dict] = [{"variant": "earlier"}]
    ok = experiment_store.run_members("S", "E", jobs, rows, callback=events.append, cancel="C")
    n = 3 if cancel_at is None else cancel_at + 1
    assert ok is (cancel_at is None)
    assert calls == [("S", "E", f"v{i}", 10 + i, f"pair{i}", "C") for i in range(n)]
    assert events == [{"event": "experiment_run", "index": 1 + i, "variant": f"v{i}", "seed": 10 + i} for i in range(n)]
    assert [r["run_id"] for r in rows[1:]] == [f"r{i + 1}" for i in range(n)]


def test_each_experiment_spec_writes_its_fields_as_json():
    """PlanSpec, CapacitySpec and AcrossSpec share one writer: every field by name, tuples as lists, the
    selection rule as a dict; JSON round-trips it unchanged."""
    import dataclasses
    import json

    from kdcore.jobs.across import AcrossSpec
    from kdcore.jobs.capacity_study import CapacitySpec
    from kdcore.jobs.experiment import PlanSpec
    from kdcore.jobs.sweeps import SelectionRule

    rule = SelectionRule(metric="final", ties="higher", tolerance=0.01)
    plan = PlanSpec("digits", seeds=(3, 4), temperatures=(1.0, 8.0), lams=(0.2, 0.7), rule=rule, budget={"epochs": 2})
    assert plan.to_dict() == {
        "pair": "digits",
        "seeds": [3, 4],
        "temperatures": [1.0, 8.0],
        "lams": [0.2, 0.7],
        "lam": None,
        "rule": {"metric": "final", "ties": "higher", "tolerance": 0.01},
        "budget": {"epochs": 2},
    }
    across = AcrossSpec("dkd", pairs=("digits", "shapes"), seeds=(1,), recipe="digits")
    capacity = CapacitySpec("shapes", seeds=(0,), temperatures=(2.0,), lam=0.5)
    for spec in (plan, across, capacity):
        written = spec.to_dict()
        assert list(written) == [f.name for f in dataclasses.fields(spec)]
        assert json.loads(json.dumps(written)) == written
    assert across.to_dict()["pairs"] == ["digits", "shapes"] and capacity.to_dict()["temperatures"] == [2.0]
