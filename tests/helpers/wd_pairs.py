"""A pair whose grouping fits §14.2's stride rule (k = 2): an MLP teacher of four equal 4→4 layers and a
student of two narrower ones, importable as 'tests.helpers.wd_pairs:deep_mlp_pair'."""

import torch
from torch import nn

from kdcore.adapters import wrap
from kdcore.data.base import Dataset, SplitData
from kdcore.pairs import Pair

DEEP_MLP = "tests.helpers.wd_pairs:deep_mlp_pair"


class _Deep(nn.Module):
    def __init__(self, widths: list[int], n_out: int = 3):
        super().__init__()
        for i, (a, b) in enumerate(zip(widths, widths[1:]), start=1):
            self.add_module(f"fc{i}", nn.Linear(a, b))
        self.head = nn.Linear(widths[-1], n_out)
        self._n = len(widths) - 1

    def forward(self, x):  # [B, 4] -> [B, 3]
        for i in range(1, self._n + 1):
            x = torch.relu(getattr(self, f"fc{i}")(x))
        return self.head(x)


def deep_mlp_pair() -> Pair:
    """Teacher fc1..fc4 (4→4 each), head; student fc1 (4→2), fc2 (2→2), head; labels from the inputs' signs."""
    g = torch.Generator().manual_seed(5)

    def build():
        out = {}
        for name, n in (("train", 96), ("val", 48), ("test", 48)):
            x = torch.randn(n, 4, generator=g)  # [N, 4]
            y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # [N] in {0, 1, 2}
            out[name] = SplitData(x, y)
        return out

    torch.manual_seed(4)
    ds = Dataset("deepmlp", "classification", build, num_classes=3)
    return Pair("deepmlp", wrap(_Deep([4, 4, 4, 4, 4]), name="t"), wrap(_Deep([4, 2, 2]), name="s"), None, ds)
