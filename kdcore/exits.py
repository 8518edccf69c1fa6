"""Auxiliary exits on any classifier: heads that read the features of named intermediate layers
(Be Your Own Teacher, methods/13 §13.4b; the teaching-reference heads of education distillation, §13.5).

The heads live in a wrapper module of their own (`ExitHeads`); the classifier is never changed:
its features come from `ModelAdapter.forward_features` (forward hooks inside a context manager),
so the adapter's model has no new submodule, parameter or hook afterwards.

    layers = exit_layers(student)                  # default: the adapter's default_layers()
    problems = exit_problems(student, layers, x[:2])  # [] when every layer is usable
    logits, feats = student.forward_features(x, layers)
    heads = ExitHeads.build(feats, layers, num_classes=student.output_size)
    out = heads(feats)    # out.logits: one [B, C] per shallow exit; out.adapted g_k(f_k) [B, D]; out.deep f_K [B, D]

An exit head (§13.4b: "bottleneck + pooling + FC"): on a feature map [B, C, H, W] a 1×1 convolution
to `width` channels, batch norm and ReLU, then global average pooling; on tokens [B, L, D] the mean
over L, on vectors [B, D] the vector itself, then a linear bottleneck and ReLU; then a linear layer
to the classes. `width` defaults to the deepest feature's width D. The feature adapter g_k (journal
code: a learned linear map) takes the exit's pooled bottleneck [B, width] to D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter

EXITS_KEY = "byot_exits"  # the wrapper's key in a job's learned parts (nn.ModuleDict)


def pool(feature: Tensor) -> Tensor:
    """A layer's output as one vector per sample: [B, C, H, W] -> mean over H, W; [B, L, D] -> mean
    over L; [B, D] as it is.  -> [B, D]"""
    if feature.dim() == 4:
        return feature.mean(dim=(2, 3))
    if feature.dim() == 3:
        return feature.mean(dim=1)
    return feature


def _key(layer: str) -> str:
    return layer.replace(".", "__")


class ExitHead(nn.Module):
    """Bottleneck, pooling and a linear classifier on one layer's output (shape `feature_shape`, batch excluded)."""

    def __init__(self, feature_shape: Sequence[int], width: int, num_classes: int) -> None:
        super().__init__()
        channels = int(feature_shape[0] if len(feature_shape) == 3 else feature_shape[-1])
        self.spatial = len(feature_shape) == 3  # [C, H, W]: a 1×1 convolution before pooling
        if self.spatial:
            self.bottleneck: nn.Module = nn.Sequential(
                nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
            )
        else:
            self.bottleneck = nn.Sequential(nn.Linear(channels, width), nn.ReLU())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, num_classes], pooled bottleneck [B, width])."""
        h = pool(self.bottleneck(feature)) if self.spatial else self.bottleneck(pool(feature))
        return self.fc(h), h


@dataclass
class ExitOutputs:
    """What the exits give for one batch, shallow -> deep."""

    logits: list[Tensor]  # one [B, C] per shallow exit
    adapted: list[Tensor]  # g_k(f_k) per shallow exit, each [B, D]
    deep: Tensor  # f_K: the deepest layer's pooled output [B, D]


class ExitHeads(nn.Module):
    """The exits of one classifier: a head and a feature adapter per shallow layer; `deep_layer`'s
    pooled output is the deepest feature f_K. Owns only its own parameters."""

    def __init__(
        self, shapes: dict[str, Sequence[int]], layers: Sequence[str], num_classes: int, width: int | None = None
    ) -> None:
        super().__init__()
        *shallow, deep = list(layers)
        self.shallow, self.deep_layer = list(shallow), deep
        d = int(shapes[deep][0] if len(shapes[deep]) == 3 else shapes[deep][-1])
        w = int(width) if width is not None else d
        self.heads = nn.ModuleDict({_key(n): ExitHead(shapes[n], w, num_classes) for n in shallow})
        self.adapters = nn.ModuleDict({_key(n): nn.Linear(w, d) for n in shallow})

    @classmethod
    def build(
        cls, feats: dict[str, Tensor], layers: Sequence[str], num_classes: int, width: int | None = None
    ) -> ExitHeads:
        """Sized from features of a probe batch ({layer: [B, ...]})."""
        return cls({n: tuple(feats[n].shape[1:]) for n in layers}, layers, num_classes, width)

    def forward(self, feats: dict[str, Tensor]) -> ExitOutputs:
        logits, adapted = [], []
        for name in self.shallow:
            z, h = self.heads[_key(name)](feats[name])
            logits.append(z)
            adapted.append(self.adapters[_key(name)](h))
        return ExitOutputs(logits, adapted, pool(feats[self.deep_layer]))


def exit_layers(adapter: ModelAdapter, layers: Sequence[str] | None = None) -> list[str]:
    """The layers the exits read, shallow -> deep (the last one's pooled output is f_K; the model's
    own head is the deepest exit): those given, else the adapter's default_layers()."""
    return list(layers) if layers is not None else list(adapter.default_layers())


def exit_problems(
    adapter: ModelAdapter, layers: Sequence[str], probe: Tensor, what: str = "self-distillation"
) -> list[str]:
    """Why `layers` cannot carry exits on `adapter` (empty when they can): at least two distinct
    layers (one exit and the deepest feature), each usable (`layer_problems`)."""
    if adapter.kind == "classifier" and (len(layers) < 2 or len(set(layers)) != len(layers)):
        return [
            f"{what} needs at least two distinct layers (one exit and the deepest feature) on {adapter.name}; "
            f"got {list(layers)}: {_fix(adapter)}"
        ]
    return layer_problems(adapter, layers, probe, what)


def layer_problems(adapter: ModelAdapter, layers: Sequence[str], probe: Tensor, what: str) -> list[str]:
    """Why a head cannot read `layers` of `adapter` (empty when it can): a classifier, names the model
    has, each giving a floating tensor [B, ...] of 2 to 4 dimensions on a probe batch (capture()
    copies: the model is not changed)."""
    if adapter.kind != "classifier":
        return [f"{what} puts heads on a classifier, but {adapter.name} is a {adapter.kind}: use a classifier pair"]
    unknown = [n for n in layers if n not in adapter.layer_names()]
    if unknown:
        return [f"{adapter.name} has no layer(s) {unknown} for the heads of {what}: {_fix(adapter)}"]
    try:
        feats = adapter.capture(probe, list(dict.fromkeys(layers)))
    except (ValueError, RuntimeError) as exc:
        return [f"the layers {list(layers)} of {adapter.name} gave no usable features ({exc}): {_fix(adapter)}"]
    return [
        f"layer {n!r} of {adapter.name} gives {_describe(f)}, but a head needs a floating tensor "
        f"[B, C, H, W], [B, L, D] or [B, D] with B = {probe.shape[0]}: {_fix(adapter)}"
        for n, f in feats.items()
        if not (isinstance(f, Tensor) and f.is_floating_point() and 2 <= f.dim() <= 4 and f.shape[0] == probe.shape[0])
    ]


def _fix(adapter: ModelAdapter) -> str:
    return f"name intermediate layers with params.layers (shallow -> deep), e.g. {adapter.layer_names()[:4]}"


def _describe(f: object) -> str:
    return f"a tensor of shape {tuple(f.shape)} ({f.dtype})" if isinstance(f, Tensor) else type(f).__name__


def exit_logits(adapter: ModelAdapter, heads: ExitHeads, inputs: Tensor, batch: int = 512) -> list[Tensor]:
    """Every exit's logits on `inputs`, shallow -> deep, the model's own last: K tensors [N, C], no
    grad, both modules in eval mode (their modes are restored)."""
    from kdcore.adapters.base import eval_mode

    layers = [*heads.shallow, heads.deep_layer]
    parts: list[list[Tensor]] = []
    with torch.no_grad(), eval_mode(adapter.model), eval_mode(heads):
        for i in range(0, inputs.shape[0], batch):
            logits, feats = adapter.forward_features(inputs[i : i + batch], layers)
            parts.append([*heads(feats).logits, logits])
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]
