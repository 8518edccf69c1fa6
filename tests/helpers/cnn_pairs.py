"""A tiny ResNet-style CNN pair whose student is a shallower copy of its teacher (stages of same-class
residual blocks, BatchNorm), for layer-subset initialisation (METHODS §14.2) of registered/module pairs:
importable as 'tests.helpers.cnn_pairs:cnn_pair' (teacher stages 3, 4 blocks; student 2, 2),
'...:cnn_pair_odd' (student 1, 3) and '...:cnn_wide_pair' (student widths differ: not a shallower copy).
"""

import torch
from torch import nn

from kdcore.adapters import wrap
from kdcore.data.base import Dataset, SplitData
from kdcore.pairs import Pair

CNN = "tests.helpers.cnn_pairs:cnn_pair"
CNN_ODD = "tests.helpers.cnn_pairs:cnn_pair_odd"
CNN_WIDE = "tests.helpers.cnn_pairs:cnn_wide_pair"
TEACHER_DEPTHS = (3, 4)


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut; the first block of a stage may stride and project."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    def __init__(self, depths=(3, 4), widths=(4, 8), classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        c = widths[0]
        for s, (d, w) in enumerate(zip(depths, widths)):
            blocks = [Block(c, w, 1 if s == 0 else 2)] + [Block(w, w) for _ in range(d - 1)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            c = w
        self.fc = nn.Linear(c, classes)

    def forward(self, x):  # [B, 1, 8, 8] -> [B, classes]
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and random BatchNorm running statistics, so every copied tensor is distinct."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 100, (1,), generator=g)))
            elif key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g))
    return model.eval()


def _shapes_dataset() -> Dataset:
    """1×8×8 noise images; the class (0..3) is the quadrant with the largest mean. 96/48/48 samples."""
    g = torch.Generator().manual_seed(7)

    def build():
        out = {}
        for name, n in (("train", 96), ("val", 48), ("test", 48)):
            x = torch.randn(n, 1, 8, 8, generator=g)  # [N, 1, 8, 8]
            quads = torch.stack([x[:, 0, :4, :4], x[:, 0, :4, 4:], x[:, 0, 4:, :4], x[:, 0, 4:, 4:]], 1)  # [N, 4, 4, 4]
            out[name] = SplitData(x, quads.mean((2, 3)).argmax(1))
        return out

    return Dataset("cnn-quadrants", "classification", build, num_classes=4)


def _pair(name: str, student_depths: tuple[int, int], student_widths: tuple[int, int] = (4, 8)) -> Pair:
    teacher = randomise(TinyResNet(TEACHER_DEPTHS, classes=4), 11)
    student = randomise(TinyResNet(student_depths, widths=student_widths, classes=4), 12)
    layers = ["layer1", "layer2"]
    return Pair(
        name,
        wrap(teacher, name="cnn-teacher", layers=layers),
        wrap(student, name=f"cnn-student{list(student_depths)}", layers=layers),
        None,
        _shapes_dataset(),
    )


def cnn_pair() -> Pair:
    """Teacher stages of 3 and 4 blocks, student of 2 and 2 (spread: layer1 ← [0, 2], layer2 ← [0, 3])."""
    return _pair("cnn", (2, 2))


def cnn_pair_odd() -> Pair:
    """Student stages of 1 and 3 blocks (spread: layer1 ← [0], layer2 ← [0, 2, 3]: 1.5 rounds to 2)."""
    return _pair("cnn-odd", (1, 3))


def cnn_wide_pair() -> Pair:
    """Student of 2 and 2 blocks with other widths: not a shallower copy of the teacher."""
    return _pair("cnn-wide", (2, 2), student_widths=(4, 6))
