"""A run report as one self-contained HTML file: config, summary metrics, the curves (plotly.js inlined
once, so the file opens offline), the checkpoint CKA heatmaps. No Streamlit: usable from a script.

    html = run_report(RunStore(), run_id)
"""

from __future__ import annotations

import datetime
import html
import json

import pandas as pd
import plotly.io as pio

from analyses import cka as cka_an
from app import run_figures
from app.onpolicy_figures import onpolicy_figures
from app.procedure_figures import procedure_figures
from app.strategy_figures import strategy_figures
from kdcore.jobs.store import RunStore

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4} .muted{color:#666} .err{color:#a00}
"""


def _table(rows: dict | pd.DataFrame) -> str:
    if isinstance(rows, pd.DataFrame):
        return rows.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="")
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "" if v is None else str(v)


def checkpoint_cka(store: RunStore, run_id: str) -> dict[str, pd.DataFrame]:
    """CKA heatmaps (teacher layers × student layers) the job logged at each checkpoint, by epoch."""
    ck = store.metrics(run_id, "checkpoint")
    cols = [c for c in ck.columns if str(c).startswith("cka/")]
    out: dict[str, pd.DataFrame] = {}
    for _, row in ck.iterrows():
        cells = [(c[4:].split("|", 1)[1], c[4:].split("|", 1)[0], float(row[c])) for c in cols]
        df = pd.DataFrame(cells, columns=["teacher", "student", "cka"])
        t_order = list(dict.fromkeys(t for t, _, _ in cells))
        s_order = list(dict.fromkeys(s for _, s, _ in cells))
        mat = df.pivot(index="teacher", columns="student", values="cka").loc[t_order, s_order]
        mat.index.name, mat.columns.name = "teacher", "student"
        mat.attrs.update(model_a="teacher", model_b="student")
        out[f"epoch {int(row['epoch'])}"] = mat
    return out


def run_figures_for(store: RunStore, run_id: str) -> list:
    """The figures of a run, in report order (those without data left out)."""
    run = store.get_run(run_id)
    figs = []
    steps = store.metrics(run_id, "step")
    if len(steps):
        figs.append(run_figures.loss_components(steps, smooth=5))
        sched_fig = run_figures.scheduled_values(steps)
        figs += [sched_fig] if sched_fig is not None else []
    epochs = store.metrics(run_id, "epoch")
    if len(epochs):
        figs.append(run_figures.epoch_metrics(epochs, teacher_acc=(run["summary"] or {}).get("teacher_val_acc")))
        figs += strategy_figures(run, epochs)  # per-exit accuracy (byot), grades over time (education)
        figs += procedure_figures(store, run)  # stones (blockwise), stages (pwkd), generated samples (zskt)
        figs += onpolicy_figures(run, steps, epochs)  # gkd, minillm, distillm: on-policy share and quality
    ckpt = store.metrics(run_id, "checkpoint")
    if any(str(c).startswith("div/") for c in ckpt.columns):
        figs.append(run_figures.checkpoint_divergences(ckpt))
    heat = checkpoint_cka(store, run_id)
    if heat:
        figs.append(
            cka_an.figure_heatmaps(heat, title="CKA of student (columns) and teacher (rows) layers, by checkpoint")
        )
    return figs


def run_report(store: RunStore, run_id: str) -> str:
    """The whole report as an HTML string (one file, no external resources)."""
    run = store.get_run(run_id)
    summary = run["summary"] or {}
    figs = run_figures_for(store, run_id)
    parts = []
    for i, fig in enumerate(figs):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}))
    when = datetime.datetime.fromtimestamp(run["created"]).strftime("%Y-%m-%d %H:%M")
    head = {
        "run": run_id,
        "name": run.get("name") or "",
        "state": run["state"],
        "pair": run["pair"],
        "objective": run["objective"],
        "created": when,
        "device": run.get("device"),
    }
    error = f"<p class='err'>{html.escape(run['error'])}</p>" if run.get("error") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>KD Workbench run {html.escape(run_id)}</title>
<style>{_CSS}</style></head><body>
<h1>Distillation run {html.escape(run_id)}</h1>
<p class="muted">KD Workbench report · {html.escape(run["pair"] or "")} · {html.escape(run["objective"] or "")}</p>
{error}
<h2>Run</h2>{_table(head)}
<h2>Results</h2>{_table(summary) if summary else "<p class='muted'>No results yet.</p>"}
<h2>Configuration</h2>{_table(run["config"])}
<h2>Curves</h2>{"".join(parts) or "<p class='muted'>No metrics were logged.</p>"}
<h2>Software</h2>{_table(run.get("versions") or {})}
</body></html>"""
