"""Teacher-output cache: the frozen teacher's logits (and chosen features) computed once per
dataset, kept in memory for every epoch and on disk for later runs.

The teacher is frozen and sees no augmentation, so its outputs on sample i never change: the
cache replaces a teacher forward pass per step by an index lookup. For large vocabularies it keeps
only the top-k logits per position (the others become -inf, a probability of exactly 0, which the
losses treat as masked) and reports the teacher probability mass kept (at T = 1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from kdcore.adapters.base import ModelAdapter

CACHE_VERSION = 1


def tensor_fingerprint(*tensors: Tensor) -> str:
    """sha256 of the tensors' shapes, dtypes and bytes (16 hex digits)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        # flatten first: a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over a model's state dict (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor_fingerprint(t).encode())
    return h.hexdigest()[:16]


@dataclass
class TeacherCache:
    """Teacher logits [N, C] / [N, L, V] (or their top-k) and features [N, ...] for one input set."""

    logits: Tensor | None = None  # full logits, or None when top-k is kept
    topk_values: Tensor | None = None  # [N, ..., k] the k largest logits
    topk_indices: Tensor | None = None  # [N, ..., k] their class/token ids
    size: int = 0  # C or V (width of the full logits)
    features: dict[str, Tensor] = field(default_factory=dict)  # layer -> [N, ...]
    mass_kept: float = 1.0  # mean teacher probability mass in the kept entries (T = 1)
    from_disk: bool = False  # True when loaded from an earlier run's file
    notice: str | None = None  # why a file on disk was not used (it was rebuilt)

    def get(self, idx: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Teacher logits and features for the samples `idx` ([b] long)."""
        if self.logits is not None:
            logits = self.logits[idx]
        else:
            assert self.topk_values is not None and self.topk_indices is not None  # one of the two forms is set
            vals, ids = self.topk_values[idx], self.topk_indices[idx]  # [b, ..., k]
            logits = torch.full((*vals.shape[:-1], self.size), float("-inf"), dtype=vals.dtype, device=vals.device)
            logits.scatter_(-1, ids, vals)  # [b, ..., V]
        return logits, {k: v[idx] for k, v in self.features.items()}

    def to(self, device: torch.device | str) -> TeacherCache:
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return TeacherCache(
            mv(self.logits),
            mv(self.topk_values),
            mv(self.topk_indices),
            self.size,
            {k: v.to(device) for k, v in self.features.items()},
            self.mass_kept,
            self.from_disk,
            self.notice,
        )


def compute_teacher_outputs(
    teacher: ModelAdapter, inputs: Tensor, layers: list[str]
) -> tuple[Tensor, dict[str, Tensor]]:
    """One batch through the frozen teacher: (logits, {layer: features}) without a graph."""
    with torch.no_grad():
        if layers:
            logits, feats = teacher.forward_features(inputs, layers)
            return logits.detach(), {k: v.detach() for k, v in feats.items()}
        return teacher.logits(inputs), {}


def build_cache(
    teacher: ModelAdapter,
    inputs: Tensor,
    layers: list[str],
    *,
    batch_size: int,
    device: torch.device | str,
    top_k: int | None = None,
    cache_dir: Path | None = None,
    key_parts: dict[str, Any] | None = None,
) -> TeacherCache:
    """Compute (or load from `cache_dir`) the teacher's outputs on every input."""
    path, notice = None, None
    if cache_dir is not None:
        path = _cache_path(teacher, inputs, layers, top_k, Path(cache_dir), key_parts)
        if path.is_file():
            try:
                return _load(path).to(device)
            except Exception as exc:  # an altered or damaged cache file is rebuilt, never used
                notice = f"The teacher cache {path} was not used ({exc}); it was rebuilt from the teacher."
                path.unlink(missing_ok=True)
    cache = _compute_cache(teacher, inputs, layers, batch_size=batch_size, device=device, top_k=top_k)
    if path is not None:
        _save(cache, path)
    cache.notice = notice
    return cache


def _cache_path(
    teacher: ModelAdapter,
    inputs: Tensor,
    layers: list[str],
    top_k: int | None,
    cache_dir: Path,
    key_parts: dict[str, Any] | None,
) -> Path:
    """The cache file in cache_dir named by a hash of the settings, the inputs and the teacher's weights."""
    key = dict(
        key_parts or {},
        layers=list(layers),
        top_k=top_k,
        version=CACHE_VERSION,
        inputs=tensor_fingerprint(inputs),
        teacher=model_fingerprint(teacher.model),
    )
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir / f"teacher-{name}.safetensors"


def _compute_cache(
    teacher: ModelAdapter,
    inputs: Tensor,
    layers: list[str],
    *,
    batch_size: int,
    device: torch.device | str,
    top_k: int | None,
) -> TeacherCache:
    """The teacher's outputs on every input, batch by batch: full logits, or the top_k values and ids
    (with the mean probability mass they keep) when top_k is below the number of outputs."""
    logits_parts: list[Tensor] = []
    feat_parts: dict[str, list[Tensor]] = {k: [] for k in layers}
    vals_parts: list[Tensor] = []
    ids_parts: list[Tensor] = []
    mass: list[Tensor] = []
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start : start + batch_size].to(device)
        logits, feats = compute_teacher_outputs(teacher, x, layers)
        for k in layers:
            feat_parts[k].append(feats[k])
        if top_k is not None and top_k < logits.shape[-1]:
            vals, ids = logits.topk(top_k, dim=-1)  # [b, ..., k]
            p = torch.softmax(logits.float(), dim=-1)
            mass.append(p.gather(-1, ids).sum(-1).flatten())
            vals_parts.append(vals)
            ids_parts.append(ids)
        else:
            logits_parts.append(logits)
    size = int(logits.shape[-1])
    feats = {k: torch.cat(v) for k, v in feat_parts.items()}
    if vals_parts:
        return TeacherCache(
            None, torch.cat(vals_parts), torch.cat(ids_parts), size, feats, float(torch.cat(mass).mean())
        )
    return TeacherCache(torch.cat(logits_parts), None, None, size, feats, 1.0)


def checksum_path(path: Path) -> Path:
    """The file beside a cache file holding its sha256 (written with it, checked before it is used)."""
    return path.with_name(path.name + ".sha256")


def verify_cache_file(path: Path) -> None:
    """Raise CacheMismatch naming the file when its bytes do not match the sha256 recorded beside it."""
    from kdcore.jobs.store import sha256_file

    try:
        expected = checksum_path(path).read_text().strip()
    except OSError:
        raise CacheMismatch(f"no sha256 was recorded for {path}") from None
    if sha256_file(path) != expected:
        raise CacheMismatch(f"{path} does not match the sha256 recorded when it was written: it was altered or damaged")


class CacheMismatch(Exception):
    """A teacher-cache file does not match its recorded sha256."""


def _save(cache: TeacherCache, path: Path) -> None:
    from safetensors.torch import save

    from kdcore.jobs.store import atomic_write_bytes

    tensors = {f"feat.{k}": v.to("cpu").contiguous() for k, v in cache.features.items()}
    if cache.logits is not None:
        tensors["logits"] = cache.logits.to("cpu").contiguous()
    else:
        assert cache.topk_values is not None and cache.topk_indices is not None
        tensors["topk_values"] = cache.topk_values.to("cpu").contiguous()
        tensors["topk_indices"] = cache.topk_indices.to("cpu").contiguous()
    meta = {"size": str(cache.size), "mass_kept": repr(cache.mass_kept), "version": str(CACHE_VERSION)}
    from kdcore.jobs.store import sha256_bytes

    data = save(tensors, metadata=meta)
    try:
        atomic_write_bytes(checksum_path(path), sha256_bytes(data).encode())
        atomic_write_bytes(path, data)
    except OSError:
        pass  # the cache is an optimisation: a full or read-only disk only costs speed


def _load(path: Path) -> TeacherCache:
    from safetensors import safe_open

    verify_cache_file(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    feats = {k[len("feat.") :]: v for k, v in tensors.items() if k.startswith("feat.")}
    return TeacherCache(
        tensors.get("logits"),
        tensors.get("topk_values"),
        tensors.get("topk_indices"),
        int(meta["size"]),
        feats,
        float(meta["mass_kept"]),
        from_disk=True,
    )
