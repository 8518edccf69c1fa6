"""Partial-to-whole KD as a run (methods/14 §14.5).

    run_job(JobConfig(pair="digits", objective="pwkd", epochs=4, params={"teacher_epochs": 2}))

Stage 0 (decomposition): the teacher becomes a slimmable network (kdcore.slimmable: weight-sharing
sub-teachers T_k of widths r_1 < … < r_K = 1, switchable BN), trained with L_T = Σ_k CE(y, T_k(x))
every batch for `teacher_epochs` epochs, starting from the teacher's sliced weights (`teacher_init`
"pretrained") or from scratch. Stages k = 1..K: the student learns L_base(S, T_k) (§1 KD) with the
teacher frozen at width r_k; the epochs split equally (remainder to the last stage), the learning
rate follows a cosine from lr₀ to 0 restarted at every stage, the optimizer state (momentum) is
reset at every stage start, the student's weights carry over. Epoch rows hold `pwkd_stage` and
`pwkd_width`; the summary's "pwkd" holds the stages and every sub-teacher's validation accuracy.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.adapters import wrap
from kdcore.adapters.base import eval_mode
from kdcore.jobs.config import JobConfig
from kdcore.jobs.job import _Job
from kdcore.jobs.pair_source import pair_for_config
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import Reporter
from kdcore.jobs.resume_state import make_optimizer
from kdcore.jobs.run_options import RunOptions
from kdcore.jobs.runner import run_with_job
from kdcore.losses.pwkd import pwkd_schedule, stage_lr
from kdcore.methods import get_method, misfit_message
from kdcore.metrics import accuracy
from kdcore.pairs import Pair
from kdcore.slimmable import SlimmableCNN, conv_stages
from kdcore.validation import InvalidParameterError


def check(config: JobConfig, pair: Pair | None = None) -> list[tuple[float, int, int]]:
    """The stage plan, or the reason pwkd cannot run on this pair and config (before anything runs)."""
    config.validate()
    pair = pair if pair is not None else pair_for_config(config)
    task = pair.dataset.task if pair.dataset is not None else "classification"
    if task != "classification":
        raise InvalidParameterError(misfit_message(get_method("pwkd"), task))
    conv_stages(pair.teacher.model)
    return pwkd_schedule(config.epochs, config.resolved_terms()[0].params["widths"])


def train_slimmable(
    net: SlimmableCNN,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
    max_steps: int | None = None,
) -> list:
    """Stage 0: L_T = Σ_k CE(y, T_k(x)) every batch (Adam), in a seeded order; [mean L_T per epoch].
    max_steps (the job's, for smoke runs): stage 0 stops after that many steps too (its last epoch's mean
    is over the batches it saw)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    curve: list[float] = []
    steps = 0
    net.train()
    for _ in range(epochs):
        perm, total, seen = torch.randperm(x.shape[0], generator=gen).to(x.device), 0.0, 0
        for b in range(0, x.shape[0], batch):
            if max_steps is not None and steps >= max_steps:
                break
            idx = perm[b : b + batch]
            loss = sum(F.cross_entropy(net.set_width(r)(x[idx]), y[idx]) for r in net.widths)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            total, seen, steps = total + float(loss.detach()) * idx.numel(), seen + idx.numel(), steps + 1  # type: ignore[union-attr]
        if seen:
            curve.append(total / seen)
    opt.zero_grad(set_to_none=True)  # the frozen teacher keeps no gradients
    net.eval()
    return curve


class PWKDJob(_Job):
    """The runner's job with the slimmable teacher, its stages and the cyclic learning rate."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, resume: bool, plan: list) -> None:
        self.plan = plan
        self.p = config.resolved_terms()[0].params
        self.stage = 0
        super().__init__(config, prep, report, resume=resume)

    def _build_projectors(self) -> nn.ModuleDict:
        """Stage 0: train the slimmable teacher and use it as the (frozen) teacher from now on."""
        torch.manual_seed((self.cfg.seed + 2) % 2**63)
        net = SlimmableCNN(self.teacher.model, self.p["widths"], copy_weights=self.p["teacher_init"] == "pretrained")
        net = net.to(self.device)
        self.teacher_curve = train_slimmable(
            net, self.train_x, self.train_y, epochs=int(self.p["teacher_epochs"]), lr=float(self.p["teacher_lr"]),
            batch=self.cfg.batch_size, seed=self.cfg.seed, max_steps=self.cfg.max_steps,
        )  # fmt: skip
        net.requires_grad_(False)
        self.sub_acc = {}
        with eval_mode(net, no_grad=True):
            for r in net.widths:
                self.sub_acc[r] = accuracy(net.set_width(r)(self.val_x), self.val_y)
        net.set_width(1.0)
        accs = list(self.sub_acc.values())
        if any(b < a for a, b in zip(accs, accs[1:])):  # partial → whole needs growing sub-teachers
            shown = ", ".join(f"×{r:g}: {a:.1%}" for r, a in self.sub_acc.items())
            self._notice(
                f"The sub-teachers' validation accuracy does not grow with their width ({shown}): stage 0 "
                f"trained them too little for a partial-to-whole order. Raise teacher_epochs."
            )
        self.net = net
        self.teacher = wrap(net, name=f"slimmable {self.teacher.name}", output_size=self.teacher.output_size)
        return nn.ModuleDict()

    def _stage_of(self, epoch: int) -> int:
        return next(k for k, (_, s, e) in enumerate(self.plan) if s <= epoch < e)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        k = self._stage_of(epoch)
        width, start, end = self.plan[k]
        self.net.set_width(width)
        if epoch == start:  # a new stage: momentum reset, LR restarts
            self.opt = make_optimizer(self.cfg, self.params)
        self.stage, self.stage_first = k, start * self.spe
        self.stage_steps = max(1, min(end * self.spe, self.total_steps) - self.stage_first)
        return super()._train_epoch(epoch)

    def _step_lr(self) -> float:
        """The stage's learning rate (restarted per stage)."""
        return stage_lr(self.cfg.lr, self.step - self.stage_first, self.stage_steps)

    def _evaluate(self) -> dict[str, float]:
        out = super()._evaluate()
        if self.history or self.epoch:  # epoch rows: the stage the epoch trained in
            out["pwkd_stage"] = float(self.stage + 1)
            out["pwkd_width"] = float(self.plan[self.stage][0])
        return out

    def _initial_metrics(self) -> dict[str, float]:
        out = super()._initial_metrics()
        out.update({f"val_acc_subteacher_{r:g}": a for r, a in self.sub_acc.items()})
        return out

    def summary(self) -> dict:
        s = super().summary()
        s["pwkd"] = {
            "stages": [
                {"stage": k + 1, "width": r, "start_epoch": a + 1, "end_epoch": b, "teacher_val_acc": self.sub_acc[r]}
                for k, (r, a, b) in enumerate(self.plan)
            ],
            "teacher_epochs": int(self.p["teacher_epochs"]),
            "teacher_train_loss": self.teacher_curve,
        }
        return s


def run_pwkd(config: JobConfig, options: RunOptions) -> object:
    """Run a pwkd job (run_job's options); refused before anything runs when the plan is."""
    pair = options.pair if options.pair is not None else pair_for_config(config)
    plan = check(config, pair)
    config = replace(config, teacher_cache=False, cache_top_k=None)  # the teacher changes width: nothing to cache

    def make(cfg: JobConfig, prep: PreparedRun, report: Reporter, resume: bool) -> PWKDJob:
        return PWKDJob(cfg, prep, report, resume, plan)

    return run_with_job(make, config, replace(options, pair=pair))
