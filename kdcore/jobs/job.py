"""The runner's job: one run's training, built (models, data, optimizer, teacher cache, resume state) in
`_Job.__init__` and run by `_Job.run()`, which returns the `RunResult`.

    job = _Job(config, prep, reporter, resume=False)   # prep = prepare_run(config); runner.py builds it
    result = job.run()

The strategy jobs (byot_job.py, education_job.py, onpolicy_job.py, sequence_job.py) and the procedures
(blockwise.py, pwkd.py, weight_distill_job.py, distributed.py) subclass `_Job` or reuse its pieces;
runner.py picks the class (`job_class`) and frames the run (its row, lease, reporter, crash handling).
`_RESUME_EVERY_S` is read here at every epoch end: tests that want a resume state at each epoch set
`kdcore.jobs.job._RESUME_EVERY_S`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter, eval_mode
from kdcore.jobs import schedules as sched
from kdcore.jobs.config import JobConfig, resolved_student_init
from kdcore.jobs.curriculum_pool import PacedPool
from kdcore.jobs.evaluation import (
    _batched_logits,
    forward_with_attentions,
)
from kdcore.jobs.heldout import fixed_model_exact_match, heldout_exact_match, heldout_prompts
from kdcore.jobs.lm_eval import checkpoint_probes, student_validation, teacher_validation
from kdcore.jobs.lm_step import chunked_problem, chunked_token_loss, probe_head_matches
from kdcore.jobs.objectives import (
    StepTensors,
    build_projectors,
    compute_loss,
    needs_attention,
)
from kdcore.jobs.onpolicy_checks import model_context
from kdcore.jobs.performance import autocast, configure_models, split_batch
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import JobCancelled, Reporter
from kdcore.jobs.resolve import (
    adapter_to,
    model_device,
)
from kdcore.jobs.resume_state import (
    RESUME_FILE,
    ResumePoint,
    ResumeUnreadable,
    last_good_checkpoint,
    make_optimizer,
    restore_resume,
    resume_bytes,
)
from kdcore.jobs.sanity import sanity_warnings
from kdcore.jobs.step_weights import objective_unit, unit_counts, unit_weights
from kdcore.jobs.store import RunStore, StoreError
from kdcore.jobs.student_init import check_student_init, init_notice, pair_from_teacher, student_from_teacher
from kdcore.jobs.teacher_cache import TeacherCache, build_cache, compute_teacher_outputs
from kdcore.methods import get_method
from kdcore.methods.embedding import POOLED_PROJECTOR
from kdcore.pairs import Pair

_RESUME_EVERY_S = 5.0  # resume state is saved at an epoch end at most this often (and at the last)
_SEED_MOD = 2**63  # derived seeds stay in the range torch's generators take
TRAIN_PROBE = 512  # the first training samples scored at each epoch end (train_acc, train_agreement)
TRAIN_PROBE_SEQUENCES = 64  # ... sequences, for language models (logits are [N, L, V])


class _NonFiniteLoss(Exception):
    def __init__(self, step: int, epoch: int, what: str, config: JobConfig | None = None) -> None:
        self.step, self.epoch, self.what = step, epoch, what
        odd = sanity_warnings(config) if config is not None else []
        fix = " ".join(odd) if odd else "Lower the learning rate (lr), clip gradients (grad_clip) or check the inputs."
        super().__init__(f"The loss became {what} at step {step} (epoch {epoch}); the run stopped there. {fix}")


@dataclass
class RunResult:
    """How a job ended."""

    run_id: str | None  # id in the run store (None without a store)
    state: str  # "completed" | "failed" | "cancelled" | "interrupted"
    metrics: dict = field(default_factory=dict)  # final summary (final/best validation metrics, steps, speed)
    error: str | None = None  # why it failed, in plain English
    step: int = 0  # steps done
    notices: list[str] = field(default_factory=list)  # what the user must know (e.g. where a resume restarted)


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the peak learning rate at a step (0-based): linear warm-up, then the schedule."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)  # progress in [0, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "linear":
        return max(0.0, 1.0 - t)
    if schedule == "step":
        return 0.1 ** (int(t >= 0.5) + int(t >= 0.75))
    return 1.0


def _place_models(pair: Pair, config: JobConfig, device: torch.device) -> tuple[ModelAdapter, ModelAdapter]:
    """(teacher, student) on the device: the teacher as it is (a copy when it must move), the student a
    clone as `student_init` says: "reinit" re-initialised (seeded), "pretrained" with the pair student's
    weights, "from_teacher" the teacher's layer-subset copy (built by pair_for_config for a teacher
    directory; for a registered pair, the pair's student architecture with the teacher's blocks,
    kdcore.jobs.student_init). The pair's own adapters are never trained or mutated."""
    teacher = (
        pair.teacher if model_device(pair.teacher) == device else adapter_to(pair.teacher.clone(reinit=False), device)
    )
    if pair_from_teacher(config):  # a registered pair's student architecture, the teacher's blocks
        return teacher, adapter_to(student_from_teacher(config, pair)[0], device)
    reinit = resolved_student_init(config) == "reinit"
    student = adapter_to(pair.student.clone(reinit=reinit, seed=config.seed if reinit else None), device)
    return teacher, student


class _Job:
    """One run's training: built (models, data, optimizer, cache, resume state) in __init__, run by run()."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, *, resume: bool) -> None:
        self.cfg, self.report, self.log = config, report, report.log
        self.notices: list[str] = []
        self.store, self.run_id = report.store, report.run_id
        self.device, self.task, self.terms = prep.device, prep.task, prep.terms
        self.s_layers, self.t_layers = prep.s_layers, prep.t_layers
        self.spe, self.total_steps, self.ckpt_epochs = prep.steps_per_epoch, prep.total_steps, prep.checkpoint_epochs
        encoder = prep.task == "encoder" and config.ce_weight is None  # no labels: no CE unless asked
        self.ce_weight = 0.0 if encoder else config.resolved_ce_weight()
        self.need_attn = needs_attention(self.terms)
        self.step, self.epoch, self.start_epoch = 0, 0, 0
        self.history: list[dict] = []
        self.train_time = 0.0
        self._last_resume_save = time.monotonic()
        self._check_teacher_mode = True
        torch.manual_seed(config.seed)
        self.teacher, self.student = _place_models(prep.pair, config, self.device)
        if pair_from_teacher(config):
            self._notice(init_notice(check_student_init(config, prep.pair)))
        self.teacher, self.student = configure_models(config, self.teacher, self.student, self.need_attn)
        self.train_x, self.train_y = prep.train.inputs.to(self.device), prep.train.targets.to(self.device)
        mask = prep.train.extras.get("attention_mask")  # [N, L] of padded token data (HF text), else None
        self.train_mask = None if mask is None else mask.to(self.device)
        self.chunked = self._use_chunked()
        self.val_x, self.val_y = prep.val.inputs.to(self.device), prep.val.targets.to(self.device)
        self.projectors = self._build_projectors()
        self.params = list(self.student.model.parameters()) + list(self.projectors.parameters())
        self.opt = make_optimizer(config, self._param_groups())
        self.cache: TeacherCache | None = self._build_cache() if config.teacher_cache else None
        self.pool = self._build_pool()  # a curriculum's paced pool (methods/13 §13.3b), else None
        self._teacher_training = 0.0  # 1 when the teacher was seen in train mode during the epoch
        self.heldout = heldout_prompts(prep.pair.dataset, config.heldout_prompts)  # causal LMs' prompts, or None
        self.teacher_val = teacher_validation(self.teacher, self.val_x, self.val_y, self.task, self.device)
        n_fit = TRAIN_PROBE_SEQUENCES if prep.task == "causal_lm" else TRAIN_PROBE  # training fit, streamed
        fit_x, fit_y = self.train_x[:n_fit], self.train_y[:n_fit]
        self.teacher_train = teacher_validation(self.teacher, fit_x, fit_y, self.task, self.device)
        if resume:
            self._load_resume()
        else:
            self.log.add("epoch", 0, 0, self._initial_metrics())

    def _initial_metrics(self) -> dict[str, float]:
        """The epoch-0 row: the teacher's validation metrics and the student's before its first step
        (val_loss, val_acc, val_agreement; train_acc, train_agreement), so every run shows its before/after."""
        teacher = {**self.teacher_val.metrics}
        if self.heldout is not None:  # the teacher's exact match: the ceiling of the quality curve
            teacher["teacher_heldout_em"] = fixed_model_exact_match(
                self.teacher, self.heldout, model_context(self.teacher)
            )
        return {**teacher, **self._evaluate(), **self._train_fit()}

    def _use_chunked(self) -> bool:
        """Whether the token objective runs chunk by chunk from hidden states (kdcore.jobs.lm_step)."""
        if not self.cfg.lm_chunked:
            return False
        problem = chunked_problem(
            self.task, self.terms, teacher_cache=self.cfg.teacher_cache, student=self.student, teacher=self.teacher
        )
        return problem is None and probe_head_matches(self.student, self.teacher, self.train_x[:1, :8])

    def _build_projectors(self) -> nn.ModuleDict:
        """Projectors from student to teacher feature widths, sized by a probe pass on 2 samples."""
        if not self.s_layers and not any(get_method(t.name).modules for t in self.terms):
            return nn.ModuleDict()
        if not self.s_layers:  # learned parts without features (CTKD's temperature)
            torch.manual_seed((self.cfg.seed + 1) % _SEED_MOD)
            return build_projectors(self.terms, {}, {}).to(self.device)
        with torch.no_grad():
            _, sf = self.student.forward_features(self.train_x[:2], self.s_layers)
            with eval_mode(self.teacher.model):
                _, tf = compute_teacher_outputs(self.teacher, self.train_x[:2], self.t_layers)
        torch.manual_seed((self.cfg.seed + 1) % _SEED_MOD)
        return build_projectors(self.terms, sf, tf).to(self.device)

    def _param_groups(self) -> list:
        """The trained parameters; those of learned parts that ask for none (CTKD's θ with
        temp_weight_decay=False) in a group of their own without weight decay."""
        bare = {
            id(p) for m in self.projectors.modules() if getattr(m, "no_weight_decay", False) for p in m.parameters()
        }
        if not bare:
            return self.params
        rest = [p for p in self.params if id(p) not in bare]
        return [{"params": rest}, {"params": [p for p in self.params if id(p) in bare], "weight_decay": 0.0}]

    def _build_pool(self) -> PacedPool | None:
        """The paced pool of a curriculum term: the training set ordered by the teacher's difficulty."""
        term = next((t for t in self.terms if get_method(t.name).paced), None)
        if term is None:
            return None
        with eval_mode(self.teacher.model):
            logits = _batched_logits(self.teacher, self.train_x, self.device)  # [N, C]
        return PacedPool.build(logits.float(), self.train_y, term.params, self.cfg.seed)

    def _build_cache(self) -> TeacherCache:
        """The teacher's outputs on the training set, computed once (or read from disk)."""
        cfg, t0 = self.cfg, time.perf_counter()
        cache_dir = None if self.store is None else self.store.root / "cache"
        with eval_mode(self.teacher.model):
            cache = build_cache(
                self.teacher,
                self.train_x,
                self.t_layers,
                batch_size=max(256, cfg.batch_size),
                device=self.device,
                top_k=cfg.cache_top_k,
                cache_dir=cache_dir,
                key_parts={"pair": cfg.pair, "n": self.train_x.shape[0]},
            )
        self.log.add(
            "epoch",
            0,
            0,
            {
                "cache_mass_kept": cache.mass_kept,
                "cache_from_disk": float(cache.from_disk),
                "cache_build_s": time.perf_counter() - t0,
            },
        )
        if cache.notice:
            self._notice(cache.notice)
        return cache

    # -- reporting --
    def _run_store(self) -> tuple[RunStore, str]:
        """The run's store and id (the final weights and the resume state go there)."""
        if self.store is None or self.run_id is None:
            raise ValueError(
                "Resuming a run needs the run store that recorded it. Got use_store=False; "
                "pass the store (and run_id) the run was recorded in."
            )
        return self.store, self.run_id

    def _emit(self, event: str, **data: Any) -> None:
        self.report.emit(event, self.step, self.epoch, **data)

    def _notice(self, message: str) -> None:
        """Something the user must be told (kept in the run's summary, sent as a "notice" event)."""
        self.notices.append(message)
        self._emit("notice", message=message)

    def _finish(self, state: str, error: str | None, summary: dict) -> RunResult:
        if self.notices:
            summary = dict(summary, notices=list(self.notices))
        self.report.finish(state, error, summary, self.step, self.epoch)
        return RunResult(self.run_id, state, summary, error, self.step, list(self.notices))

    # -- main --
    def run(self) -> RunResult:
        try:
            self._emit("start", device=str(self.device))
            with eval_mode(self.teacher.model):  # the teacher is in eval mode for the whole loop
                self._train_epochs()
            return self._finish("completed", None, self.summary())
        except JobCancelled:
            return self._finish("cancelled", f"Cancelled at step {self.step} (epoch {self.epoch}).", self.summary())
        except _NonFiniteLoss as exc:
            self.log.add("step", exc.step, exc.epoch, {"nonfinite_loss": 1.0})
            return self._finish("failed", str(exc), dict(self.summary(), failed_step=exc.step))
        except (Exception, KeyboardInterrupt) as exc:
            self.report.mark_crash(exc, self.step, self.epoch)
            raise

    # -- training --
    def _teacher_batch(self, idx: Tensor, x: Tensor) -> tuple[Tensor, dict]:
        if self.cache is not None:
            return self.cache.get(idx)
        self._note_teacher_mode()
        return compute_teacher_outputs(self.teacher, x, self.t_layers)  # inside run()'s eval scope

    def _note_teacher_mode(self) -> None:
        """Evidence for the doctor, once per epoch: the mode the teacher really ran in."""
        if self._check_teacher_mode:
            self._check_teacher_mode = False
            self._teacher_training = float(any(m.training for m in self.teacher.model.modules()))

    def _train_epochs(self) -> None:
        for epoch in range(self.start_epoch, self.cfg.epochs):
            if self.step >= self.total_steps:
                break
            self.epoch = epoch + 1
            self.student.model.train()
            self.projectors.train()
            t_epoch = time.perf_counter()
            means = self._train_epoch(epoch)
            self.train_time += time.perf_counter() - t_epoch
            self._end_epoch(means)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch's steps (in the order of a generator seeded by (seed, epoch)); the components' means."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) % _SEED_MOD)
        perm = torch.randperm(self.train_x.shape[0], generator=gen).to(self.device)
        sums: dict[str, float] = {}
        count = 0
        for b in range(self.spe):
            if self.step >= self.total_steps:
                break
            self.report.check_cancel()
            if self.pool is not None:  # a curriculum: the batch comes from the paced pool
                idx = self.pool.draw(self.step, cfg.batch_size, gen).to(self.device)
            else:
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            self._logged_step(idx, sums)
            count += 1
        return {f"train_{k}": v / max(count, 1) for k, v in sums.items()}

    def _logged_step(self, idx: Tensor, sums: dict[str, float], **tags: float) -> None:
        """One training step on the batch `idx` (education_job.py's epochs too): its values added into `sums`
        (the epoch's means), logged as a step row with its extras and `tags`, a heartbeat and a "step" event."""
        values, extras = self._train_step(idx)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        values.update(extras, **tags)
        self.log.add("step", self.step, self.epoch, values)
        self.log.maybe_flush()
        self.report.beat(self.step, self.epoch)
        self._emit("step", metrics=values)

    def _step_tensors(self, idx: Tensor) -> StepTensors:
        """The batch's student and teacher outputs (attention weights too when an objective needs them)."""
        x, y = self.train_x[idx], self.train_y[idx]
        t_logits, t_feats = self._teacher_batch(idx, x)
        s_logits, s_feats = self.student.forward_features(x, self.s_layers)
        batch = StepTensors(self.task, s_logits, t_logits, y, s_feats, t_feats, self.projectors)
        batch.attention_mask = None if self.train_mask is None else self.train_mask[idx]  # [B, L]
        batch.step, batch.epoch = self.step, self.epoch  # where the run is: CTKD's λ_e, warm-ups
        batch.total_steps, batch.epochs = self.total_steps, self.cfg.epochs
        if self.need_attn:
            batch.student_logits, batch.student_attn = forward_with_attentions(self.student, x)
            with eval_mode(self.teacher.model, no_grad=True):
                batch.teacher_attn = forward_with_attentions(self.teacher, x)[1]
        return batch

    def _micro_loss(self, idx: Tensor, terms: list, ce_weight: float) -> tuple[Tensor, dict[str, Tensor], float]:
        """(loss, components, 1.0 if the teacher's logits carried a graph) of one micro-batch, in the
        job's precision; chunk by chunk from hidden states when ``self.chunked``."""
        with autocast(self.cfg.precision, self.device):
            if self.chunked:
                self._note_teacher_mode()
                x, y = self.train_x[idx], self.train_y[idx]
                loss, comps = chunked_token_loss(self.student, self.teacher, x, y, terms[0], ce_weight)
                return loss, comps, 0.0  # the teacher side ran under no_grad
            batch = self._step_tensors(idx)
            try:
                loss, comps = compute_loss(terms, ce_weight, batch)
            except ValueError:
                if not bool(torch.isfinite(batch.student_logits.detach()).all()):
                    raise _NonFiniteLoss(
                        self.step + 1, self.epoch, "NaN or infinite (the student's logits were)", self.cfg
                    ) from None
                raise
        return loss, comps, float(batch.teacher_logits.requires_grad)

    def _train_step(self, idx: Tensor) -> tuple[dict[str, float], dict[str, float]]:
        """One optimiser step over ``grad_accum`` micro-batches (each loss × its share of the step's units:
        samples, or kept tokens for token-mean LM objectives, kdcore.jobs.step_weights), with the job's
        schedules applied; returns (loss components, the same weighted means; other per-step values)."""
        self.opt.zero_grad(set_to_none=True)
        terms, ce_weight, logged = self._scheduled()
        unit = objective_unit(self.task, terms, ce_weight)
        totals: Tensor | None = None
        names: list[str] = []
        teacher_grad = 0.0
        for part, share in self._micro_batches(idx, unit):
            loss, comps, t_grad = self._micro_loss(part, terms, ce_weight)
            names, teacher_grad = ["loss", *comps], max(teacher_grad, t_grad)
            vals = torch.stack([loss.detach().float(), *(c.detach().float() for c in comps.values())]) * share
            first = float(vals[0])
            if not math.isfinite(first):
                raise _NonFiniteLoss(self.step + 1, self.epoch, "NaN" if math.isnan(first) else "infinite", self.cfg)
            totals = vals if totals is None else totals + vals
            (loss * share).backward()
        assert totals is not None  # a step has at least one sample
        totals = self._reduce_step(totals)
        lr = self._optimise()
        extras = {"lr": lr, **logged}
        if self.step == 1:
            extras["teacher_logits_grad"] = teacher_grad
        return dict(zip(names, totals.tolist())), extras

    def _micro_batches(self, idx: Tensor, unit: str) -> list[tuple[Tensor, float]]:
        """The micro-batches of this process's rows of the step and their shares of the step's `unit`s."""
        return self._weighted(idx, split_batch(self._own_rows(idx), self.cfg.grad_accum), unit)

    def _own_rows(self, idx: Tensor) -> Tensor:
        """The rows of the step's batch this process trains on: all of them (data_parallel.py: a rank's slice)."""
        return idx

    def _weighted(self, idx: Tensor, parts: list[Tensor], unit: str) -> list[tuple[Tensor, float]]:
        """(part, its share of the units of the global batch idx) for the parts that hold any: a part of
        padding or prompt only adds nothing (its loss would have no position to average). When no part
        holds any (a rank's slice), one row of idx that does, weighted 0, so the step still has its components."""
        weights = unit_weights(idx, parts, self.train_y, self.train_mask, unit)
        live = [(part, w) for part, w in zip(parts, weights, strict=True) if w > 0]
        if live:
            return live
        rows = unit_counts(self.train_y[idx], None if self.train_mask is None else self.train_mask[idx], unit)
        return [(idx[int(rows.argmax())].reshape(1), 0.0)]

    def _reduce_step(self, totals: Tensor) -> Tensor:
        """The logged loss components once backward is done (distributed.py: summed, with the gradients, over ranks)."""
        return totals

    def _scheduled(self) -> tuple[list, float, dict[str, float]]:
        """(terms, ce_weight) of this step with the job's schedules applied, and what the step logs:
        the scheduled values, CTKD's learned temperature (before θ moves), a curriculum's pool size."""
        epochs = math.ceil(self.total_steps / self.spe)  # the run's epochs (fewer than cfg.epochs under max_steps)
        values = sched.scheduled_values(self.cfg.schedules, self.step, self.epoch, self.total_steps, epochs)
        terms, ce_weight = sched.apply_values(self.terms, self.ce_weight, values)
        logged = sched.step_metrics(values, self.terms, self.projectors, self.epoch)
        if self.pool is not None:
            logged["sched_pool"] = float(self.pool.size(self.step))
        return terms, ce_weight, logged

    def _step_lr(self) -> float:
        """This step's learning rate: the peak rate times the schedule's factor (pwkd, weight distillation:
        restarted per stage or phase)."""
        return self.cfg.lr * lr_factor(self.step, self.total_steps, self.cfg.schedule, self.cfg.warmup_steps)

    def _optimise(self) -> float:
        """One optimizer step on the accumulated gradients at the step's learning rate; returns that rate."""
        lr = self._step_lr()
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.cfg.grad_clip is not None:
            self._clip_gradients(self.cfg.grad_clip)
        self.opt.step()
        self.step += 1
        return lr

    def _clip_gradients(self, max_norm: float) -> None:
        """Scale the gradients to a total 2-norm of at most max_norm (fsdp.py: over sharded gradients too)."""
        torch.nn.utils.clip_grad_norm_(self.params, max_norm)

    # -- epoch end: validation, checkpoints, resume state --
    def _evaluate(self) -> dict[str, float]:
        proj = self.projectors[POOLED_PROJECTOR] if POOLED_PROJECTOR in self.projectors else None
        values = student_validation(
            self.student, self.val_x, self.val_y, self.task, self.teacher_val, self.device, projector=proj
        )
        if self.heldout is not None:  # greedy exact match on held-out prompts (kdcore.jobs.heldout)
            values["heldout_em"] = heldout_exact_match(self.student, self.heldout, model_context(self.student))
        return values

    def _train_fit(self) -> dict[str, float]:
        """train_acc and train_agreement (with the teacher) on the first TRAIN_PROBE training samples, in
        eval mode: with val_acc, the evidence of overfitting to the teacher (doctor check overfit.teacher)."""
        if self.task == "encoder":  # no labels, no top-1 to agree on
            return {}
        n = TRAIN_PROBE_SEQUENCES if self.task == "causal_lm" else TRAIN_PROBE
        x, y = self.train_x[:n], self.train_y[:n]
        scores = student_validation(self.student, x, y, self.task, self.teacher_train, self.device)
        return {"train_acc": scores["val_acc"], "train_agreement": scores["val_agreement"]}

    def _end_epoch(self, train_means: dict[str, float]) -> None:
        values = dict(train_means)
        values.update(self._evaluate())
        values.update(self._train_fit())  # after _evaluate: the student is in eval mode
        values["teacher_training"] = self._teacher_training  # 1 if it ran in train mode during the epoch
        self._check_teacher_mode = True
        values["teacher_params_with_grad"] = float(sum(p.grad is not None for p in self.teacher.model.parameters()))
        values["epoch_time_s"] = self.train_time
        self.log.add("epoch", self.step, self.epoch, values)
        self.history.append({"epoch": self.epoch, "step": self.step, **values})
        last = self.step >= self.total_steps or self.epoch == self.cfg.epochs
        if self.epoch in self.ckpt_epochs or (last and self.ckpt_epochs):
            self._checkpoint()
        self.log.flush()
        if self.store is not None and self.run_id is not None:
            self._persist_epoch(last)
        self._emit("epoch", metrics=values)

    def _persist_epoch(self, last: bool) -> None:
        """Heartbeat, the final student at the last epoch, and the resume state (at most every _RESUME_EVERY_S)."""
        store, run_id = self._run_store()
        self.report.beat(self.step, self.epoch, now=True)
        if last:
            store.save_student(
                run_id,
                self.student.model.state_dict(),
                epoch=self.epoch,
                final=True,
                metadata={"run_id": run_id, "epoch": self.epoch},
            )
        if self._resume_due(last):
            self._save_resume()
            self._last_resume_save = time.monotonic()

    def _resume_due(self, last: bool) -> bool:
        """Whether this epoch end saves the resume state: the last one, else at most every _RESUME_EVERY_S."""
        return last or time.monotonic() - self._last_resume_save >= _RESUME_EVERY_S

    def _checkpoint(self) -> None:
        x, y = self.val_x[: self.cfg.probe_size], self.val_y[: self.cfg.probe_size]
        values = checkpoint_probes(self.student, self.teacher, x, y, self.task, self.terms)
        self.log.add("checkpoint", self.step, self.epoch, values)
        if self.store is not None and self.run_id is not None:
            self.store.save_student(
                self.run_id,
                self.student.model.state_dict(),
                epoch=self.epoch,
                metadata={"run_id": self.run_id, "epoch": self.epoch},
            )
        self._emit("checkpoint", metrics=values)

    def _save_resume(self) -> None:
        point = ResumePoint(self.epoch, self.step, self.history, self.train_time)
        data = resume_bytes(self.student.model, self.projectors, self._optimizer_state(), self.device, point)
        store, run_id = self._run_store()
        store.save_artifact(run_id, RESUME_FILE, data, kind="resume", epoch=self.epoch)

    def _optimizer_state(self) -> dict:
        """The optimizer's state dict as one process holds it (fsdp.py: gathered from the shards)."""
        return self.opt.state_dict()

    def _load_resume(self) -> None:
        """Continue from the resume state; when it is unreadable, from the last checkpoint whose weights
        verify; when there is none (or no resume state was saved), from step 0: the run says which (a notice)."""
        store, run_id = self._run_store()
        try:
            path = store.verify_artifact(run_id, RESUME_FILE)
            point = restore_resume(path, self.student.model, self.projectors, self.opt, self.device)
        except (StoreError, ResumeUnreadable) as exc:
            self._restart_without_resume_state(store, run_id, exc)
            return
        self._resume_at(point)
        store.truncate_metrics(run_id, after_step=self.step)

    def _resume_at(self, point: ResumePoint) -> None:
        self.step, self.epoch, self.start_epoch = point.step, point.epoch, point.epoch
        self.history, self.train_time = list(point.history), point.train_time

    def _restart_without_resume_state(self, store: RunStore, run_id: str, exc: Exception) -> None:
        has_row = RESUME_FILE in set(store.artifacts(run_id)["name"])
        found = last_good_checkpoint(store, run_id) if has_row else None
        if found is None:
            why = (
                f"its resume state is unreadable ({exc}) and it has no good checkpoint"
                if has_row
                else "it had saved no resume state (it stopped before its first one)"
            )
            store.truncate_metrics(run_id, after_step=-1)
            self.log.add("epoch", 0, 0, self._initial_metrics())
            self._notice(f"Run {run_id} restarts from step 0: {why}.")
            return
        why = f"its resume state is unreadable ({exc})"
        point, weights = found
        self.student.model.load_state_dict(weights)
        torch.manual_seed((self.cfg.seed + point.epoch) % _SEED_MOD)
        self._resume_at(point)
        store.truncate_metrics(run_id, after_step=self.step)
        self._notice(
            f"Run {run_id} restarts from its last good checkpoint, epoch {point.epoch} "
            f"(student_epoch{point.epoch}.safetensors, step {point.step}), with a fresh optimizer state: "
            f"{why}."
        )

    def summary(self) -> dict:
        s: dict = {"steps": self.step, "epochs": self.epoch}
        if self.history:
            key, better = {"causal_lm": ("val_loss", min), "encoder": ("val_cka", max)}.get(self.task, ("val_acc", max))
            best = better(self.history, key=lambda h: h[key])
            final = self.history[-1]
            s.update(
                {
                    "metric": key,
                    f"final_{key}": final[key],
                    f"best_{key}": best[key],
                    "best_epoch": best["epoch"],
                    "final_val_loss": final.get("val_loss"),
                    "final_val_acc": final.get("val_acc"),
                    "final_train_loss": final.get("train_loss"),
                }
            )
        if self.history and "heldout_em" in self.history[-1]:
            s["final_heldout_em"] = self.history[-1]["heldout_em"]
            s["best_heldout_em"] = max(h["heldout_em"] for h in self.history)
        if self.train_time > 0:
            s["steps_per_s"] = self.step / self.train_time if self.step else 0.0
        if "teacher_val_acc" in self.teacher_val.metrics:  # an encoder task has no labels to be accurate on
            s["teacher_val_acc"] = self.teacher_val.metrics["teacher_val_acc"]
        if self.cache is not None:
            s["cache_mass_kept"] = self.cache.mass_kept
        s["lm_chunked"] = float(self.chunked)
        return s
