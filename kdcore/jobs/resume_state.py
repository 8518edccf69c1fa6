"""Optimizer and resume state: the optimizer a job trains with, and the safetensors file that lets a
stopped run continue exactly where it stopped (weights, projectors, optimizer state, RNG states,
history). Nothing is pickled: tensors go to safetensors, everything else to JSON metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from kdcore.jobs.config import JobConfig
from kdcore.jobs.store import RunStore, StoreError

RESUME_FILE = "resume.safetensors"


@dataclass(frozen=True)
class ResumePoint:
    """Where a run stood when its resume state was saved (at an epoch end)."""

    epoch: int
    step: int
    history: list = field(default_factory=list)  # one dict of epoch metrics per finished epoch
    train_time: float = 0.0  # seconds spent in training steps so far


def make_optimizer(cfg: JobConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The config's optimizer (sgd with momentum, adamw or adam) over `params`."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def flatten_optimizer(sd: dict) -> tuple[dict[str, Tensor], dict]:
    """An optimizer state dict as safetensors tensors plus JSON metadata (no pickling)."""
    tensors: dict[str, Tensor] = {}
    state_meta: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        state_meta[str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                state_meta[str(pid)][k] = v
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def unflatten_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    """The inverse of flatten_optimizer."""
    state = {int(pid): dict(vals) for pid, vals in meta["state"].items()}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def resume_bytes(
    student: nn.Module,
    projectors: nn.Module,
    opt: torch.optim.Optimizer | dict,
    device: torch.device,
    point: ResumePoint,
) -> bytes:
    """The resume state as the bytes of a safetensors file (opt: the optimizer, or its state dict)."""
    from safetensors.torch import save

    from kdcore.weights import tensors_for_safetensors

    # tied weights (e.g. input embeddings and output head) are saved under each name
    tensors = {f"student.{k}": v for k, v in tensors_for_safetensors(student.state_dict()).items()}
    tensors.update({f"proj.{k}": v for k, v in tensors_for_safetensors(projectors.state_dict()).items()})
    opt_tensors, opt_meta = flatten_optimizer(opt if isinstance(opt, dict) else opt.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    meta = {
        "epoch": str(point.epoch),
        "step": str(point.step),
        "optimizer": json.dumps(opt_meta),
        "history": json.dumps(point.history),
        "train_time": repr(point.train_time),
    }
    return save(tensors, metadata=meta)


class ResumeUnreadable(Exception):
    """The resume file cannot be read (truncated, altered, not a resume state); nothing was loaded."""


def read_resume(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The resume file's tensors and metadata, read whole before anything is applied (ResumeUnreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        missing = {"epoch", "step", "optimizer", "history"} - set(meta)
        if missing or "rng.cpu" not in tensors:
            raise ResumeUnreadable(f"{path} is not a resume state (it lacks {sorted(missing) or ['rng.cpu']})")
        json.loads(meta["optimizer"])
        json.loads(meta["history"])
    except ResumeUnreadable:
        raise
    except Exception as exc:  # safetensors reports damage with several exception types
        raise ResumeUnreadable(f"{path} cannot be read: {exc}") from exc
    return tensors, meta


def restore_resume(
    path: Path, student: nn.Module, projectors: nn.Module, opt: torch.optim.Optimizer, device: torch.device
) -> ResumePoint:
    """Load a resume file into the student, projectors, optimizer and RNGs; returns where it stood
    (ResumeUnreadable, with nothing changed, when the file cannot be read)."""
    tensors, meta = read_resume(path)
    student.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("student.")})
    proj = {k[5:]: v for k, v in tensors.items() if k.startswith("proj.")}
    if proj:
        projectors.load_state_dict(proj)
    opt.load_state_dict(unflatten_optimizer(tensors, json.loads(meta["optimizer"])))
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return ResumePoint(
        epoch=int(meta["epoch"]),
        step=int(meta["step"]),
        history=json.loads(meta["history"]),
        train_time=float(meta.get("train_time", "0.0")),
    )


def last_good_checkpoint(store: RunStore, run_id: str) -> tuple[ResumePoint, dict[str, Tensor]] | None:
    """The newest checkpoint whose weights match their sha256, as (where it stood, student weights);
    None when there is none. Its history comes from the epoch metrics in the store."""
    epochs = store.metrics(run_id, "epoch")
    for epoch in reversed(store.checkpoints(run_id)):
        try:
            weights = store.load_student(run_id, epoch=epoch)
        except StoreError:
            continue  # missing or damaged: try the one before
        rows = epochs[(epochs["epoch"] >= 1) & (epochs["epoch"] <= epoch)] if len(epochs) else epochs
        history = [{k: v for k, v in r.items() if v == v and v is not None} for r in rows.to_dict("records")]
        step = int(history[-1]["step"]) if history else 0
        return ResumePoint(epoch, step, history), weights
    return None
