"""kdcore.doctor: checks over a distillation run and its pair -> findings with evidence and a fix.

    from kdcore.doctor import diagnose
    report = diagnose("20250101-120000-abc123")            # a run of the run store
    for f in report.findings:
        print(f.severity, f.title, f.evidence, f.fix)

`diagnose_run(RunRecord(...), pair=...)` does the same on a record built in memory (a run trained
elsewhere, or a test). Each check is one function in a small module per family (soft_labels,
balance, teacher, capacity, overfitting, optimisation, progress, language, inputs), listed in
`registry.CHECKS`.

JSON form (`Report.to_dict()`, printed by `python -m kdcore doctor RUN_ID --json`), stable:

    {
      "run_id": str | null,
      "findings": [                                   # most serious first
        {"id": str,                                   # a check id, e.g. "soft_labels.one_hot" (CHECK_IDS)
         "severity": "error" | "warning" | "info",
         "title": str,                                # one plain-language sentence
         "evidence": {name: number | string | bool | null},   # floats to 6 significant digits
         "fix": str}                                  # what to change, with values where possible
      ],
      "checks": {check_id: "ran" | "skipped: <why>" | "failed: <error>"}   # every check, in order
    }

A check that finds nothing adds no finding; a check that lacks what it needs (no models, no
per-step metrics, not a language model, ...) is "skipped" with the reason. Figures are not part of
the JSON: `Finding.figure` holds their numbers and `analyses.doctor.figure` draws them.
"""

from kdcore.doctor.context import Context, RunRecord, Skip
from kdcore.doctor.diagnose import diagnose, diagnose_run, load_record
from kdcore.doctor.findings import SEVERITIES, FigureData, Finding, Report
from kdcore.doctor.registry import CHECK_IDS, CHECKS, Check

__all__ = [
    "diagnose",
    "diagnose_run",
    "load_record",
    "RunRecord",
    "Context",
    "Skip",
    "Finding",
    "FigureData",
    "Report",
    "SEVERITIES",
    "CHECKS",
    "CHECK_IDS",
    "Check",
]
