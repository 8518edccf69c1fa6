"""Run every check over a run and collect the findings."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kdcore.doctor.context import Context, RunRecord, Skip
from kdcore.doctor.findings import SEVERITIES, Report
from kdcore.doctor.registry import CHECKS, Check

if TYPE_CHECKING:
    from kdcore.adapters.base import ModelAdapter
    from kdcore.data.base import Dataset
    from kdcore.jobs.store import RunStore
    from kdcore.pairs import Pair

log = logging.getLogger("kdcore.doctor")


def diagnose_run(
    record: RunRecord,
    *,
    pair: Pair | None = None,
    teacher: ModelAdapter | None = None,
    student: ModelAdapter | None = None,
    dataset: Dataset | None = None,
    student_baseline: ModelAdapter | None = None,
    checks: Iterable[str] | None = None,
    notes: dict | None = None,
) -> Report:
    """Diagnose a run given in memory (its record, and the models and data when available).

    record:           the run's config, metrics and state (`RunRecord`)
    pair:             a Pair whose teacher, dataset and student_baseline are used (its student is taken as
                      the run's trained student unless `student` is given)
    teacher, student, dataset, student_baseline: override the pair's (or give them without a pair)
    checks:           ids of the checks to run (default: all, `kdcore.doctor.CHECK_IDS`)
    Returns a Report: findings most serious first; `report.checks[id]` says "ran" or "skipped: why".
    """
    if not isinstance(record, RunRecord):
        raise ValueError(
            f"The 'record' argument of diagnose_run must be a kdcore.doctor.RunRecord. "
            f"Got {type(record).__name__} instead."
        )
    chosen = _select(checks)
    if pair is not None:
        teacher = teacher if teacher is not None else pair.teacher
        student = student if student is not None else pair.student
        dataset = dataset if dataset is not None else pair.dataset
        student_baseline = student_baseline if student_baseline is not None else pair.student_baseline
    ctx = Context(record, teacher, student, dataset, student_baseline, dict(notes or {}))
    report = Report(record.run_id)
    for check in chosen:
        try:
            finding = check.fn(ctx)
            report.checks[check.id] = "ran"
        except Skip as why:
            report.checks[check.id] = f"skipped: {why}"
            continue
        except Exception as exc:  # noqa: BLE001 — one broken check must not hide the others' findings
            log.exception("doctor check %s failed", check.id)
            report.checks[check.id] = f"failed: {type(exc).__name__}: {exc}"
            continue
        if finding is not None:
            report.findings.append(finding)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    report.findings.sort(key=lambda f: rank[f.severity])  # stable: registry order within a severity
    return report


def _select(checks: Iterable[str] | None) -> list[Check]:
    if checks is None:
        return list(CHECKS)
    wanted = list(checks)
    known = {c.id: c for c in CHECKS}
    bad = [c for c in wanted if c not in known]
    if bad:
        raise ValueError(f"The 'checks' argument names unknown check(s) {bad}. Known checks: {', '.join(known)}.")
    return [known[c] for c in wanted]


def load_record(store: RunStore, run_id: str) -> RunRecord:
    """A run's record from the store, with the newest completed student-alone ('ce') run of the same
    pair and the same budget (capacity.BUDGET: epochs, training size, lr, seed, ...), if any."""
    run = store.get_run(run_id)
    return RunRecord(
        config=run["config"],
        steps=store.metrics(run_id, "step"),
        epochs=store.metrics(run_id, "epoch"),
        checkpoints=store.metrics(run_id, "checkpoint"),
        state=run["state"],
        error=run.get("error"),
        summary=run.get("summary"),
        run_id=run_id,
        baseline=_same_budget_baseline(store, run),
    )


def _same_budget_baseline(store: RunStore, run: dict[str, Any]) -> dict[str, Any] | None:
    from kdcore.doctor.capacity import same_budget

    for other in store.list_runs(state="completed").itertuples():
        if other.id == run["id"] or other.pair != run["pair"] or other.objective != "ce":
            continue
        full = store.get_run(other.id)
        if same_budget(run["config"] or {}, full["config"] or {}):
            summary = full.get("summary") or {}
            return {
                "run_id": other.id,
                "config": full["config"],
                **{k: summary.get(k) for k in ("final_val_acc", "final_val_loss")},
            }
    return None


def _run_pair(config: dict) -> Pair:
    """The pair a run trained on, as the runner loads it (a registered pair, or a user's own directories or factories)."""
    from kdcore.jobs.config import JobConfig
    from kdcore.jobs.pair_source import pair_for_config
    from kdcore.jobs.resolve import resolve_pair

    if config.get("teacher") or config.get("teacher_factory"):
        return pair_for_config(JobConfig.from_dict(config))
    return resolve_pair(config.get("pair", ""))


def diagnose(
    run_id: str, *, store: RunStore | None = None, pair: Pair | None = None, checks: Iterable[str] | None = None
) -> Report:
    """Diagnose a run of the run store: its config, metrics and final student, with its pair.

    run_id: the run's id (`python -m kdcore runs list`)
    store:  a RunStore (default: the one in $KDWB_HOME)
    pair:   the run's pair (default: loaded from the run's config, as the runner does); its student is
            re-initialised from the run's saved weights
    """
    from kdcore.jobs.store import RunStore
    from kdcore.weights import apply_state_dict

    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"The 'run_id' argument of diagnose must be a run id string. Got {run_id!r} instead.")
    store = store if store is not None else RunStore()
    record = load_record(store, run_id)
    notes: dict = {}
    if pair is None:
        try:
            pair = _run_pair(record.config)
        except Exception as exc:  # noqa: BLE001 — checks that need no models still run
            notes["pair"] = f"the pair {record.config.get('pair')!r} could not be loaded: {exc}"
    student = None
    if pair is not None:
        epochs = store.checkpoints(run_id)
        for epoch in (None, *reversed(epochs)):
            try:
                state = store.load_student(run_id, epoch=epoch)
            except Exception:  # noqa: BLE001 — no such file: try the next one
                continue
            student = pair.student.clone()
            apply_state_dict(student.model, state)
            break
        if student is None:
            notes["student"] = "the run saved no student weights"
    return diagnose_run(
        record,
        teacher=pair.teacher if pair else None,
        student=student,
        dataset=pair.dataset if pair else None,
        student_baseline=pair.student_baseline if pair else None,
        checks=checks,
        notes=notes,
    )
