"""What the checks look at: the run's record (config, metrics, state) and, when available, its
models and data, with the expensive numbers (teacher and student outputs on a probe of the
training and validation data) computed once, on first use."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from kdcore.jobs.config import JobConfig, LossTerm

PROBE_CLASSIFICATION = 512  # samples of each split the checks look at
PROBE_SEQUENCES = 64  # sequences of each split (causal LMs), at most ...
PROBE_LOGITS = 2**25  # ... and at most this many logits (sequences × length × vocabulary: 128 MB in float32)
LARGE_VOCAB = 8192  # from this many classes on, streamed statistics run in float32 (float64 below: exact enough
# either way for the checks' thresholds, and twice as fast on a large vocabulary)
FORWARD_LOGITS = 2**24  # logits per forward pass when the probe's outputs are computed (64 MB in float32)
CHUNK_LOGITS = 2**22  # logits per chunk when a check streams over the probe's rows (32 MB in float64)
DISTILL_COMPONENTS = (
    "kl",
    "tckd",
    "nckd",
    "bcd",
    "scd",
    "wcd",
    "normkd",
    "fkl",
    "rkl",
    "jsd",
    "tvd",
    "skew_fkl",
    "skew_rkl",
    "akl",
    "uld",
)


class Skip(Exception):
    """A check cannot run on this run (what it needs is missing); the message says why."""


@dataclass
class RunRecord:
    """A run as the store keeps it; build one directly to diagnose runs trained elsewhere."""

    config: dict  # the job config (JobConfig.to_dict(); unknown keys allowed)
    steps: pd.DataFrame | None = None  # step metrics: step, epoch, loss, components, lr, ...
    epochs: pd.DataFrame | None = None  # epoch metrics: train_*, val_loss, val_acc, teacher_training, ...
    checkpoints: pd.DataFrame | None = None  # checkpoint metrics: cka/..., div/...
    state: str = "completed"  # the run's final state
    error: str | None = None  # why it failed, if it did
    summary: dict | None = None  # final metrics (final_val_acc, final_val_loss, ...)
    run_id: str | None = None  # id in the store, if any
    baseline: dict | None = None  # a student-alone run: {"run_id", "final_val_acc", "final_val_loss"}


@dataclass
class Context:
    """A run record plus (optionally) its models and data. Checks read it; nothing here mutates a model."""

    record: RunRecord
    teacher: Any = None  # ModelAdapter or None
    student: Any = None  # the run's trained student (ModelAdapter) or None
    dataset: Any = None  # kdcore.data.Dataset or None
    student_baseline: Any = None  # the student trained without a teacher, or None
    notes: dict = field(default_factory=dict)  # why models are missing (shown in skip reasons)

    # ---- config --------------------------------------------------------------------------------
    @cached_property
    def config(self) -> JobConfig:
        cfg = dict(self.record.config or {})
        known = set(JobConfig().to_dict())
        return JobConfig.from_dict({k: v for k, v in cfg.items() if k in known})

    @cached_property
    def terms(self) -> list[LossTerm]:
        try:
            return self.config.resolved_terms()
        except (KeyError, TypeError, ValueError):
            return []

    @property
    def ce_weight(self) -> float:
        return self.config.resolved_ce_weight()

    @property
    def temperature(self) -> float | None:
        """T of the first term that has one (kd, dkd, cakd, token); None when no term uses one."""
        return next((float(t.params["temperature"]) for t in self.terms if "temperature" in t.params), None)

    @property
    def task(self) -> str:
        if self.dataset is not None:
            return self.dataset.task
        if self.teacher is not None:
            return "causal_lm" if self.teacher.kind == "causal_lm" else "classification"
        lm = ("token", "attn_kl", "seqkd", "hybrid")
        return "causal_lm" if any(t.name in lm for t in self.terms) else "classification"

    # ---- metrics ---------------------------------------------------------------------------------
    def metric(self, level: str, name: str) -> pd.Series | None:
        """One metric's values at a level ('step' | 'epoch' | 'checkpoint'), NaN-free, or None."""
        df = {"step": self.record.steps, "epoch": self.record.epochs, "checkpoint": self.record.checkpoints}[level]
        if df is None or name not in getattr(df, "columns", ()):
            return None
        s = df[name].dropna()
        return s if len(s) else None

    def require_metrics(self, level: str) -> pd.DataFrame:
        df = {"step": self.record.steps, "epoch": self.record.epochs, "checkpoint": self.record.checkpoints}[level]
        if df is None or len(df) == 0:
            raise Skip(f"the run recorded no {level}-level metrics")
        return df

    # ---- models and data ------------------------------------------------------------------------
    def require(self, *what: str) -> None:
        """Raise Skip unless each of 'teacher', 'student', 'dataset', 'student_baseline' is present."""
        for w in what:
            if getattr(self, w) is None:
                why = self.notes.get(w) or self.notes.get("pair")
                raise Skip(f"needs the {w.replace('_', ' ')}" + (f" ({why})" if why else ""))

    def _probe(self, split: str) -> tuple[Tensor, Tensor]:
        self.require("dataset")
        data = self.dataset.split(split)
        n = PROBE_SEQUENCES if self.task == "causal_lm" else PROBE_CLASSIFICATION
        if self.task == "causal_lm":  # a large vocabulary: fewer sequences, so the logits stay within budget
            n = min(n, max(2, PROBE_LOGITS // max(self.row_logits(data.inputs), 1)))
        if split == "train" and self.config.train_size is not None:
            n = min(n, self.config.train_size)
        return data.inputs[:n], data.targets[:n]

    def row_logits(self, x: Tensor) -> int:
        """Logits one input row produces: its length × the vocabulary (LMs), or the classes."""
        data = self.dataset
        declared = getattr(data, "vocab_size", None) or getattr(data, "num_classes", None) or 1
        width = self.teacher.output_size if self.teacher is not None else declared
        return int(width) * (int(x.shape[1]) if self.task == "causal_lm" and x.dim() > 1 else 1)

    @cached_property
    def train_probe(self) -> tuple[Tensor, Tensor]:
        """(inputs, targets): the first samples of the training data the run used."""
        return self._probe("train")

    @cached_property
    def val_probe(self) -> tuple[Tensor, Tensor]:
        return self._probe("val")

    def logits(self, who: str, split: str) -> Tensor:
        """Logits of 'teacher' | 'student' | 'student_baseline' on a probe split (cached, float32, CPU)."""
        key = f"_logits_{who}_{split}"
        if key not in self.__dict__:
            self.require(who)
            x = (self.train_probe if split == "train" else self.val_probe)[0]
            rows = max(1, min(256, FORWARD_LOGITS // max(self.row_logits(x), 1)))
            self.__dict__[key] = batched_logits(getattr(self, who), x, rows)
        return self.__dict__[key]

    def chunks(self, logits: Tensor, targets: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """`flat(logits, targets)` in chunks of about CHUNK_LOGITS logits, in the same row order: (rows [n, C],
        labels [n]) each, never copying the whole probe (checks stream over a large vocabulary this way)."""
        per = max(1, CHUNK_LOGITS // max(logits.shape[-1], 1))  # rows per chunk
        if self.task != "causal_lm":
            for i in range(0, logits.shape[0], per):
                yield logits[i : i + per], targets[i : i + per]
            return
        rows, labels = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)  # views [N·L, V], [N·L]
        kept = (labels != -100).nonzero()[:, 0]  # the scored positions, row-major as flat() keeps them
        for i in range(0, kept.shape[0], per):
            idx = kept[i : i + per]
            yield rows[idx], labels[idx]

    def flat(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Rows and labels to score: causal LMs keep positions whose target is not -100 -> [N, V], [N]."""
        if self.task == "causal_lm":
            keep = targets != -100  # [N, L]
            return logits[keep], targets[keep]
        return logits, targets


def stats_dtype(width: int) -> torch.dtype:
    """The dtype streamed statistics over `width` classes are computed in (see LARGE_VOCAB)."""
    return torch.float32 if width >= LARGE_VOCAB else torch.float64


def batched_logits(model: Any, x: Tensor, rows: int) -> Tensor:
    """model.logits over x, `rows` inputs per forward pass, into one float32 CPU tensor (no list to concatenate)."""
    first = model.logits(x[:rows]).float().cpu()
    out = torch.empty((x.shape[0], *first.shape[1:]), dtype=torch.float32)
    out[: first.shape[0]] = first
    del first
    for i in range(rows, x.shape[0], rows):
        out[i : i + rows] = model.logits(x[i : i + rows]).float().cpu()
    return out


def fmt(x: float, digits: int = 3) -> str:
    """A number for a sentence: 3 significant digits, 'n/a' when not finite."""
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"
