"""Tiny pairs with known weights for the doctor's tests (importable as 'tests.helpers.doctor_toys:...').

Classification: inputs x ~ N(0, I_8); the teacher is linear, z_t = s·W x, and each label is *sampled*
from softmax(z_t), so the teacher is calibrated by construction (its confidence is its accuracy).
Language: a bigram teacher, logits = E[previous token], with sequences sampled from it (again
calibrated, and exact). Broken variants change one thing each.
"""

import torch
from torch import nn

from kdcore.adapters import wrap
from kdcore.data.base import Dataset, SplitData
from kdcore.pairs import Pair

D, C = 8, 4
V, L = 12, 10
CALIBRATED = "tests.helpers.doctor_toys:calibrated_pair"
GAP = "tests.helpers.doctor_toys:capacity_gap_pair"


def _teacher_weights(scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return torch.randn(C, D, generator=g) * scale  # [C, D]


class _Linear(nn.Module):
    def __init__(self, weight: torch.Tensor | None = None, d: int = D, c: int = C):
        super().__init__()
        self.fc = nn.Linear(d, c, bias=False)
        if weight is not None:
            with torch.no_grad():
                self.fc.weight.copy_(weight)

    def forward(self, x):  # [B, D] -> [B, C]
        return self.fc(x)


class _MLP(nn.Module):
    def __init__(self, hidden: int = 64, seed: int = 12):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(D, hidden), nn.Linear(hidden, C)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 1.5)

    def forward(self, x):
        return self.fc2(torch.sin(2 * self.fc1(x)))  # highly non-linear in x


def _classification_data(teacher: nn.Module, *, shift: int = 0, n=(256, 256, 256)) -> Dataset:
    g = torch.Generator().manual_seed(13)

    def build():
        out = {}
        for name, size in zip(("train", "val", "test"), n):
            x = torch.randn(size, D, generator=g)  # [N, D]
            with torch.no_grad():
                p = torch.softmax(teacher(x), -1)  # [N, C]
            y = torch.multinomial(p, 1, generator=g).squeeze(1)  # labels drawn from the teacher
            out[name] = SplitData(x, (y + shift) % C)
        return out

    return Dataset("doctor-toy", "classification", build, num_classes=C)


def calibrated_pair(scale: float = 1.6, shift: int = 0) -> Pair:
    """A calibrated linear teacher (about 85 % accurate) and a linear student of the same shape."""
    teacher = _Linear(_teacher_weights(scale)).eval()
    ds = _classification_data(teacher, shift=shift)
    return Pair("calibrated", wrap(teacher, name="teacher"), wrap(_Linear(), name="student"), None, ds)


def capacity_gap_pair() -> Pair:
    """A strongly non-linear teacher and a linear student that cannot represent it."""
    teacher = _MLP().eval()
    ds = _classification_data(teacher)
    return Pair("gap", wrap(teacher, name="teacher"), wrap(_Linear(), name="student"), None, ds)


class Scaled(nn.Module):
    """A model whose logits are multiplied by `factor` (an over-confident teacher when factor > 1)."""

    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor


class Dropped(nn.Module):
    """A teacher with dropout on its input, left in train mode."""

    def __init__(self, inner: nn.Module, p: float = 0.5):
        super().__init__()
        self.drop, self.inner = nn.Dropout(p), inner

    def forward(self, x):
        return self.inner(self.drop(x))


class Rolled(nn.Module):
    """A teacher fed the batch in another order (sample i gets sample i-1's input)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.roll(x, 1, dims=0))


class Augmented(nn.Module):
    """A teacher that applies its own random augmentation (noise) to its inputs, even in eval mode."""

    def __init__(self, inner: nn.Module, sigma: float = 1.0):
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x):
        return self.inner(x + self.sigma * torch.randn_like(x))


# ---- language models ------------------------------------------------------------------------------


class Bigram(nn.Module):
    """logits[b, l] = table[ids[b, l]]: a bigram model with a fixed table [V_in, V_out]."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Embedding(table.shape[0], table.shape[1])
        with torch.no_grad():
            self.table.weight.copy_(table)

    def forward(self, ids):  # [B, L] -> [B, L, V]
        return self.table(ids)


def bigram_table(v: int = V, out: int | None = None, strength: float = 3.0) -> torch.Tensor:
    """Next token i+1 (mod v) is likely, i+2 somewhat; `out` > v pads the output with zero logits."""
    t = torch.zeros(v, out or v)
    for i in range(v):
        t[i, (i + 1) % v] = strength
        t[i, (i + 2) % v] = strength / 2
    return t


def lm_dataset(
    table: torch.Tensor, *, pad: int | None = None, mask_pad: bool = True, vocab: int = V, n=(64, 64, 64)
) -> Dataset:
    """Sequences sampled from the bigram table over the first `vocab` ids; with `pad`, the last third of
    each sequence is padding (targets -100 there when `mask_pad`)."""
    g = torch.Generator().manual_seed(17)

    def build():
        out = {}
        for name, size in zip(("train", "val", "test"), n):
            ids = torch.empty(size, L + 1, dtype=torch.long)
            ids[:, 0] = torch.randint(0, vocab, (size,), generator=g)
            for j in range(1, L + 1):
                p = torch.softmax(table[ids[:, j - 1], :vocab], -1)
                ids[:, j] = torch.multinomial(p, 1, generator=g).squeeze(1)
            x, y = ids[:, :-1].clone(), ids[:, 1:].clone()
            if pad is not None:
                x[:, -L // 3 :] = pad
                y[:, -L // 3 - 1 :] = -100 if mask_pad else pad
            out[name] = SplitData(x, y)
        return out

    return Dataset("doctor-lm", "causal_lm", build, vocab_size=table.shape[1])


def lm_student(v_out: int = V) -> nn.Module:
    torch.manual_seed(3)
    return Bigram(torch.randn(V, v_out) * 0.1)


def lm_pair() -> Pair:
    table = bigram_table()
    return Pair(
        "lm",
        wrap(Bigram(table).eval(), name="teacher", kind="causal_lm"),
        wrap(lm_student(), name="student", kind="causal_lm"),
        None,
        lm_dataset(table),
    )
