"""An experiment's report as one self-contained HTML file (tables, figures with plotly.js inlined once,
the spec it ran with), like app/report.py for a run. No Streamlit: usable from a script.

    python -m app.experiment_report EXPERIMENT_ID --out report.html     # $KDWB_HOME's run store
    html = experiment_html(load_report(RunStore(), experiment_id))
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import plotly.io as pio

from analyses import experiments as ex
from app.report import _CSS, _table
from kdcore.jobs.experiment_store import load_report
from kdcore.jobs.store import RunStore

TITLES = {
    "plan": "Experiment plan: floor, temperature sweep, λ sweep",
    "capacity": "Capacity-gap study",
    "across": "Across architectures",
    "repro": "Reproducibility report",
}


def experiment_html(report: dict) -> str:
    """The whole report as an HTML string (one file, no external resources)."""
    kind = ex._check(report)["kind"]
    figs = ex.report_figures(report)
    parts = [
        pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, f in enumerate(figs)
    ]
    tables = "".join(f"<h2>{html.escape(t)}</h2>{_table(df)}" for t, df in ex.report_tables(report).items())
    eid = html.escape(str(report.get("experiment_id")))
    spec = f"<pre>{html.escape(json.dumps(report.get('spec'), indent=1, default=str))}</pre>"
    wall = report.get("wall_s")
    took = f" · {wall:.1f} s" if isinstance(wall, (int, float)) else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>KD Workbench experiment {eid}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(TITLES[kind])}</h1>
<p class="muted">KD Workbench experiment {eid} · {html.escape(str(report.get("pair") or ""))} ·
{html.escape(str(report.get("state")))}{took}</p>
{tables}
<h2>Figures</h2>{"".join(parts) or "<p class='muted'>No figure for this kind of report.</p>"}
<h2>Specification</h2>{spec}
</body></html>"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.experiment_report", description=__doc__.splitlines()[0])
    ap.add_argument("experiment_id")
    ap.add_argument("--out", help="file to write (default experiment-ID.html)")
    args = ap.parse_args(argv)
    report = load_report(RunStore(), args.experiment_id)
    if report is None:
        print(
            f"error: experiment {args.experiment_id} has no report (still running, or not an experiment id; "
            f"`python -m kdcore experiment list`)",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out or f"experiment-{args.experiment_id}.html")
    out.write_text(experiment_html(report), encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
