"""Block-wise logit distillation as a run (methods/14 §14.3): the student and the teacher split into
the same number n of stages, n − 1 stepping-stone networks N_i = teacher tail ∘ φ_i ∘ student
prefix, L = Σ_i 2^{−(n−i)}·L_base(N_i) every step, each stone's loss recorded every step
(`stone1` … `stone{n}`, the last the student's) and each stone's validation accuracy every epoch
(`val_acc_stone{i}`).

    run_job(JobConfig(pair="digits", objective="blockwise", epochs=2))
    run_job(JobConfig(..., objective="blockwise", params={"stages": {"conv1": "conv2", "conv2": "conv3"}}))

`stages` maps each student stage-ending module to the teacher's, in forward order (kdcore.stages);
unset, the models' feature layers pair up by spatial size (`default_stage_map`). The teacher is a
frozen copy (eval mode, no gradient to its weights) that stays differentiable; connectors (1×1
conv + BN, or identity when the shapes agree) train with the student and are dropped at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter, eval_mode
from kdcore.jobs.config import JobConfig
from kdcore.jobs.job import _Job, _NonFiniteLoss
from kdcore.jobs.pair_source import pair_for_config
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import Reporter
from kdcore.jobs.run_options import RunOptions
from kdcore.jobs.runner import run_with_job
from kdcore.losses.blockwise import blockwise_components
from kdcore.methods import get_method, misfit_message
from kdcore.metrics import accuracy
from kdcore.pairs import Pair
from kdcore.stages import StageSplit
from kdcore.validation import InvalidParameterError

CONNECTORS = ("auto", "conv_bn", "identity")


@dataclass(frozen=True)
class BlockwisePlan:
    """The stage split of both models, checked on a probe batch."""

    student_stages: tuple[str, ...]
    teacher_stages: tuple[str, ...]
    student_shapes: tuple[tuple[int, ...], ...]  # each stage's output shape [C, H, W] (probe)
    teacher_shapes: tuple[tuple[int, ...], ...]


def default_stage_map(student: ModelAdapter, teacher: ModelAdapter, probe: Tensor) -> dict[str, str]:
    """{student stage: teacher stage} from the models' feature layers: the last student stage ends at the
    teacher's last, every earlier one at the first later teacher stage of the same spatial size."""
    s_names, t_names = list(student.default_layers()), list(teacher.default_layers())
    if not s_names or len(s_names) > len(t_names):
        raise InvalidParameterError(
            f"blockwise cannot pair the student's feature layers {s_names} with the teacher's {t_names}: it needs "
            f"at least one student stage and no more than the teacher's. Name the stages: params.stages = "
            f"{{student_module: teacher_module, ...}} in forward order."
        )
    s_f, t_f = student.capture(probe, s_names), teacher.capture(probe, t_names)
    out, start = {}, 0
    for k, s in enumerate(s_names[:-1]):
        room = len(t_names) - 1 - (len(s_names) - 2 - k)  # leave a teacher stage for every later student one
        hit = next((j for j in range(start, room) if t_f[t_names[j]].shape[2:] == s_f[s].shape[2:]), None)
        if hit is None:
            raise InvalidParameterError(
                f"blockwise found no teacher stage of the spatial size {tuple(s_f[s].shape[2:])} of the student's "
                f"{s!r} among {t_names[start:room]}. Name the stages: params.stages = {{student: teacher, ...}}."
            )
        out[s], start = t_names[hit], hit + 1
    out[s_names[-1]] = t_names[-1]
    return out


def _probe(pair: Pair) -> Tensor:
    assert pair.dataset is not None
    return pair.dataset.split("val").inputs[:4]


def plan_blockwise(params: dict, pair: Pair) -> BlockwisePlan:
    """The checked split: stage modules exist, run once in order, are cuts; connectors can map them."""
    probe = _probe(pair)
    stages = params.get("stages") or default_stage_map(pair.student, pair.teacher, probe)
    s_names, t_names = list(stages), list(stages.values())
    s_split = StageSplit.of(pair.student.model, s_names, probe, who="student")
    t_split = StageSplit.of(pair.teacher.model, t_names, probe, who="teacher")
    with eval_mode(pair.student.model, no_grad=True), eval_mode(pair.teacher.model, no_grad=True):
        s_out, t_out = s_split.forward_stages(probe)[1], t_split.forward_stages(probe)[1]
    plan = BlockwisePlan(
        tuple(s_names),
        tuple(t_names),
        tuple(tuple(o.shape[1:]) for o in s_out),
        tuple(tuple(o.shape[1:]) for o in t_out),
    )
    connector_problems(plan, params.get("connector", "auto"))
    return plan


def connector_problems(plan: BlockwisePlan, kind: str) -> None:
    """Refuse a stone whose connector cannot map the student stage output to the teacher's."""
    pairs = zip(plan.student_stages[:-1], plan.teacher_stages[:-1], plan.student_shapes, plan.teacher_shapes)
    for s, t, ss, ts in pairs:
        if ss[1:] != ts[1:]:
            raise InvalidParameterError(
                f"blockwise cannot connect the student's stage {s!r} (output {ss}) to the teacher's {t!r} ({ts}): "
                f"the spatial sizes differ. Pair stages whose outputs have the same spatial size."
            )
        if kind == "identity" and ss != ts:
            raise InvalidParameterError(
                f"connector 'identity' needs equal shapes, but the student's {s!r} gives {ss} and the teacher's "
                f"{t!r} gives {ts}: use connector 'auto' (a 1×1 convolution + BN)."
            )


def make_connector(s_shape: tuple[int, ...], t_shape: tuple[int, ...], kind: str) -> nn.Module:
    """φ: identity when allowed and the shapes agree, else 1×1 conv + BN ([C, H, W]) or Linear ([D])."""
    if kind == "identity" or (kind == "auto" and s_shape == t_shape):
        return nn.Identity()
    if len(s_shape) == 3:
        return nn.Sequential(nn.Conv2d(s_shape[0], t_shape[0], 1, bias=False), nn.BatchNorm2d(t_shape[0]))
    return nn.Linear(s_shape[-1], t_shape[-1])


def check(config: JobConfig, pair: Pair | None = None) -> BlockwisePlan:
    pair = pair if pair is not None else pair_for_config(config)
    task = pair.dataset.task if pair.dataset is not None else "classification"
    if task != "classification":
        raise InvalidParameterError(misfit_message(get_method("blockwise"), task))
    return plan_blockwise(config.resolved_terms()[0].params, pair)


class BlockwiseJob(_Job):
    """The runner's job with the stepping stones' loss (see the module docstring)."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, resume: bool, plan: BlockwisePlan):
        self.plan = plan
        self.p = config.resolved_terms()[0].params
        super().__init__(config, prep, report, resume=resume)

    def _build_projectors(self) -> nn.ModuleDict:
        """The connectors φ_1..φ_{n−1}; the teacher becomes a frozen, still differentiable copy."""
        self.teacher = self.teacher.clone(reinit=False)
        self.teacher.model.requires_grad_(False)
        self.teacher.model.eval()
        self.s_split = StageSplit(self.student.model, self.plan.student_stages, "student")
        self.t_split = StageSplit(self.teacher.model, self.plan.teacher_stages, "teacher")
        torch.manual_seed((self.cfg.seed + 1) % 2**63)
        pairs = zip(self.plan.student_shapes[:-1], self.plan.teacher_shapes[:-1])
        kind = self.p["connector"]
        return nn.ModuleDict({f"phi{i}": make_connector(s, t, kind) for i, (s, t) in enumerate(pairs, 1)}).to(
            self.device
        )

    def stones(self, x: Tensor) -> list[Tensor]:
        """[z_{N_1}, …, z_{N_n}] on x ([B, C] each, the student's last), graph kept."""
        s_logits, s_outs = self.s_split.forward_stages(x)
        n = len(s_outs)
        mids = [self.t_split.run_from(i, self.projectors[f"phi{i + 1}"](s_outs[i]), x) for i in range(n - 1)]
        return [*mids, s_logits]

    def _train_step(self, idx: Tensor) -> tuple[dict[str, float], dict[str, float]]:
        x, y = self.train_x[idx], self.train_y[idx]
        with torch.no_grad():
            t_logits = self.teacher.model(x)  # [B, C], eval mode (run()'s scope)
        p = self.p
        kw = {"temperature": float(p["temperature"]), "lam": float(p["lam"]), "base": p["base"]}
        loss, parts = blockwise_components(self.stones(x), t_logits, y, ce_in_stones=bool(p["ce_in_stones"]), **kw)
        vals = torch.stack([loss.detach().float(), *(v.detach().float() for v in parts.values())]).tolist()
        if not all(v == v and abs(v) != float("inf") for v in vals):
            raise _NonFiniteLoss(self.step + 1, self.epoch, "NaN or infinite", self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = self._optimise()
        return dict(zip(["loss", *parts], vals)), {"lr": lr}

    def _evaluate(self) -> dict[str, float]:
        """The student's validation metrics and every stepping-stone's validation accuracy."""
        out = super()._evaluate()
        self.projectors.eval()
        with torch.no_grad():
            chunks = [self.stones(self.val_x[i : i + 512]) for i in range(0, self.val_x.shape[0], 512)]
        n = len(self.plan.student_stages)
        for k in range(n - 1):
            out[f"val_acc_stone{k + 1}"] = accuracy(torch.cat([c[k] for c in chunks]), self.val_y)
        return out

    def summary(self) -> dict:
        s = super().summary()
        last = self.history[-1] if self.history else {}
        n = len(self.plan.student_stages)
        s["blockwise"] = {
            "student_stages": list(self.plan.student_stages),
            "teacher_stages": list(self.plan.teacher_stages),
            "weights": [2.0 ** -(n - i) for i in range(1, n + 1)],
            "stone_val_acc": [last.get(f"val_acc_stone{i}") for i in range(1, n)] + [last.get("val_acc")],
        }
        return s


def run_blockwise(config: JobConfig, options: RunOptions) -> object:
    """Run a blockwise job (run_job's options); refused before anything runs when the split is."""
    pair = options.pair if options.pair is not None else pair_for_config(config)
    config.validate()
    plan = check(config, pair)
    config = replace(config, teacher_cache=False, cache_top_k=None)  # the stones run the teacher on every batch

    def make(cfg: JobConfig, prep: PreparedRun, report: Reporter, resume: bool) -> BlockwiseJob:
        return BlockwiseJob(cfg, prep, report, resume, plan)

    return run_with_job(make, config, replace(options, pair=pair))
