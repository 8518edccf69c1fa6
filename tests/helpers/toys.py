"""Tiny pairs for the job, CLI and worker tests, importable by worker processes as
'tests.helpers.toys:toy_pair' (tests/test_jobs_toy.py checks they are what the tests assume)."""

import torch
from torch import nn

from kdcore.adapters import wrap
from kdcore.data.base import Dataset, SplitData
from kdcore.pairs import Pair

TOY = "tests.helpers.toys:toy_pair"
TOY_CONV = "tests.helpers.toys:toy_conv_pair"
TOY_LM = "tests.helpers.toys:toy_lm_pair"


class _MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, n_out: int):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):  # [B, F] -> [B, C]
        return self.head(self.act(self.fc2(self.act(self.fc1(x)))))


def _toy_dataset(
    seed: int = 0, n_train: int = 256, n_val: int = 128, d: int = 8, c: int = 3
) -> tuple[Dataset, nn.Module]:
    g = torch.Generator().manual_seed(seed)
    teacher = _MLP(d, 32, c)
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.8)
    teacher.eval()

    def build():
        out = {}
        for name, n in (("train", n_train), ("val", n_val), ("test", n_val)):
            x = torch.randn(n, d, generator=g)  # [N, F]
            with torch.no_grad():
                y = teacher(x).argmax(-1)  # [N]
            flip = torch.rand(n, generator=g) < 0.1  # 10 % label noise
            y = torch.where(flip, torch.randint(0, c, (n,), generator=g), y)
            out[name] = SplitData(x, y)
        return out

    return Dataset("toy", "classification", build, num_classes=c, class_names=[f"c{i}" for i in range(c)]), teacher


def toy_pair() -> Pair:
    """An MLP teacher (the labelling function, 10 % noise) and a smaller MLP student on 8-d Gaussian inputs."""
    ds, teacher = _toy_dataset()
    torch.manual_seed(1)
    student = _MLP(8, 8, 3)
    return Pair(
        "toy",
        wrap(teacher, name="toy-teacher", layers=["fc1", "fc2"]),
        wrap(student, name="toy-student", layers=["fc1", "fc2"]),
        None,
        ds,
    )


class _Conv(nn.Module):
    def __init__(self, width: int, c: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, c)

    def forward(self, x):  # [B, 1, 8, 8] -> [B, C]
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.mean((2, 3)))


def toy_conv_pair() -> Pair:
    g = torch.Generator().manual_seed(3)

    def build():
        out = {}
        for name, n in (("train", 96), ("val", 48), ("test", 48)):
            x = torch.randn(n, 1, 8, 8, generator=g)
            y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, :, :4].mean((1, 2)) > 0).long()
            out[name] = SplitData(x, y)
        return out

    torch.manual_seed(2)
    ds = Dataset("toyconv", "classification", build, num_classes=3)
    return Pair("toyconv", wrap(_Conv(8), name="t"), wrap(_Conv(4), name="s"), None, ds)


class _TinyLM(nn.Module):
    def __init__(self, vocab: int, d: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab)

    def forward_with_attentions(self, ids):  # [B, L] -> ([B, L, V], [[B, 1, L, L]])
        h = self.emb(ids)  # [B, L, D]
        L = ids.shape[1]
        scores = h @ h.transpose(1, 2) / h.shape[-1] ** 0.5  # [B, L, L]
        causal = torch.ones(L, L, dtype=torch.bool, device=ids.device).tril()
        att = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        h = att @ h
        return self.head(torch.tanh(self.mix(h))), [att[:, None]]

    def forward(self, ids):  # [B, L] -> [B, L, V]
        return self.forward_with_attentions(ids)[0]


def toy_lm_pair() -> Pair:
    g = torch.Generator().manual_seed(5)
    V, L = 11, 6

    def build():
        out = {}
        for name, n in (("train", 64), ("val", 32), ("test", 32)):
            ids = torch.randint(0, V, (n, L + 1), generator=g)
            ids[:, 1::2] = (ids[:, 0::2][:, : ids[:, 1::2].shape[1]] + 1) % V  # learnable: next = prev + 1
            x, y = ids[:, :-1].clone(), ids[:, 1:].clone()
            y[:, 0] = -100
            out[name] = SplitData(x, y)
        return out

    torch.manual_seed(4)
    ds = Dataset("toylm", "causal_lm", build, vocab_size=V)
    return Pair(
        "toylm",
        wrap(_TinyLM(V, 16), name="t", kind="causal_lm"),
        wrap(_TinyLM(V, 8), name="s", kind="causal_lm"),
        None,
        ds,
    )
