"""Weight distillation as a run (methods/14 §14.2), the procedure of the method-table entry.

    run_job(JobConfig(pair="digits", objective="weight_distill", epochs=6))   # 3 + 3 epochs

Phase 1 (epochs 1..phase1_epochs): the student runs with weights generated from the frozen teacher's
tensors (kdcore.losses.weight_distill; groups by kdcore.jobs.weight_distill_groups); the generator
and the student tensors not generated train on the teacher's targets; BN uses batch statistics.
At every phase-1 epoch end the generated weights are written into the student, so validation and
checkpoints show the generated network (the epoch-0 row: the generator before its first step). Phase 2: the generated weights are materialised once, BN
running statistics restart at mean 0, var 1, the optimizer state is reset and the plain student
trains on the same loss. The learning-rate schedule restarts with each phase.

Epoch rows hold `wd_phase` (1 or 2) and `wd_mix_<student tensor>_<j>` (c = Λω of each generated
weight tensor with k > 1 during phase 1); the summary's "weight_distill" holds the phases (epochs,
last val_acc), the module groups, the rule that made them and c of every group at the phase switch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.func import functional_call

from kdcore.adapters.base import ModelAdapter
from kdcore.jobs.config import JobConfig
from kdcore.jobs.job import _Job, lr_factor
from kdcore.jobs.pair_source import pair_for_config
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import Reporter
from kdcore.jobs.resume_state import make_optimizer
from kdcore.jobs.run_options import RunOptions
from kdcore.jobs.runner import run_with_job
from kdcore.jobs.weight_distill_groups import FIX, parse_groups, rule_groups, tensor_groups
from kdcore.losses.weight_distill import WeightGenerator, weight_distill_generator
from kdcore.methods import get_method, misfit_message
from kdcore.methods.step import StepTensors
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError

GENERATOR = "wd_generator"  # its key among the job's learned parts (saved with the resume state)


@dataclass(frozen=True)
class WDPlan:
    """The run's plan: phase-1 epochs, {student module: [teacher modules]}, and the rule that made them."""

    phase1_epochs: int
    groups: dict[str, list[str]]
    grouping: str


def _module_groups(p: dict, teacher: nn.Module, student: nn.Module) -> tuple[dict[str, list[str]], str]:
    if p.get("groups"):
        return parse_groups(p["groups"]), "explicit"
    return rule_groups(teacher, student, p["grouping"]), p["grouping"]


def check(config: JobConfig, pair: Pair | None = None) -> WDPlan:
    """The plan, or the reason weight distillation cannot run on this pair and config (before anything runs)."""
    config.validate()
    pair = pair if pair is not None else pair_for_config(config)
    task = pair.dataset.task if pair.dataset is not None else "classification"
    if task != "classification":
        raise InvalidParameterError(misfit_message(get_method("weight_distill"), task))
    p = config.resolved_terms()[0].params
    phase1 = p["phase1_epochs"] if p["phase1_epochs"] is not None else config.epochs // 2
    if not 1 <= phase1 < config.epochs:
        raise InvalidParameterError(
            f"weight_distill runs phase 1 then phase 2, each at least one epoch: got epochs={config.epochs} and "
            f"phase1_epochs={phase1}. Set epochs >= 2 and 1 <= phase1_epochs < epochs."
        )
    t, s = pair.teacher.model, pair.student.model
    groups, rule = _module_groups(p, t, s)
    try:
        shapes = {n: tuple(q.shape) for n, q in s.named_parameters()}
        weight_distill_generator(shapes, dict(t.named_parameters()), tensor_groups(t, s, groups))
    except InvalidParameterError as exc:
        msg = str(exc)
        raise InvalidParameterError(msg if FIX in msg else f"{msg} (groups {groups}, rule {rule!r}). {FIX}") from None
    return WDPlan(int(phase1), groups, rule)


class _Forward(nn.Module):
    """Runs the adapter's forward through a module that holds its model, so functional_call can swap
    the model's tensors for the generated ones (keys 'model.<name>')."""

    def __init__(self, adapter: ModelAdapter) -> None:
        super().__init__()
        self.model, self.adapter = adapter.model, adapter

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter.forward_features(x, [])[0]


class WeightDistillJob(_Job):
    """The runner's job with the weight generator (phase 1) and the plain student (phase 2)."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, resume: bool, plan: WDPlan) -> None:
        self.plan, self.phase = plan, 1
        self.mix_at_switch: dict[str, list[float]] = {}
        super().__init__(config, prep, report, resume=resume)
        if self.start_epoch > plan.phase1_epochs:  # resumed inside phase 2 (at the switch: it runs again)
            self.phase = 2
            self.generator.requires_grad_(False)

    def _build_projectors(self) -> nn.ModuleDict:
        """The generator of §14.2 over the plan's groups (seeded), the job's learned part."""
        t, s = self.teacher.model, self.student.model
        groups = tensor_groups(t, s, self.plan.groups)
        torch.manual_seed((self.cfg.seed + 1) % 2**63)
        shapes = {n: tuple(q.shape) for n, q in s.named_parameters()}
        gen = weight_distill_generator(shapes, dict(t.named_parameters()), groups).to(self.device)
        self.forward_gen = _Forward(self.student)
        return nn.ModuleDict({GENERATOR: gen})

    @property
    def generator(self) -> WeightGenerator:
        return self.projectors[GENERATOR]  # type: ignore[return-value]

    def _step_tensors(self, idx: Tensor) -> StepTensors:
        """Phase 1: the student's logits with the generated weights; phase 2: the plain student's."""
        if self.phase == 2:
            return super()._step_tensors(idx)
        x, y = self.train_x[idx], self.train_y[idx]
        t_logits, t_feats = self._teacher_batch(idx, x)
        weights = {f"model.{n}": w for n, w in self.generator().items()}
        s_logits = functional_call(self.forward_gen, weights, (x,))  # [B, C]
        batch = StepTensors(self.task, s_logits, t_logits, y, {}, t_feats, self.projectors)
        batch.step, batch.epoch = self.step, self.epoch
        batch.total_steps, batch.epochs = self.total_steps, self.cfg.epochs
        return batch

    @torch.no_grad()
    def _write_generated(self) -> None:
        """The generated weights into the student (what validation, checkpoints and phase 2 start from)."""
        params = dict(self.student.model.named_parameters())
        for n, w in self.generator().items():
            params[n].copy_(w)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        if epoch == self.plan.phase1_epochs and self.phase == 1:
            self._switch_to_phase2()
        return super()._train_epoch(epoch)

    def _switch_to_phase2(self) -> None:
        """Materialise once, restart BN statistics (mean 0, var 1), reset the optimizer state."""
        self._write_generated()
        self.mix_at_switch = self.generator.mix()
        for m in self.student.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        self.generator.requires_grad_(False)  # dropped: phase 2 trains the plain student
        self.opt = make_optimizer(self.cfg, self._param_groups())
        self.phase = 2

    def _phase_span(self) -> tuple[int, int]:
        """(first step, steps) of the current phase."""
        switch = min(self.plan.phase1_epochs * self.spe, self.total_steps)
        return (0, max(1, switch)) if self.phase == 1 else (switch, max(1, self.total_steps - switch))

    def _step_lr(self) -> float:
        """The schedule's rate, restarted with each phase."""
        first, steps = self._phase_span()
        return self.cfg.lr * lr_factor(self.step - first, steps, self.cfg.schedule, self.cfg.warmup_steps)

    def _evaluate(self) -> dict[str, float]:
        if self.phase == 1:
            self._write_generated()
        out = super()._evaluate()
        if self.history or self.epoch:  # epoch rows: the phase the epoch trained in, and c
            out["wd_phase"] = float(self.phase)
            if self.phase == 1:
                for n, c in self.generator.mix().items():
                    if len(c) > 1 and n.endswith("weight"):
                        out.update({f"wd_mix_{n}_{j}": v for j, v in enumerate(c)})
        return out

    def summary(self) -> dict:
        s = super().summary()
        rows = [h for h in self.history if "wd_phase" in h]
        phases = []
        for ph in (1, 2):
            mine = [h for h in rows if h["wd_phase"] == ph]
            if mine:
                phases.append({"phase": ph, "start_epoch": mine[0]["epoch"], "end_epoch": mine[-1]["epoch"],
                               "val_acc": mine[-1].get("val_acc")})  # fmt: skip
        mix = self.mix_at_switch or self.generator.mix()
        s["weight_distill"] = {
            "phases": phases,
            "phase1_epochs": self.plan.phase1_epochs,
            "grouping": self.plan.grouping,
            "groups": {k: list(v) for k, v in self.plan.groups.items()},
            "mix": {n: c for n, c in mix.items() if n.endswith("weight")},
        }
        return s


def run_weight_distill(config: JobConfig, options: RunOptions) -> object:
    """Run a weight_distill job (run_job's options); refused before anything runs when the plan is."""
    pair = options.pair if options.pair is not None else pair_for_config(config)
    plan = check(config, pair)

    def make(cfg: JobConfig, prep: PreparedRun, report: Reporter, resume: bool) -> WeightDistillJob:
        return WeightDistillJob(cfg, prep, report, resume, plan)

    return run_with_job(make, config, replace(options, pair=pair))
