"""The distillation runner: trains a fresh student against a frozen teacher, records every loss
component, and reports through a callback and into the run store.

    result = run_job(JobConfig(pair="digits", objective="kd", epochs=3))

The teacher stays in eval mode and builds no graph (its outputs come from `torch.no_grad()`);
the runner records evidence of both (metrics `teacher_training`, `teacher_logits_grad`). The
student is `pair.student.clone(reinit=True, seed=config.seed)`: the pair's own adapters are never
trained or mutated. Same config and seed give identical metrics on CPU: the data order of epoch e
comes from a generator seeded by (seed, e), dropout from the global generator seeded once and
saved with each epoch's resume state, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import platform
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from kdcore.jobs.config import JobConfig
from kdcore.jobs.objectives import (StepTensors, build_projectors, compute_loss, feature_layers,
                                    feature_shape_problems, fit_problems, label_loss,
                                    needs_attention)
from kdcore.jobs.store import RunStore, StoreError
from kdcore.jobs.teacher_cache import build_cache, compute_teacher_outputs, tensor_fingerprint

Callback = Callable[[dict], Any]
_FLUSH_EVERY_S = 1.0        # metric rows are written at least this often (and at each epoch end)
_CANCEL_POLL_S = 0.25       # how often the store's cancel flag is read
_HEARTBEAT_S = 2.0          # how often a running run says it is alive
_RESUME_EVERY_S = 5.0       # resume state is saved at an epoch end at most this often (and at the last)


class JobCancelled(Exception):
    """Raised inside the loop when the caller asked the job to stop."""


class _NonFiniteLoss(Exception):
    def __init__(self, step: int, epoch: int, what: str):
        self.step, self.epoch, self.what = step, epoch, what
        super().__init__(f"The loss became {what} at step {step} (epoch {epoch}); the run stopped there. "
                         f"Lower the learning rate (lr), clip gradients (grad_clip) or check the inputs.")


@dataclass
class RunResult:
    """How a job ended."""
    run_id: str | None                      # id in the run store (None without a store)
    state: str                              # "completed" | "failed" | "cancelled" | "interrupted"
    metrics: dict = field(default_factory=dict)   # final summary (final/best validation metrics, steps, speed)
    error: str | None = None                # why it failed, in plain English
    step: int = 0                           # steps done


# ---- pairs and devices -------------------------------------------------------------------------------

def resolve_pair(name: str):
    """A Pair from its name: a sample pair (sample_models.load_pair, looked up at run time so that
    kdcore keeps no import of it), or "package.module:factory" returning a Pair."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"The 'pair' {name!r} names a factory that cannot be imported ({exc}). "
                             f"Expected 'package.module:function' returning a Pair.") from None
        return factory()
    try:
        samples = importlib.import_module("sample_models")
    except ImportError:
        raise ValueError(f"The 'pair' {name!r} is not a 'module:factory' and the sample pairs are not "
                         f"installed (package sample_models).") from None
    names = tuple(getattr(samples, "PAIRS", ()))
    if names and name not in names:
        raise ValueError(f"The 'pair' parameter must be one of {', '.join(names)} or 'module:factory'. "
                         f"Got {name!r} instead.")
    return samples.load_pair(name)


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' (an error when no GPU is present) or 'auto' (cuda when present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("The 'device' parameter is 'cuda', but no CUDA GPU is available here. "
                         "Use device 'cpu', or 'auto' to take a GPU only when present.")
    return torch.device(device)


def library_versions() -> dict:
    import kdcore
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "kdcore": getattr(kdcore, "__version__", "?"), "platform": platform.platform(),
            "cuda": torch.version.cuda}


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "cpu"


def _to(adapter, device):
    moved = adapter.to(device)
    return adapter if moved is None else moved


def _forward_with_attentions(adapter, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """(logits, per-layer attention [B, H, L, L]) in one forward pass, with the graph kept."""
    model = adapter.model
    if callable(getattr(model, "forward_with_attentions", None)):
        logits, atts = model.forward_with_attentions(x)
        return logits, list(atts)
    if hasattr(model, "config") and hasattr(model.config, "output_attentions"):
        out = model(input_ids=x, output_attentions=True)
        if out.attentions and all(a is not None for a in out.attentions):
            return out.logits, list(out.attentions)
    raise ValueError(f"objective 'attn_kl' needs attention weights, but {adapter.name} does not return them "
                     f"(a model with forward_with_attentions, or a Hugging Face model with eager attention).")


def _model_device(adapter) -> torch.device:
    try:
        return next(adapter.model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextmanager
def _eval_scope(model: nn.Module):
    """The teacher in eval mode for the block, its previous mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, was in modes:
            m.training = was


# ---- schedule, evaluation, CKA -------------------------------------------------------------------------

def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the peak learning rate at a step (0-based): linear warm-up, then the schedule."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)          # progress in [0, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "linear":
        return max(0.0, 1.0 - t)
    if schedule == "step":
        return 0.1 ** (int(t >= 0.5) + int(t >= 0.75))
    return 1.0


def _accuracy(task: str, logits: Tensor, targets: Tensor) -> float:
    if task == "multilabel":
        return float(((logits > 0).float() == targets.float()).float().mean())
    if task == "causal_lm":
        keep = targets != -100                                                   # [N, L]
        return float((logits.argmax(-1)[keep] == targets[keep]).float().mean()) if keep.any() else float("nan")
    return float((logits.argmax(-1) == targets).float().mean())


def _batched_logits(adapter, inputs: Tensor, device, batch: int = 512) -> Tensor:
    out = [adapter.logits(inputs[i:i + batch].to(device)) for i in range(0, inputs.shape[0], batch)]
    return torch.cat(out)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of two activation sets [n, ...] (Kornblith et al. ICML 2019, arXiv 1905.00414),
    float64; feature-space form when n > d, Gram form otherwise; 0.0 when either is constant."""
    x = x.flatten(1).double()
    y = y.flatten(1).double()
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    n = x.shape[0]
    if n > max(x.shape[1], y.shape[1]):
        num = (y.T @ x).pow(2).sum()
        den = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    else:
        k, l_ = x @ x.T, y @ y.T
        num = (k * l_).sum()
        den = (k * k).sum().sqrt() * (l_ * l_).sum().sqrt()
    return float(num / den) if float(den) > 0 else 0.0


# ---- metric buffer -------------------------------------------------------------------------------------

class _MetricLog:
    """Buffers metric rows and writes them to the store in batches (one transaction each)."""

    def __init__(self, store: RunStore | None, run_id: str | None):
        self.store, self.run_id = store, run_id
        self.rows: list[tuple] = []
        self.last_flush = time.monotonic()

    def add(self, level: str, step: int, epoch: int, values: dict[str, float]) -> None:
        self.rows.extend((level, step, epoch, k, v) for k, v in values.items())

    def maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.rows:
            self.store.log_metrics(self.run_id, self.rows)
        self.rows = []
        self.last_flush = time.monotonic()


# ---- the job ---------------------------------------------------------------------------------------------

def prepare_run(config: JobConfig, pair=None) -> dict:
    """Validate the config and its fit to the pair without training; returns what the run needs.

    Raises ConfigError (every problem of the config) or ValueError (the objective does not fit the pair).
    """
    config.validate()
    device = resolve_device(config.device)
    pair = pair if pair is not None else resolve_pair(config.pair)
    ds = pair.dataset
    terms = config.resolved_terms()
    s_layers, t_layers = feature_layers(terms)
    problems = fit_problems(config, ds.task, pair.student.kind, pair.teacher.kind,
                            list(pair.student.layer_names()), list(pair.teacher.layer_names()))
    if problems:
        raise ValueError("The objective does not fit the pair " + repr(config.pair) + ":\n"
                         + "\n".join(f"  - {p}" for p in problems))
    train, val = ds.split("train"), ds.split("val")
    if s_layers:  # shapes: a probe pass over 2 samples (detached copies; the pair's models are not changed)
        probe = train.inputs[:2]
        problems = feature_shape_problems(terms, pair.student.capture(probe, s_layers), pair.teacher.capture(probe, t_layers))
        if problems:
            raise ValueError("The objective does not fit the pair " + repr(config.pair) + ":\n"
                             + "\n".join(f"  - {p}" for p in problems))
    if config.train_size is not None:
        train = train.subset(config.train_size)
    if config.val_size is not None:
        val = val.subset(config.val_size)
    return {"pair": pair, "device": device, "terms": terms, "s_layers": s_layers, "t_layers": t_layers,
            "train": train, "val": val, "task": ds.task,
            "fingerprint": tensor_fingerprint(train.inputs, train.targets, val.inputs, val.targets)}


def run_job(config: JobConfig, *, store: RunStore | None = None, run_id: str | None = None,
            callback: Callback | None = None, cancel: Callable[[], bool] | threading.Event | None = None,
            pair=None, resume: bool = False, use_store: bool = True) -> RunResult:
    """Run a distillation job to the end, a cancel, or a failure.

    config:   the job (validated first: a ConfigError lists every problem, before anything runs)
    store:    the run store (default: RunStore() in $KDWB_HOME); `use_store=False` runs without one
    run_id:   an existing run to execute (queued by the worker) or to resume (`resume=True`)
    callback: called with a dict per event: {"event": "start"|"step"|"epoch"|"checkpoint"|"end", ...}
    cancel:   a threading.Event or a callable; when set/true, the job stops at the next step
    pair:     a Pair to use instead of resolving `config.pair` (must be the pair that name loads)
    """
    prep = prepare_run(config, pair)
    if use_store and store is None:
        store = RunStore()
    if store is None:
        run_id = None
    meta = {"seed": config.seed, "device": _device_label(prep["device"]), "versions": library_versions(),
            "data_fingerprint": prep["fingerprint"]}
    if store is not None:
        if run_id is None:
            run_id = store.create_run(config, state="running", **meta)
        else:
            store.update_run(run_id, state="running", error=None, cancel_requested=0, **meta)
        store.update_run(run_id, pid=os.getpid(), host=_hostname(), heartbeat=time.time())
    job = _Job(config, prep, store, run_id, callback, cancel)
    return job.run(resume=resume)


def _hostname() -> str:
    import socket
    return socket.gethostname()


class _Job:
    def __init__(self, config: JobConfig, prep: dict, store: RunStore | None, run_id: str | None,
                 callback: Callback | None, cancel):
        self.cfg, self.prep, self.store, self.run_id = config, prep, store, run_id
        self.callback, self.cancel = callback, cancel
        self.log = _MetricLog(store, run_id)
        self.step = 0
        self.epoch = 0
        self._last_cancel_poll = 0.0
        self._last_heartbeat = time.monotonic()
        self._last_resume_save = time.monotonic()

    # -- reporting --
    def _emit(self, event: str, **data) -> None:
        if self.callback is not None:
            self.callback({"event": event, "run_id": self.run_id, "step": self.step, "epoch": self.epoch,
                           "total_steps": self.total_steps, "epochs": self.cfg.epochs, **data})

    def _check_cancel(self) -> None:
        c = self.cancel
        if c is not None and (c.is_set() if isinstance(c, threading.Event) else bool(c())):
            raise JobCancelled()
        now = time.monotonic()
        if self.store is not None and now - self._last_cancel_poll >= _CANCEL_POLL_S:
            self._last_cancel_poll = now
            if self.store.cancel_requested(self.run_id):
                raise JobCancelled()

    def _beat(self) -> None:
        now = time.monotonic()
        if self.store is not None and now - self._last_heartbeat >= _HEARTBEAT_S:
            self._last_heartbeat = now
            self.store.heartbeat(self.run_id, step=self.step, epoch=self.epoch)

    def _finish(self, state: str, error: str | None, summary: dict) -> RunResult:
        if self.store is not None:
            try:
                self.log.flush()
            finally:
                self.store.update_run(self.run_id, state=state, error=error, summary=summary, step=self.step,
                                      epoch=self.epoch, heartbeat=time.time())
        self._emit("end", state=state, error=error, metrics=summary)
        return RunResult(self.run_id, state, summary, error, self.step)

    # -- main --
    def run(self, *, resume: bool) -> RunResult:
        try:
            self._setup(resume)
            self._train()
            return self._finish("completed", None, self.summary())
        except JobCancelled:
            return self._finish("cancelled", f"Cancelled at step {self.step} (epoch {self.epoch}).", self.summary())
        except _NonFiniteLoss as exc:
            self.log.add("step", exc.step, exc.epoch, {"nonfinite_loss": 1.0})
            return self._finish("failed", str(exc), dict(self.summary(), failed_step=exc.step))
        except StoreError:
            self._try_mark("failed", "The run store could not be written; see the error shown by the caller.")
            raise
        except KeyboardInterrupt:
            self._try_mark("interrupted", f"Interrupted at step {self.step} (epoch {self.epoch}).")
            raise
        except Exception as exc:
            self._try_mark("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
            raise

    def _try_mark(self, state: str, error: str) -> None:
        if self.store is None:
            return
        try:
            self.log.flush()
        except Exception:
            pass
        try:
            self.store.update_run(self.run_id, state=state, error=error, step=self.step, epoch=self.epoch)
        except Exception:
            pass

    # -- setup --
    def _setup(self, resume: bool) -> None:
        cfg, prep = self.cfg, self.prep
        dev = prep["device"]
        self.device = dev
        torch.manual_seed(cfg.seed)
        pair = prep["pair"]
        self.teacher = pair.teacher if _model_device(pair.teacher) == dev else _to(pair.teacher.clone(reinit=False), dev)
        self.student = _to(pair.student.clone(reinit=True, seed=cfg.seed), dev)
        self.task, self.terms = prep["task"], prep["terms"]
        self.s_layers, self.t_layers = prep["s_layers"], prep["t_layers"]
        self.ce_weight = self.cfg.resolved_ce_weight()
        self.need_attn = needs_attention(self.terms)
        train, val = prep["train"], prep["val"]
        self.train_x, self.train_y = train.inputs.to(dev), train.targets.to(dev)
        self.val_x, self.val_y = val.inputs.to(dev), val.targets.to(dev)
        n = self.train_x.shape[0]
        self.spe = math.ceil(n / cfg.batch_size)                                 # steps per epoch
        self.total_steps = cfg.epochs * self.spe if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * self.spe)
        last_epoch = math.ceil(self.total_steps / self.spe)
        k = min(cfg.checkpoints, last_epoch)
        self.ckpt_epochs = set(int(round(e)) for e in np.linspace(last_epoch, 1, k)) if k else set()
        # a probe forward pass on 2 samples: feature shapes for projectors and fit checks
        self.projectors = nn.ModuleDict()
        if self.s_layers:
            with torch.no_grad():
                _, sf = self.student.forward_features(self.train_x[:2], self.s_layers)
                with _eval_scope(self.teacher.model):
                    _, tf = compute_teacher_outputs(self.teacher, self.train_x[:2], self.t_layers)
            torch.manual_seed(cfg.seed + 1)
            self.projectors = build_projectors(self.terms, sf, tf).to(dev)
        params = list(self.student.model.parameters()) + list(self.projectors.parameters())
        self.params = params
        self.opt = _make_optimizer(cfg, params)
        self.cache = None
        self._teacher_training = 0.0
        self._check_teacher_mode = True
        if cfg.teacher_cache:
            t0 = time.perf_counter()
            cache_dir = None if self.store is None else self.store.root / "cache"
            with _eval_scope(self.teacher.model):
                self.cache = build_cache(self.teacher, self.train_x, self.t_layers, batch_size=max(256, cfg.batch_size),
                                         device=dev, top_k=cfg.cache_top_k, cache_dir=cache_dir,
                                         key_parts={"pair": cfg.pair, "n": n})
                self._teacher_training = float(any(m.training for m in self.teacher.model.modules()))
            self.log.add("epoch", 0, 0, {"cache_mass_kept": self.cache.mass_kept,
                                         "cache_from_disk": float(self.cache.from_disk),
                                         "cache_build_s": time.perf_counter() - t0})
        with _eval_scope(self.teacher.model):
            self.teacher_val = _batched_logits(self.teacher, self.val_x, dev)
        self.history: list[dict] = []
        self.start_epoch = 0
        if resume:
            self._load_resume()
        else:
            self.log.add("epoch", 0, 0, {"teacher_val_acc": _accuracy(self.task, self.teacher_val, self.val_y),
                                         "teacher_val_loss": float(label_loss(self.task, self.teacher_val, self.val_y))})
        self.t_start = time.perf_counter()
        self.train_time = 0.0
        self._emit("start", device=str(dev))

    # -- training --
    def _teacher_batch(self, idx: Tensor, x: Tensor) -> tuple[Tensor, dict]:
        if self.cache is not None:
            return self.cache.get(idx)
        if self._check_teacher_mode:   # evidence for the doctor: the mode the teacher really ran in
            self._check_teacher_mode = False
            self._teacher_training = float(any(m.training for m in self.teacher.model.modules()))
        return compute_teacher_outputs(self.teacher, x, self.t_layers)   # inside _train's eval scope

    def _train(self) -> None:
        with _eval_scope(self.teacher.model):            # the teacher is in eval mode for the whole loop
            self._train_epochs()

    def _train_epochs(self) -> None:
        cfg = self.cfg
        n = self.train_x.shape[0]
        for epoch in range(self.start_epoch, cfg.epochs):
            if self.step >= self.total_steps:
                break
            self.epoch = epoch + 1
            self.student.model.train()
            self.projectors.train()
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen).to(self.device)
            sums: dict[str, float] = {}
            count = 0
            t_epoch = time.perf_counter()
            for b in range(self.spe):
                if self.step >= self.total_steps:
                    break
                self._check_cancel()
                values, extras = self._train_step(perm[b * cfg.batch_size:(b + 1) * cfg.batch_size])
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                values.update(extras)
                self.log.add("step", self.step, self.epoch, values)
                count += 1
                self.log.maybe_flush()
                self._beat()
                if self.callback is not None:
                    self._emit("step", metrics=values)
            self.train_time += time.perf_counter() - t_epoch
            self._end_epoch({f"train_{k}": v / max(count, 1) for k, v in sums.items()})

    def _train_step(self, idx: Tensor) -> tuple[dict[str, float], dict[str, float]]:
        """One optimiser step; returns (loss components, other per-step values)."""
        x, y = self.train_x[idx], self.train_y[idx]
        t_logits, t_feats = self._teacher_batch(idx, x)
        s_logits, s_feats = self.student.forward_features(x, self.s_layers)
        batch = StepTensors(self.task, s_logits, t_logits, y, s_feats, t_feats, self.projectors)
        if self.need_attn:
            s_logits, batch.student_attn = _forward_with_attentions(self.student, x)
            batch.student_logits = s_logits
            with torch.no_grad(), _eval_scope(self.teacher.model):
                batch.teacher_attn = _forward_with_attentions(self.teacher, x)[1]
        try:
            loss, comps = compute_loss(self.terms, self.ce_weight, batch)
        except ValueError:
            if not bool(torch.isfinite(s_logits.detach()).all()):
                raise _NonFiniteLoss(self.step + 1, self.epoch, "NaN or infinite (the student's logits were)") from None
            raise
        factor = lr_factor(self.step, self.total_steps, self.cfg.schedule, self.cfg.warmup_steps)
        lr = self.cfg.lr * factor
        names = ["loss", *comps]
        vals = torch.stack([loss.detach().float(), *(c.detach().float() for c in comps.values())]).tolist()
        if not math.isfinite(vals[0]):
            raise _NonFiniteLoss(self.step + 1, self.epoch, "NaN" if math.isnan(vals[0]) else "infinite")
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.step += 1
        extras = {"lr": lr}
        if self.step == 1:
            extras["teacher_logits_grad"] = float(t_logits.requires_grad)
        return dict(zip(names, vals)), extras

    # -- epoch end: validation, checkpoints, resume state --
    def _evaluate(self) -> dict[str, float]:
        self.student.model.eval()
        with torch.no_grad():
            logits = _batched_logits(self.student, self.val_x, self.device)
        agree = float((logits.argmax(-1) == self.teacher_val.argmax(-1)).float().mean()) \
            if self.task != "multilabel" else float(((logits > 0) == (self.teacher_val > 0)).float().mean())
        return {"val_loss": float(label_loss(self.task, logits, self.val_y)),
                "val_acc": _accuracy(self.task, logits, self.val_y), "val_agreement": agree}

    def _end_epoch(self, train_means: dict[str, float]) -> None:
        values = dict(train_means)
        values.update(self._evaluate())
        values["teacher_training"] = self._teacher_training     # 1 if it ran in train mode during the epoch
        self._check_teacher_mode = True
        values["teacher_params_with_grad"] = float(sum(p.grad is not None for p in self.teacher.model.parameters()))
        values["epoch_time_s"] = self.train_time
        self.log.add("epoch", self.step, self.epoch, values)
        self.history.append({"epoch": self.epoch, "step": self.step, **values})
        last = self.step >= self.total_steps or self.epoch == self.cfg.epochs
        if self.epoch in self.ckpt_epochs or (last and self.ckpt_epochs):
            self._checkpoint()
        self.log.flush()
        if self.store is not None:
            self.store.heartbeat(self.run_id, step=self.step, epoch=self.epoch)
            if last:
                self.store.save_student(self.run_id, self.student.model.state_dict(), epoch=self.epoch, final=True,
                                        metadata={"run_id": self.run_id, "epoch": self.epoch})
            if last or time.monotonic() - self._last_resume_save >= _RESUME_EVERY_S:
                self._save_resume()
                self._last_resume_save = time.monotonic()
        self._emit("epoch", metrics=values)

    def _checkpoint(self) -> None:
        values = self._probe_metrics()
        self.log.add("checkpoint", self.step, self.epoch, values)
        if self.store is not None:
            self.store.save_student(self.run_id, self.student.model.state_dict(), epoch=self.epoch,
                                    metadata={"run_id": self.run_id, "epoch": self.epoch})
        self._emit("checkpoint", metrics=values)

    def _probe_metrics(self) -> dict[str, float]:
        """CKA of the student's layers to the teacher's, and the divergence components, on a probe batch."""
        x, y = self.val_x[:self.cfg.probe_size], self.val_y[:self.cfg.probe_size]
        out: dict[str, float] = {}
        s_names, t_names = list(self.student.default_layers()), list(self.teacher.default_layers())
        self.student.model.eval()
        with torch.no_grad(), _eval_scope(self.teacher.model):
            s_logits, s_feats = self.student.forward_features(x, s_names) if s_names else (self.student.logits(x), {})
            t_logits, t_feats = compute_teacher_outputs(self.teacher, x, t_names)
        for sn in s_names:
            for tn in t_names:
                out[f"cka/{sn}|{tn}"] = linear_cka(s_feats[sn], t_feats[tn])
        out.update(_divergence_probe(self.task, s_logits, t_logits, y, self.terms))
        self.student.model.train()
        return out

    def _save_resume(self) -> None:
        from safetensors.torch import save
        tensors = {f"student.{k}": v.detach().cpu().contiguous() for k, v in self.student.model.state_dict().items()}
        tensors.update({f"proj.{k}": v.detach().cpu().contiguous() for k, v in self.projectors.state_dict().items()})
        opt_tensors, opt_meta = _flatten_optimizer(self.opt.state_dict())
        tensors.update(opt_tensors)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"epoch": str(self.epoch), "step": str(self.step), "optimizer": json.dumps(opt_meta),
                "history": json.dumps(self.history), "train_time": repr(self.train_time)}
        self.store.save_artifact(self.run_id, "resume.safetensors", save(tensors, metadata=meta), kind="resume",
                                 epoch=self.epoch)

    def _load_resume(self) -> None:
        from safetensors import safe_open
        try:
            path = self.store.artifact_path(self.run_id, "resume.safetensors")
        except StoreError:
            path = None
        if path is None or not path.is_file():
            # nothing finished before the stop: start again from scratch
            self.store.truncate_metrics(self.run_id, after_step=-1)
            self.log.add("epoch", 0, 0, {"teacher_val_acc": _accuracy(self.task, self.teacher_val, self.val_y),
                                         "teacher_val_loss": float(label_loss(self.task, self.teacher_val, self.val_y))})
            return
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        self.student.model.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("student.")})
        proj = {k[5:]: v for k, v in tensors.items() if k.startswith("proj.")}
        if proj:
            self.projectors.load_state_dict(proj)
        self.opt.load_state_dict(_unflatten_optimizer(tensors, json.loads(meta["optimizer"])))
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step, self.epoch = int(meta["step"]), int(meta["epoch"])
        self.start_epoch = self.epoch
        self.history = json.loads(meta["history"])
        self.store.truncate_metrics(self.run_id, after_step=self.step)

    def summary(self) -> dict:
        s: dict[str, Any] = {"steps": self.step, "epochs": self.epoch}
        if self.history:
            key, better = ("val_loss", min) if self.task == "causal_lm" else ("val_acc", max)
            best = better(self.history, key=lambda h: h[key])
            final = self.history[-1]
            s.update({"metric": key, f"final_{key}": final[key], f"best_{key}": best[key], "best_epoch": best["epoch"],
                      "final_val_loss": final["val_loss"], "final_val_acc": final["val_acc"],
                      "final_train_loss": final.get("train_loss")})
        if getattr(self, "train_time", 0) > 0:
            s["steps_per_s"] = self.step / self.train_time if self.step else 0.0
        if getattr(self, "teacher_val", None) is not None:
            s["teacher_val_acc"] = _accuracy(self.task, self.teacher_val, self.val_y)
        if getattr(self, "cache", None) is not None:
            s["cache_mass_kept"] = self.cache.mass_kept
        return s


def _divergence_probe(task: str, s: Tensor, t: Tensor, y: Tensor, terms) -> dict[str, float]:
    """KL and its decompositions between student and teacher on the probe batch (T of the job's first term, else 1)."""
    T = next((float(term.params["temperature"]) for term in terms if "temperature" in term.params), 1.0)
    out: dict[str, float] = {}
    if task == "causal_lm":
        from kdcore.divergences import divergence_loss
        mask = y != -100
        for kind in ("fkl", "rkl"):
            out[f"div/{kind}"] = float(divergence_loss(s, t, kind, mask=mask, temperature=T))
        return out
    from kdcore.losses import cakd_components, dkd_components, strong_set
    if task == "classification":
        d = dkd_components(s, t, y, temperature=T)
        out.update({"div/kl": float(d["kl"].mean()), "div/tckd": float(d["tckd"].mean()),
                    "div/nckd": float(d["nckd"].mean())})
    cakd = next((term for term in terms if term.name == "cakd"), None)
    if cakd is not None or task == "multilabel":
        p = cakd.params if cakd is not None else {"rule": "labels", "k": None, "tau": None}
        strong = strong_set(t, rule=p["rule"], labels=y if p["rule"] in ("target", "labels") else None,
                            k=p["k"], tau=p["tau"], temperature=T)
        c = cakd_components(s, t, strong, temperature=T)
        out.update({f"div/{k}": float(c[k].mean()) for k in ("kl", "bcd", "scd", "wcd")})
    return out


def _make_optimizer(cfg: JobConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _flatten_optimizer(sd: dict) -> tuple[dict[str, Tensor], dict]:
    """An optimizer state dict as safetensors tensors plus JSON metadata (no pickling)."""
    tensors, state_meta = {}, {}
    for pid, st in sd["state"].items():
        state_meta[str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                state_meta[str(pid)][k] = v
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    state = {int(pid): dict(vals) for pid, vals in meta["state"].items()}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}
