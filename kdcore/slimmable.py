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


class SlimmableCNN(nn.Module):
    """Weight-sharing sub-networks of a stage CNN (see the module docstring); `set_width(r)` picks one."""

    def __init__(self, model: nn.Module, widths: Sequence[float], copy_weights: bool = True) -> None:
        super().__init__()
        stages = conv_stages(model)
        self.widths = check_widths(widths, "slimmable")
        convs = [cast(nn.Conv2d, st[0]) for st in stages]
        self.convs = nn.ModuleList([_copy(c) for c in convs])
        self.pools = [len(st) == 4 for st in stages]
        self.bns = nn.ModuleList(
            [
                nn.ModuleList(
                    [_slim_bn(cast(nn.BatchNorm2d, st[1]), slim_channels(c.out_channels, r)) for r in self.widths]
                )
                for st, c in zip(stages, convs)
            ]
        )
        self.head = cast(nn.Linear, _copy(cast(nn.Module, model.head)))
        self.width = 1.0
        if not copy_weights:
            for m in self.modules():
                if m is not self and hasattr(m, "reset_parameters"):
                    m.reset_parameters()  # type: ignore[operator]

    def set_width(self, width: float) -> SlimmableCNN:
        if width not in self.widths:
            raise InvalidParameterError(f"set_width takes one of the widths {list(self.widths)}. Got {width!r}.")
        self.width = float(width)
        return self

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C_in, H, W]
        k = self.widths.index(self.width)
        for module, bns, pool in zip(self.convs, self.bns, self.pools):
            conv = cast(nn.Conv2d, module)
            c_out = slim_channels(conv.out_channels, self.width)
            w = conv.weight[:c_out, : x.shape[1]]  # [c_out, c_in, 3, 3]: inputs from the sliced stage before
            b = None if conv.bias is None else conv.bias[:c_out]
            bn = cast(nn.ModuleList, bns)[k]
            x = F.relu(bn(F.conv2d(x, w, b, conv.stride, conv.padding)))  # [B, c_out, H, W]
            x = F.max_pool2d(x, 2) if pool else x
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
