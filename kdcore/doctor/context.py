"""What the checks look at: the run's record (config, metrics, state) and, when available, its
models and data, with the expensive numbers (teacher and student outputs on a probe of the
training and validation data) computed once, on first use."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from kdcore.jobs.config import JobConfig, LossTerm

PROBE_CLASSIFICATION = 512  # samples of each split the checks look at
PROBE_SEQUENCES = 64  # sequences of each split (causal LMs)
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
        if split == "train" and self.config.train_size is not None:
            n = min(n, self.config.train_size)
        return data.inputs[:n], data.targets[:n]

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
            model = getattr(self, who)
            out = [model.logits(x[i : i + 256]).float().cpu() for i in range(0, x.shape[0], 256)]
            self.__dict__[key] = torch.cat(out)
        return self.__dict__[key]

    def flat(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Rows and labels to score: causal LMs keep positions whose target is not -100 -> [N, V], [N]."""
        if self.task == "causal_lm":
            keep = targets != -100  # [N, L]
            return logits[keep], targets[keep]
        return logits, targets


def fmt(x: float, digits: int = 3) -> str:
    """A number for a sentence: 3 significant digits, 'n/a' when not finite."""
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"
