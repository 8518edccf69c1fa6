"""An education-distillation run (methods/13 §13.5), scaled down to the sample classifiers.

- Grades: `grade_partition(C, ratios)`, contiguous class ranges S_g = [m_g, n_g) in class order.
- Schedule: epoch e (from 1) is in grade `grade_of_epoch(e, boundaries)`; unset boundaries are the
  paper's 150 and 180 of 240 epochs scaled to the run (`scaled_boundaries`), each grade at least one epoch.
- The growing student: at grade g < G a teaching-reference head TR_g (1×1 conv, BN, ReLU, pool, FC
  over S_1 ∪ … ∪ S_g, kdcore.exits.ExitHead) reads the student layer `layers[g − 1]` (default: the
  student's default layers in order, the last repeated when it has fewer); grade G is the complete
  student with its own head. A stage not yet reached gets no gradient, so it starts its grade as
  initialised (its batch-norm statistics do follow the batches: the whole student runs forward). The
  heads are created at the start (seeded), each untrained until its grade. At each new grade the
  optimizer is rebuilt (momentum and Adam moments reset), as the authors' code does; the learning
  rate follows the job's schedule (choice: the paper's ×0.1 steps are the job's 'step' schedule's business).
- Each epoch of grade g passes over S_1's training samples with teacher 1, then S_2's, …, then
  S_g's (review, sequential, not mixed); a batch of grade h uses `education_kd_loss` with the slice
  [m_h, n_h). Teacher h (choice, `teachers`): "restricted" (default), the pair's teacher with its
  logits restricted to S_h, i.e. its distribution conditioned on the grade; "trained", the paper's:
  a fresh copy of the teacher's architecture trained on S_h's samples alone with the local labels
  y − m_h (CE on its logits restricted to S_h; `teacher_epochs` epochs of Adam at the job's lr and
  batch size, seeded), its validation accuracy on S_h recorded as `teacher_acc_grade{h}`.

Epoch metrics: `grade`, `active_classes` (n_g), `val_acc` (every validation sample; classes of
later grades count as wrong, as the current head cannot name them), `val_acc_active` (samples of
active classes), `val_acc_grade{h}` for the active grades.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter
from kdcore.exits import ExitHead
from kdcore.jobs.config import LossTerm
from kdcore.jobs.evaluation import _batched_logits
from kdcore.jobs.job import _SEED_MOD, _Job
from kdcore.jobs.resume_state import make_optimizer
from kdcore.losses import grade_of_epoch, grade_partition

PAPER_EPOCHS, PAPER_BOUNDARIES = 240, (150, 180)  # §13.5: grades 2 and 3 start at epochs 150 and 180 of 240


def scaled_boundaries(epochs: int, grades: int) -> tuple[int, ...]:
    """The epochs where grades 2 … G start in a run of `epochs`: the paper's b_j = 150 + 30·(j − 1) of
    240 scaled by epochs/240 and rounded, kept strictly increasing with every grade at least one epoch.
    scaled_boundaries(240, 3) == (150, 180)."""
    out: list[int] = []
    for j in range(1, grades):
        want = round(epochs * (PAPER_BOUNDARIES[0] + 30 * (j - 1)) / PAPER_EPOCHS)
        low = out[-1] + 1 if out else 2
        out.append(max(low, min(epochs - (grades - 1 - j), want)))
    return tuple(out)


def grade_schedule(epochs: int, boundaries: tuple[int, ...]) -> list[int]:
    """The grade of each epoch 1 … epochs."""
    return [grade_of_epoch(e, boundaries) for e in range(1, epochs + 1)]


class EducationJob(_Job):
    """The runner's job, trained grade by grade (see the module docstring)."""

    def __init__(self, config: Any, prep: Any, report: Any, *, resume: bool) -> None:
        p = prep.terms[0].params
        self.grades = grade_partition(prep.pair.student.output_size, p["ratios"])  # [(m_g, n_g), …]
        self.boundaries = tuple(p["boundaries"] or scaled_boundaries(config.epochs, len(self.grades)))
        self.grade_layers: list[str] = list(p["layers"] or [])  # the layer TR_g reads, g = 1 … G − 1
        self._grade: int | None = None
        self._base_term = prep.terms[0]
        super().__init__(config, prep, report, resume=resume)
        y = self.train_y
        self.grade_idx = [torch.nonzero((y >= m) & (y < n)).flatten() for m, n in self.grades]  # per grade [N_h]
        self._plan_steps()
        self.grade_teachers: list[ModelAdapter] = []
        if p["teachers"] == "trained":
            self._train_grade_teachers(int(p["teacher_epochs"]))

    def _train_grade_teachers(self, epochs: int) -> None:
        """One teacher per grade, trained on the grade's samples alone (teachers='trained')."""
        values = {}
        for h, (m, n) in enumerate(self.grades, start=1):
            idx = self.grade_idx[h - 1]
            seed = (self.cfg.seed + 7919 * h) % _SEED_MOD
            t = train_grade_teacher(self.teacher, self.train_x[idx], self.train_y[idx], (m, n), epochs, self.cfg, seed)
            self.grade_teachers.append(t)
            mask = (self.val_y >= m) & (self.val_y < n)
            logits = _batched_logits(t, self.val_x[mask], self.device)[:, m:n]
            values[f"teacher_acc_grade{h}"] = float((logits.argmax(-1) + m == self.val_y[mask]).float().mean())
        self.log.add("epoch", 0, 0, values)

    def _plan_steps(self) -> None:
        """Total steps of the grade schedule (an epoch of grade g passes over S_1 … S_g only)."""
        sizes = [math.ceil(int(i.numel()) / self.cfg.batch_size) for i in self.grade_idx]
        total = sum(sum(sizes[:g]) for g in grade_schedule(self.cfg.epochs, self.boundaries))
        self.total_steps = total if self.cfg.max_steps is None else min(self.cfg.max_steps, total)
        self.report.total_steps = self.total_steps
        if self.store is not None and self.run_id is not None:
            self.store.update_run(self.run_id, total_steps=self.total_steps)

    def _build_projectors(self) -> nn.ModuleDict:
        """TR_1 … TR_{G−1}, sized by a probe pass on 2 samples, seeded."""
        if not self.grade_layers:
            return nn.ModuleDict()
        with torch.no_grad():
            _, feats = self.student.forward_features(self.train_x[:2], list(dict.fromkeys(self.grade_layers)))
        torch.manual_seed((self.cfg.seed + 1) % _SEED_MOD)
        heads = {
            f"grade{g}": ExitHead(tuple(feats[layer].shape[1:]), _channels(feats[layer]), self.grades[g - 1][1])
            for g, layer in enumerate(self.grade_layers, start=1)
        }
        return nn.ModuleDict(heads).to(self.device)

    # -- training --
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """The grade's epoch: S_1's batches with teacher 1, then S_2's, … (each in a seeded order)."""
        g = grade_of_epoch(epoch + 1, self.boundaries)
        self._enter_grade(g, epoch)
        sums: dict[str, float] = {}
        count = 0
        for h in range(1, g + 1):
            self._use_grade_slice(h)
            for idx in self._grade_batches(epoch, h):
                if self.step >= self.total_steps:
                    break
                self.report.check_cancel()
                self._logged_step(idx, sums, grade=float(g), batch_grade=float(h))
                count += 1
        return {f"train_{k}": v / max(count, 1) for k, v in sums.items()}

    def _enter_grade(self, g: int, epoch: int) -> None:
        """A new grade rebuilds the optimizer (the new head and stage start fresh; moments reset)."""
        if self._grade is None and epoch > 0:  # resumed: the grade of the last epoch done
            self._grade = grade_of_epoch(epoch, self.boundaries)
        if self._grade is not None and g != self._grade:
            self.opt = make_optimizer(self.cfg, self.params)
            self._notice(f"Epoch {epoch + 1}: grade {g} starts (classes 0–{self.grades[g - 1][1] - 1} active).")
        self._grade = g

    def _use_grade_slice(self, h: int) -> None:
        t = self._base_term
        self.terms = [LossTerm(t.name, t.weight, {**t.params, "grade_slice": self.grades[h - 1]})]

    def _grade_batches(self, epoch: int, h: int) -> list[Tensor]:
        gen = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + epoch * 1_009 + h) % _SEED_MOD)
        idx = self.grade_idx[h - 1]
        order = idx[torch.randperm(idx.numel(), generator=gen).to(idx.device)]
        bs = self.cfg.batch_size
        return [order[i : i + bs] for i in range(0, order.numel(), bs)]

    def _step_tensors(self, idx: Tensor) -> Any:
        """The batch with the current head's logits and the grade's teacher (its logits on the grade's classes)."""
        batch = super()._step_tensors(idx)
        m, n = self.terms[0].params["grade_slice"]
        if self.grade_teachers:  # the grade's own teacher
            h = next(i for i, (a, _) in enumerate(self.grades) if a == m)
            batch.teacher_logits = self.grade_teachers[h].logits(self.train_x[idx])
        batch.teacher_logits = batch.teacher_logits[:, m:n]  # [B, n − m]
        g = self._grade
        if g is not None and g < len(self.grades):  # TR_g on the features captured in the same forward pass
            batch.student_logits = self.projectors[f"grade{g}"](batch.student_feats[self.grade_layers[g - 1]])[0]
        return batch

    def _head_logits(self, x: Tensor, g: int) -> Tensor:
        """TR_g's logits [B, n_g] on inputs x."""
        layer = self.grade_layers[g - 1]
        _, feats = self.student.forward_features(x, [layer])
        return self.projectors[f"grade{g}"](feats[layer])[0]

    # -- validation --
    def _evaluate(self) -> dict[str, float]:
        g = self._grade or 1
        if g == len(self.grades):
            values = super()._evaluate()
            with torch.no_grad():
                logits = _batched_logits(self.student, self.val_x, self.device)
        else:
            self.student.model.eval()
            self.projectors.eval()
            with torch.no_grad():
                logits = torch.cat(
                    [self._head_logits(self.val_x[i : i + 512], g) for i in range(0, len(self.val_x), 512)]
                )
            values = _head_metrics(logits, self.val_y)
        return {**values, **self._grade_metrics(logits, g)}

    def _grade_metrics(self, logits: Tensor, g: int) -> dict[str, float]:
        pred, y = logits.argmax(dim=-1), self.val_y
        n_g = self.grades[g - 1][1]
        out = {"grade": float(g), "active_classes": float(n_g), "val_acc_active": _acc(pred, y, y < n_g)}
        for h, (m, n) in enumerate(self.grades[:g], start=1):
            out[f"val_acc_grade{h}"] = _acc(pred, y, (y >= m) & (y < n))
        return out


def train_grade_teacher(
    teacher: ModelAdapter, x: Tensor, y: Tensor, grade: tuple[int, int], epochs: int, cfg: Any, seed: int
) -> ModelAdapter:
    """A fresh copy of `teacher`'s architecture trained on one grade's samples x [N, ...], y [N] (global
    labels in [m, n)): CE of its logits restricted to [m, n) against y − m, Adam at cfg.lr, cfg.batch_size,
    seeded. The given teacher is not changed (clone); the copy is returned in eval mode."""
    m, n = grade
    copy = teacher.clone(reinit=True, seed=seed)
    opt = torch.optim.Adam(copy.model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    copy.model.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen).to(x.device)
        for i in range(0, x.shape[0], cfg.batch_size):
            b = order[i : i + cfg.batch_size]
            logits, _ = copy.forward_features(x[b], [])
            loss = F.cross_entropy(logits[:, m:n].float(), y[b] - m)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    copy.model.eval()
    for q in copy.model.parameters():
        q.requires_grad_(False)
    return copy


def _channels(feature: Tensor) -> int:
    return int(feature.shape[1] if feature.dim() == 4 else feature.shape[-1])


def _acc(pred: Tensor, y: Tensor, mask: Tensor) -> float:
    return float((pred[mask] == y[mask]).float().mean()) if bool(mask.any()) else float("nan")


def _head_metrics(logits: Tensor, y: Tensor) -> dict[str, float]:
    """val_acc over every sample (later grades' classes count as wrong); val_loss over the active ones."""
    active = y < logits.shape[-1]
    loss = F.cross_entropy(logits[active].float(), y[active]) if bool(active.any()) else torch.tensor(float("nan"))
    return {"val_acc": float((logits.argmax(dim=-1) == y).float().mean()), "val_loss": float(loss)}
