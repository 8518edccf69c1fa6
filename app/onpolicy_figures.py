"""The views of generation-based LM runs (methods/15): on-policy runs (gkd, minillm, distillm) get the
share of student-sampled steps and the quality curves; sequence-level runs (seqkd, hybrid) the quality
curves (held-out exact match when logged, validation loss). No Streamlit: the Distill page and the HTML
report use it."""

from __future__ import annotations

import pandas as pd

from analyses.onpolicy import onpolicy_figure, sequence_figure
from kdcore.methods import canonical_name

ONPOLICY = ("gkd", "minillm", "distillm")
SEQUENCE = ("seqkd", "hybrid")

EXPLAIN = {
    "onpolicy": "Top: the share of training steps so far whose completions the student sampled itself (GKD settles "
    "near λ, MiniLLM is 1, DistiLLM rises with φ as the validation loss stalls); the marks show each step's source. "
    "Below: quality at each evaluation (epoch 0 = the student before training). Exact match = the share (%) of "
    "held-out prompts (tinylang: the copy task's test prompts) whose greedy completion equals the reference, "
    "token for token; validation loss = next-token cross-entropy on held-out data. Dashed: the teacher.",
    "sequence": "Quality at each evaluation (epoch 0 = the student before training). Exact match = the share (%) "
    "of held-out prompts (tinylang: the copy task's test prompts) whose greedy completion equals the reference, "
    "token for token; validation loss = next-token cross-entropy on the reference completions. The teacher's "
    "completions were generated once before training (no per-step sampling). Dashed: the teacher.",
}


def _kind(run: dict) -> str | None:
    name = canonical_name((run.get("config") or {}).get("objective"))
    return "onpolicy" if name in ONPOLICY else "sequence" if name in SEQUENCE else None


def onpolicy_figures(run: dict, steps: pd.DataFrame, epochs: pd.DataFrame) -> list:
    """[] for other objectives or before anything was logged; on-policy runs: [share and quality];
    sequence-level runs: [quality over the epochs]."""
    kind = _kind(run)
    if kind == "onpolicy" and len(steps) and "onpolicy_share" in steps:
        return [onpolicy_figure(steps, epochs)]
    if kind == "sequence" and len(epochs) and "val_loss" in epochs:
        return [sequence_figure(epochs)]
    return []


def onpolicy_caption(run: dict) -> str:
    """What the figures of `onpolicy_figures` show, in words (empty for other objectives)."""
    kind = _kind(run)
    return EXPLAIN[kind] if kind else ""
