"""Zero-shot knowledge transfer as a run (methods/14 §14.6): a generator G trained against the teacher
(adversarial belief matching), the student trained on G's samples only. The dataset's train split is
never read: the validation split measures the student every epoch (and gives the probe that sizes
the generator), the test split once at the end (`test_acc`).

    run_job(JobConfig(pair="digits", objective="zskt", epochs=5))  # 1000 pseudo-batches, 200 an epoch

Per pseudo-batch z ~ N(0, I) [N, d_z]: n_G generator steps on L_G = −D, then n_S student steps on
L_S = D + β·Σ AT on x_p = G(z) from the updated generator (teacher outputs computed once per z);
Adam (lr_g, lr_s) with cosine annealing to 0 over the pseudo-batches, grad-norm clip on both. One
step row per pseudo-batch (`loss_s`, `d`, `at`, `loss_g`, `lr_s`, `lr_g`), the run's step counting
N_iter·(n_G + n_S). Generated samples from a fixed z at every epoch end (epoch 0: the untrained
generator) are the artifact `zskt_samples.safetensors` ({"epoch_<e>": [16, C, H, W]}).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter, eval_mode
from kdcore.jobs.config import JobConfig
from kdcore.jobs.evaluation import _batched_logits, validation_metrics
from kdcore.jobs.job import RunResult, _place_models
from kdcore.jobs.pair_source import pair_for_config
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import JobCancelled, Reporter
from kdcore.jobs.resolve import resolve_device
from kdcore.jobs.run_options import RunOptions
from kdcore.jobs.runner import run_with_job
from kdcore.losses.zskt import zero_shot_losses, zero_shot_schedule
from kdcore.methods import get_method, misfit_message
from kdcore.metrics import accuracy
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError

SAMPLES_FILE = "zskt_samples.safetensors"
N_ITER = 1000  # pseudo-batches when `pseudo_batches` is unset (§14.6 "tiny"), spread over the epochs
N_SHOWN = 16  # generated samples kept per epoch for the view


class Generator(nn.Module):
    """The ZSKT generator, scaled down (§14.6 "tiny"): Linear(d_z → w·(H/4)·(W/4)), BN, two blocks
    [×2 upsample, conv3×3, BN, LeakyReLU 0.2] (w → w, w → w/2), conv3×3 → C, BN (affine)."""

    def __init__(self, z_dim: int, shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        c, h, w = shape
        self.base = (width, h // 4, w // 4)
        self.fc = nn.Linear(z_dim, width * (h // 4) * (w // 4))
        self.bn0 = nn.BatchNorm2d(width)
        block = lambda a, b: [nn.Upsample(scale_factor=2), nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b),  # noqa: E731
                              nn.LeakyReLU(0.2)]  # fmt: skip
        self.body = nn.Sequential(*block(width, width), *block(width, width // 2), nn.Conv2d(width // 2, c, 3, padding=1),
                                  nn.BatchNorm2d(c))  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:  # z: [N, d_z]
        return self.body(self.bn0(self.fc(z).view(z.shape[0], *self.base)))  # [N, C, H, W]


@dataclass(frozen=True)
class ZSKTPlan:
    """What the run will do, checked before anything runs."""

    shape: tuple[int, int, int]  # the input images [C, H, W]
    pseudo_batches: int  # N_iter
    per_epoch: list[int]  # pseudo-batches of each epoch
    at_layers: dict[str, str]  # {student layer: teacher layer}


def _images_shape(pair: Pair) -> tuple[int, int, int]:
    assert pair.dataset is not None
    x = pair.dataset.split("val").inputs
    if x.dim() != 4 or not x.is_floating_point() or x.shape[2] % 4 or x.shape[3] % 4:
        raise InvalidParameterError(
            f"zskt's generator makes images [C, H, W] with H and W divisible by 4; the pair {pair.name!r} has "
            f"inputs of shape {tuple(x.shape[1:])} ({x.dtype}). Use an image pair (digits, shapes)."
        )
    return cast(tuple[int, int, int], tuple(x.shape[1:]))


def plan_zskt(config: JobConfig, pair: Pair) -> ZSKTPlan:
    """Refuse a language model or non-image data, and AT layers that do not pair; reads no training data."""
    method, task = get_method("zskt"), pair.dataset.task if pair.dataset is not None else "classification"
    if task not in method.tasks:
        raise InvalidParameterError(misfit_message(method, task))
    shape = _images_shape(pair)
    p = config.resolved_terms()[0].params
    n_iter = int(p["pseudo_batches"] or N_ITER)
    if config.max_steps is not None:
        n_iter = max(1, min(n_iter, config.max_steps // (p["n_g"] + p["n_s"])))
    zero_shot_schedule(n_iter, p["n_g"], p["n_s"])
    per = [n_iter // config.epochs + (e < n_iter % config.epochs) for e in range(config.epochs)]
    return ZSKTPlan(shape, n_iter, [k for k in per if k], _at_layers(p, pair))


def _at_layers(p: dict, pair: Pair) -> dict[str, str]:
    """The AT pairs given, else the feature layers paired by spatial size (as blockwise pairs stages)."""
    from kdcore.jobs.blockwise import default_stage_map

    assert pair.dataset is not None
    probe = pair.dataset.split("val").inputs[:2]
    layers = p["at_layers"] or (default_stage_map(pair.student, pair.teacher, probe) if p["beta"] > 0 else {})
    s_f, t_f = pair.student.capture(probe, list(layers)), pair.teacher.capture(probe, list(layers.values()))
    for s, t in layers.items():
        if s_f[s].dim() != 4 or t_f[t].dim() != 4 or (not p["resize"] and s_f[s].shape[2:] != t_f[t].shape[2:]):
            raise InvalidParameterError(
                f"zskt's attention pair {s!r} → {t!r} gives shapes {tuple(s_f[s].shape[1:])} and "
                f"{tuple(t_f[t].shape[1:])}: AT needs conv maps of the same spatial size. Pair other layers "
                f"(params.at_layers), set resize true, or beta 0."
            )
    return dict(layers)


def check(config: JobConfig, pair: Pair | None = None) -> ZSKTPlan:
    config.validate()
    return plan_zskt(config, pair if pair is not None else pair_for_config(config))


def _prep(config: JobConfig, pair: Pair, plan: ZSKTPlan) -> PreparedRun:
    """What run_job's frame reads (device, step count, a fingerprint of the data used: the val split)."""
    from kdcore.jobs.teacher_cache import tensor_fingerprint

    assert pair.dataset is not None
    val = pair.dataset.split("val")
    val = val.subset(config.val_size) if config.val_size is not None else val
    p = config.resolved_terms()[0].params
    steps = plan.pseudo_batches * (p["n_g"] + p["n_s"])
    return PreparedRun(
        pair, resolve_device(config.device), config.resolved_terms(), [], [], val, val, pair.dataset.task,
        tensor_fingerprint(val.inputs, val.targets), plan.pseudo_batches, steps, frozenset(),
    )  # fmt: skip


def _cosine(lr0: float, k: int, n: int) -> float:
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * k / max(1, n)))


class ZSKTJob:
    """The adversarial loop (see the module docstring); run() returns the RunResult."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, plan: ZSKTPlan) -> None:
        self.cfg, self.prep, self.report, self.plan = config, prep, report, plan
        self.p = config.resolved_terms()[0].params
        self.device, self.step, self.epoch = prep.device, 0, 0
        torch.manual_seed(config.seed)
        teacher, self.student = _place_models(prep.pair, config, self.device)
        self.teacher: ModelAdapter = teacher.clone(reinit=False)  # frozen, still differentiable for G
        self.teacher.model.requires_grad_(False).eval()
        self.gen = Generator(int(self.p["z_dim"]), plan.shape).to(self.device)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=float(self.p["lr_g"]))
        self.opt_s = torch.optim.Adam(self.student.model.parameters(), lr=float(self.p["lr_s"]))
        self.rng = torch.Generator().manual_seed(config.seed + 7)
        self.z_shown = torch.randn(N_SHOWN, int(self.p["z_dim"]), generator=self.rng).to(self.device)
        self.val_x, self.val_y = prep.val.inputs.to(self.device), prep.val.targets.to(self.device)
        self.teacher_val = _batched_logits(self.teacher, self.val_x, self.device)
        self.samples: dict[str, Tensor] = {}
        self.history: list[dict] = []
        self.train_time = 0.0

    # -- one pseudo-batch --
    def _s_l(self) -> list[str]:
        return list(self.plan.at_layers)

    def _generator_step(self, z: Tensor, lr: float) -> float:
        x = self.gen(z)  # [N, C, H, W], graph into G
        t = self.teacher.model(x)  # [N, K]: frozen weights, differentiable input
        s = self.student.model(x)
        _, loss_g = zero_shot_losses(
            s, t, temperature=float(self.p["temperature"]), kl_reduction=self.p["kl_reduction"]
        )
        self._apply(self.opt_g, self.gen.parameters(), loss_g, lr)
        return float(loss_g.detach())

    def _student_step(self, x: Tensor, t: Tensor, t_acts: list[Tensor], lr: float) -> tuple[float, float, float]:
        s, feats = self.student.forward_features(x, self._s_l())
        kw = {"temperature": float(self.p["temperature"]), "kl_reduction": self.p["kl_reduction"]}
        loss_s, neg_d = zero_shot_losses(s, t, [feats[k] for k in self._s_l()], t_acts, beta=float(self.p["beta"]),
                                         resize=bool(self.p["resize"]), **kw)  # fmt: skip
        self._apply(self.opt_s, self.student.model.parameters(), loss_s, lr)
        d = -float(neg_d.detach())
        return float(loss_s.detach()), d, float(loss_s.detach()) - d

    def _apply(self, opt: torch.optim.Optimizer, params: Any, loss: Tensor, lr: float) -> None:
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(
                f"The loss became NaN or infinite at step {self.step}: lower lr_g / lr_s or grad_clip."
            )
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params), float(self.p["grad_clip"]))
        opt.step()

    def _pseudo_batch(self, k: int) -> dict[str, float]:
        n_iter = self.plan.pseudo_batches
        lr_g, lr_s = _cosine(float(self.p["lr_g"]), k, n_iter), _cosine(float(self.p["lr_s"]), k, n_iter)
        z = torch.randn(int(self.p["batch"]), int(self.p["z_dim"]), generator=self.rng).to(self.device)
        loss_g = sum(self._generator_step(z, lr_g) for _ in range(int(self.p["n_g"]))) / int(self.p["n_g"])
        with torch.no_grad():
            x = self.gen(z)  # from the updated generator, fixed for the student steps
            t, t_feats = self.teacher.forward_features(x, list(self.plan.at_layers.values()))
        t_acts = [t_feats[v] for v in self.plan.at_layers.values()]
        rows = [self._student_step(x, t, t_acts, lr_s) for _ in range(int(self.p["n_s"]))]
        self.step += int(self.p["n_g"]) + int(self.p["n_s"])
        mean = lambda i: sum(r[i] for r in rows) / len(rows)  # noqa: E731
        return {"loss": mean(0), "loss_s": mean(0), "d": mean(1), "at": mean(2), "loss_g": loss_g,
                "lr_s": lr_s, "lr_g": lr_g}  # fmt: skip

    # -- epochs, evaluation, the run --
    def _evaluate(self) -> dict[str, float]:
        with eval_mode(self.student.model, no_grad=True):
            logits = _batched_logits(self.student, self.val_x, self.device)
        return validation_metrics(self.prep.task, logits, self.val_y, self.teacher_val)

    def _keep_samples(self) -> None:
        """G(z_shown) in eval mode (its BN's running statistics), kept per epoch for the view."""
        with eval_mode(self.gen, no_grad=True):
            self.samples[f"epoch_{self.epoch}"] = self.gen(self.z_shown).detach().cpu().float()
        store, run_id = self.report.store, self.report.run_id
        if store is not None and run_id is not None:
            from safetensors.torch import save

            store.save_artifact(run_id, SAMPLES_FILE, save(dict(self.samples)), kind="samples", epoch=self.epoch)

    def _epoch(self, first: int, count: int) -> None:
        self.epoch += 1
        self.gen.train()
        self.student.model.train()
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for k in range(first, first + count):
            self.report.check_cancel()
            values = self._pseudo_batch(k)
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + v
            self.report.log.add("step", self.step, self.epoch, values)
            self.report.log.maybe_flush()
            self.report.beat(self.step, self.epoch)
            self.report.emit("step", self.step, self.epoch, metrics=values)
        self.train_time += time.perf_counter() - t0
        row = {f"train_{n}": v / count for n, v in sums.items() if not n.startswith("lr")}
        row.update(self._evaluate())
        self.report.log.add("epoch", self.step, self.epoch, row)
        self.report.log.flush()
        self.history.append({"epoch": self.epoch, "step": self.step, **row})
        self._keep_samples()
        self.report.beat(self.step, self.epoch, now=True)
        self.report.emit("epoch", self.step, self.epoch, metrics=row)

    def run(self) -> RunResult:
        try:
            self.report.emit("start", 0, 0, device=str(self.device))
            teacher = {"teacher_val_acc": accuracy(self.teacher_val, self.val_y)}
            self.report.log.add("epoch", 0, 0, {**teacher, **self._evaluate()})
            self._keep_samples()
            with eval_mode(self.teacher.model):
                first = 0
                for count in self.plan.per_epoch:
                    self._epoch(first, count)
                    first += count
            self._save_student()
            return self._finish("completed", None)
        except JobCancelled:
            return self._finish("cancelled", f"Cancelled at step {self.step} (epoch {self.epoch}).")
        except FloatingPointError as exc:
            return self._finish("failed", str(exc))
        except (Exception, KeyboardInterrupt) as exc:
            self.report.mark_crash(exc, self.step, self.epoch)
            raise

    def _save_student(self) -> None:
        store, run_id = self.report.store, self.report.run_id
        if store is not None and run_id is not None:
            meta = {"run_id": run_id, "epoch": self.epoch}
            store.save_student(run_id, self.student.model.state_dict(), epoch=self.epoch, final=True, metadata=meta)

    def _finish(self, state: str, error: str | None) -> RunResult:
        s = self.summary()
        self.report.finish(state, error, s, self.step, self.epoch)
        return RunResult(self.report.run_id, state, s, error, self.step)

    def summary(self) -> dict:
        s: dict = {"steps": self.step, "epochs": self.epoch, "metric": "val_acc"}
        if self.history:
            best = max(self.history, key=lambda h: h["val_acc"])
            last = self.history[-1]
            s.update({"final_val_acc": last["val_acc"], "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
                      "final_val_loss": last["val_loss"], "final_train_loss": last.get("train_loss")})  # fmt: skip
        if self.train_time > 0:
            s["steps_per_s"] = self.step / self.train_time
        s["teacher_val_acc"] = accuracy(self.teacher_val, self.val_y)
        s["zskt"] = {"pseudo_batches": self.plan.pseudo_batches, "at_layers": self.plan.at_layers,
                     "test_acc": self._test_accuracy(), "samples": SAMPLES_FILE, "train_split_read": False}  # fmt: skip
        return s

    def _test_accuracy(self) -> float | None:
        ds = self.prep.pair.dataset
        if ds is None:
            return None
        test = ds.split("test")
        with eval_mode(self.student.model, no_grad=True):
            logits = _batched_logits(self.student, test.inputs.to(self.device), self.device)
        return accuracy(logits, test.targets.to(self.device))


def run_zskt(config: JobConfig, options: RunOptions) -> object:
    """Run a zskt job (run_job's options); refused before anything runs when the plan is. A resumed
    zskt run starts again from step 0 (its generator is not saved)."""
    config.validate()
    pair = options.pair if options.pair is not None else pair_for_config(config)
    plan = plan_zskt(config, pair)

    def make(cfg: JobConfig, prep: PreparedRun, report: Reporter, _resume: bool) -> ZSKTJob:
        if report.store is not None and report.run_id is not None:
            report.store.truncate_metrics(report.run_id, after_step=-1)
        return ZSKTJob(cfg, prep, report, plan)

    return run_with_job(make, config, replace(options, pair=pair), prep=_prep(config, pair, plan))
