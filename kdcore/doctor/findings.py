"""What the doctor returns: findings (severity, title, evidence, fix, optional figure data) and a report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdcore.jobs.config import JobConfig

SEVERITIES = ("error", "warning", "info")  # most serious first


@dataclass
class FigureData:
    """Plain numbers for one evidence figure; `analyses.doctor.figure` draws it with plotly.

    kind "lines": one line per series over x; "bars": one bar per x label and series;
    "reliability": x = bin centres, series "accuracy" and "confidence" (a diagonal is drawn).
    """

    kind: str  # "lines" | "bars" | "reliability"
    title: str  # figure title
    x: list  # x values (numbers or labels)
    series: dict[str, list]  # series name -> y values, same length as x
    x_title: str = ""  # x-axis title
    y_title: str = ""  # y-axis title
    marker_x: float | None = None  # a vertical marker (e.g. the run's temperature)
    log_x: bool = False  # logarithmic x axis
    right: tuple[str, ...] = ()  # "lines": series drawn against a second y axis on the right (another scale)
    right_title: str = ""  # that axis's title


# Fields a student-alone run resets (the protocol's baseline does the same): no teacher, no KD term.
ALONE: dict[str, Any] = {
    "objective": "ce",
    "params": {},
    "terms": [],
    "temperature": None,
    "lam": None,
    "ce_weight": None,
    "teacher_cache": False,
    "cache_top_k": None,
}


@dataclass(frozen=True)
class ProposedRun:
    """A fix that is a run: the diagnosed run's config with `changes` applied (the app queues it)."""

    label: str  # what the run is, e.g. "Train twice as long (epochs 6)"
    changes: dict  # config field -> new value

    def config(self, run_config: dict[str, Any]) -> JobConfig:
        """The JobConfig to queue: the diagnosed run's config (a dict, as stored) with the changes."""
        from kdcore.jobs.config import JobConfig

        merged = {**dict(run_config or {}), **self.changes, "name": self.label}
        known = set(JobConfig().to_dict())
        return JobConfig.from_dict({k: v for k, v in merged.items() if k in known})


@dataclass
class Finding:
    """One problem the doctor found, in plain language, with its evidence and a concrete fix."""

    id: str  # stable check id, e.g. "soft_labels.one_hot"
    severity: str  # "error" | "warning" | "info"
    title: str  # one sentence, plain language
    evidence: dict[str, Any]  # name -> number / string / bool (JSON scalars)
    fix: str  # what to change, with values where possible
    figure: FigureData | None = None  # numbers for a figure, when one helps
    runs: list[ProposedRun] = field(default_factory=list)  # fixes that are runs, ready to queue

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"The 'severity' of a Finding must be one of {SEVERITIES}. Got {self.severity!r} instead.")

    def to_dict(self) -> dict:
        """The finding's stable JSON form: id, severity, title, evidence, fix (no figure)."""
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "evidence": {k: _scalar(v) for k, v in self.evidence.items()},
            "fix": self.fix,
        }


@dataclass
class Report:
    """Findings on one run, most serious first, and what happened to each check."""

    run_id: str | None  # the run diagnosed (None for in-memory records)
    findings: list[Finding] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # check id -> "ran" | "skipped: <why>"

    def by_severity(self) -> dict[str, list[Finding]]:
        return {s: [f for f in self.findings if f.severity == s] for s in SEVERITIES}

    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    def get(self, check_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == check_id), None)

    def to_dict(self) -> dict:
        """{"run_id", "findings": [Finding.to_dict()...], "checks": {id: status}} (see kdcore.doctor)."""
        return {"run_id": self.run_id, "findings": [f.to_dict() for f in self.findings], "checks": dict(self.checks)}


def _scalar(v: Any) -> Any:
    """A JSON scalar: floats rounded to 6 significant digits, NaN/inf -> None, tensors/numpy -> Python."""
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else None
    return str(v)
