"""Weight distillation's two phases (methods/14-feature-and-weight.md §14.2), outside the run store.

Phase 1: the student runs with weights generated from the frozen teacher's tensors
(kdcore.losses.weight_distill); the generator (and the student tensors not generated) train on the
teacher's targets. Phase 2: the generated weights are materialised once, the BN running statistics
restart at mean 0, var 1, and the plain student trains on the same targets.

    res = train_weight_distill(teacher, student, groups, (x, y), (x_val, y_val), WDConfig())
    res.val_acc, res.mix, res.student          # accuracy after each phase, c per tensor, the student

The models given are never changed (the student is copied; the teacher is only read).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from kdcore.losses.weight_distill import WeightGenerator, materialize, weight_distill_generator
from kdcore.validation import InvalidParameterError

TARGETS = ("teacher_argmax", "kd")


@dataclass(frozen=True)
class WDConfig:
    """The budget and targets of both phases (§14.2 "Tiny": Adam 1e-3, teacher argmax labels, ε = 0.1)."""

    phase1_steps: int = 100
    phase2_steps: int = 100
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    target: str = "teacher_argmax"  # or "kd": (1 − λ)·CE + λ·T²·KL (METHODS.md §1)
    label_smoothing: float = 0.1  # teacher_argmax only
    temperature: float = 4.0  # kd only
    lam: float = 0.9  # kd only

    def problems(self) -> list[str]:
        counts = ("phase1_steps", "phase2_steps", "batch_size")
        p = [f"{k} must be an integer >= 1; got {getattr(self, k)!r}" for k in counts if not _count(getattr(self, k))]
        if not self.lr > 0:
            p.append(f"lr must be > 0; got {self.lr!r}")
        if self.target not in TARGETS:
            p.append(f"target must be one of {TARGETS}; got {self.target!r}")
        if not 0 <= self.label_smoothing < 1:
            p.append(f"label_smoothing must be in [0, 1); got {self.label_smoothing!r}")
        return p


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass
class WDResult:
    student: nn.Module  # the phase-2 student (a copy)
    generated: dict[str, Tensor]  # the materialised weights phase 2 started from
    history: list[dict] = field(default_factory=list)  # {"phase", "step", "loss"}
    val_acc: dict[str, float] = field(default_factory=dict)  # "phase1" (generated weights), "phase2"
    mix: dict[str, list[float]] = field(default_factory=dict)  # c = Λω of each generated tensor


def _loss(cfg: WDConfig, s_logits: Tensor, t_logits: Tensor, y: Tensor) -> Tensor:
    if cfg.target == "kd":
        from kdcore.losses import kd_loss

        return kd_loss(s_logits, t_logits, y, temperature=cfg.temperature, lam=cfg.lam)
    return F.cross_entropy(s_logits, t_logits.argmax(-1), label_smoothing=cfg.label_smoothing)


def _batches(n: int, cfg: WDConfig, steps: int, salt: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + salt)
    out: list[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out += [perm[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    return out[:steps]


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean())


def _phase1(
    teacher: nn.Module, student: nn.Module, gen: WeightGenerator, data: tuple, cfg: WDConfig, res: WDResult
) -> None:
    x, _ = data
    others = {n: p for n, p in student.named_parameters() if n not in gen.names}  # not generated: trained as is
    opt = torch.optim.Adam([*gen.parameters(), *others.values()], lr=cfg.lr)
    with torch.no_grad():
        t_all = teacher(x)  # [N, C] the frozen teacher's logits, once
    student.train()  # BN uses batch statistics (its running statistics are not generated)
    for step, idx in enumerate(_batches(x.shape[0], cfg, cfg.phase1_steps, 1), start=1):
        weights = {**gen(), **others, **dict(student.named_buffers())}
        loss = _loss(cfg, functional_call(student, weights, (x[idx],)), t_all[idx], data[1][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        res.history.append({"phase": 1, "step": step, "loss": float(loss.detach())})


def _phase2(teacher: nn.Module, student: nn.Module, data: tuple, cfg: WDConfig, res: WDResult) -> None:
    x, y = data
    student.load_state_dict(res.generated, strict=False)
    for m in student.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()  # mean 0, var 1
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    with torch.no_grad():
        t_all = teacher(x)
    student.train()
    for step, idx in enumerate(_batches(x.shape[0], cfg, cfg.phase2_steps, 2), start=1):
        loss = _loss(cfg, student(x[idx]), t_all[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        res.history.append({"phase": 2, "step": step, "loss": float(loss.detach())})


def train_weight_distill(
    teacher: nn.Module,
    student: nn.Module,
    groups: Mapping[str, Sequence[str]],
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    cfg: WDConfig | None = None,
) -> WDResult:
    """Both phases of §14.2 on `train` (inputs, labels); accuracy on `val` after each. `groups` maps a
    student tensor name to its teacher tensor names (kdcore.losses.weight_distill.layer_groups helps)."""
    cfg = cfg or WDConfig()
    if cfg.problems():
        raise InvalidParameterError("train_weight_distill: " + "; ".join(cfg.problems()) + ".")
    torch.manual_seed(cfg.seed)
    was_training = teacher.training
    teacher.eval()
    try:
        student = copy.deepcopy(student)
        shapes = {n: tuple(p.shape) for n, p in student.named_parameters()}
        gen = weight_distill_generator(shapes, dict(teacher.named_parameters()), groups)
        res = WDResult(student=student, generated={})
        _phase1(teacher, student, gen, train, cfg, res)
        with torch.no_grad():
            weights = {**dict(student.named_parameters()), **dict(student.named_buffers()), **gen()}
            res.val_acc["phase1"] = _accuracy(functional_call(student, weights, (val[0],)), val[1])
        res.generated = materialize(gen)
        res.mix = gen.mix()
        _phase2(teacher, student, train, cfg, res)
        student.eval()
        with torch.no_grad():
            res.val_acc["phase2"] = _accuracy(student(val[0]), val[1])
        return res
    finally:
        teacher.train(was_training)
