"""A slimmable copy of a CNN of conv stages (methods/14 §14.5, PWKD's weight-sharing sub-teachers).

    net = slimmable(teacher_model, widths=(0.25, 0.5, 0.75, 1.0))
    net.set_width(0.5); logits = net(x)        # the sub-teacher of half width

The model must be a chain of conv stages ``conv1 … convK`` (each Conv2d, BatchNorm2d, ReLU, optional
MaxPool2d, as the sample CNNs), global average pooling and a Linear ``head``. At width r every
stage keeps its first c_k = max(1, ⌊r·c + ½⌋) output channels (and the sliced inputs from the stage
before); the image channels and the class outputs are never sliced. BN is switchable: each width
has its own γ, β and running statistics (Yu et al., "Slimmable Neural Networks", ICLR 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.losses.pwkd import check_widths, slim_channels
from kdcore.validation import InvalidParameterError


def conv_stages(model: nn.Module) -> list[nn.Sequential]:
    """The conv stages conv1 … convK of a stage CNN; refuses any other model, saying what it needs."""
    stages: list[nn.Sequential] = []
    while isinstance(getattr(model, f"conv{len(stages) + 1}", None), nn.Sequential):
        stages.append(getattr(model, f"conv{len(stages) + 1}"))
    ok = bool(stages) and isinstance(getattr(model, "head", None), nn.Linear)
    for st in stages:
        kinds = [type(m) for m in st]
        ok = ok and kinds[:3] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] and kinds[3:] in ([], [nn.MaxPool2d])
    if not ok:
        raise InvalidParameterError(
            f"pwkd slices the teacher into sub-networks of growing width, which needs a CNN of conv stages "
            f"conv1 … convK (Conv2d, BatchNorm2d, ReLU, optional MaxPool2d) and a Linear head, as the sample "
            f"pairs' teachers (digits, shapes). Got {type(model).__name__}: use a sample pair, or another method."
        )
    return stages


class _SlimStage(nn.Module):
    """One conv stage at the width its network set: the first c_k output channels, its own BN per width."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, widths: tuple[float, ...], pool: bool) -> None:
        super().__init__()
        self.conv = cast(nn.Conv2d, _copy(conv))
        self.bns = nn.ModuleList([_slim_bn(bn, slim_channels(conv.out_channels, r)) for r in widths])
        self.widths, self.pool, self.k = widths, pool, len(widths) - 1

    def forward(self, x: Tensor) -> Tensor:  # x: [B, c_in, H, W] (c_in: the stage before's sliced output)
        conv = self.conv
        c_out = slim_channels(conv.out_channels, self.widths[self.k])
        w = conv.weight[:c_out, : x.shape[1]]  # [c_out, c_in, 3, 3]
        b = None if conv.bias is None else conv.bias[:c_out]
        x = F.relu(self.bns[self.k](F.conv2d(x, w, b, conv.stride, conv.padding)))  # [B, c_out, H, W]
        return F.max_pool2d(x, 2) if self.pool else x


class SlimmableCNN(nn.Module):
    """Weight-sharing sub-networks of a stage CNN (see the module docstring); `set_width(r)` picks one.
    Its stages keep the names conv1 … convK (feature layers, as the original's)."""

    def __init__(self, model: nn.Module, widths: Sequence[float], copy_weights: bool = True) -> None:
        super().__init__()
        stages = conv_stages(model)
        self.widths = check_widths(widths, "slimmable")
        for i, st in enumerate(stages, start=1):
            conv, bn = cast(nn.Conv2d, st[0]), cast(nn.BatchNorm2d, st[1])
            self.add_module(f"conv{i}", _SlimStage(conv, bn, self.widths, len(st) == 4))
        self.feature_layers = tuple(f"conv{i}" for i in range(1, len(stages) + 1))
        self.cam_layer = self.feature_layers[-1]
        self.head = cast(nn.Linear, _copy(cast(nn.Module, model.head)))
        self.width = 1.0
        if not copy_weights:
            for m in self.modules():
                if m is not self and hasattr(m, "reset_parameters"):
                    m.reset_parameters()  # type: ignore[operator]

    def stages(self) -> list[_SlimStage]:
        return [cast(_SlimStage, getattr(self, name)) for name in self.feature_layers]

    def set_width(self, width: float) -> SlimmableCNN:
        if width not in self.widths:
            raise InvalidParameterError(f"set_width takes one of the widths {list(self.widths)}. Got {width!r}.")
        self.width = float(width)
        for st in self.stages():
            st.k = self.widths.index(self.width)
        return self

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C_in, H, W]
        for st in self.stages():
            x = st(x)
        h = x.mean(dim=(2, 3))  # [B, c_last]
        return F.linear(h, self.head.weight[:, : h.shape[1]], self.head.bias)  # [B, classes]


def _copy(m: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(m)


def _slim_bn(bn: nn.BatchNorm2d, c: int) -> nn.BatchNorm2d:
    """A BN of c channels holding the first c channels' γ, β and running statistics of `bn`."""
    out = nn.BatchNorm2d(c, eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(getattr(bn, name)[:c])
    return out


def slimmable(teacher_arch: nn.Module, widths: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> SlimmableCNN:
    """The slimmable copy of a stage CNN, its weights those of `teacher_arch` (sliced); the model given
    is not changed. Width 1.0 computes exactly what `teacher_arch` computes."""
    return SlimmableCNN(teacher_arch, widths, copy_weights=True)
