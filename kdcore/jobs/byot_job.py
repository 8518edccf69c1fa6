"""A Be Your Own Teacher run (methods/13 §13.4b): the runner's job with auxiliary exits on the student.

The exits (kdcore.exits.ExitHeads) are the job's learned parts (its `projectors`), so the optimizer,
the resume state and the seeds treat them like FitNets' projectors; the student is the job's own
clone, so the pair's model is never changed. Each epoch records every exit's validation accuracy,
`val_acc_exit1` (shallowest) … `val_acc_exit{K}` (the student's own head, = val_acc), and
`val_acc_exit_mean`, the accuracy of the mean of the exits' logits (the paper's ensemble).
"""

from __future__ import annotations

import torch
from torch import nn

from kdcore.exits import EXITS_KEY, ExitHeads, exit_logits
from kdcore.jobs.job import _SEED_MOD, _Job
from kdcore.metrics import accuracy


class ByotJob(_Job):
    """The runner's job; its learned parts are the exits, and its validation scores each exit."""

    def _build_projectors(self) -> nn.ModuleDict:
        params = self.terms[0].params
        with torch.no_grad():
            _, feats = self.student.forward_features(self.train_x[:2], self.s_layers)  # {layer: [2, ...]}
        torch.manual_seed((self.cfg.seed + 1) % _SEED_MOD)
        heads = ExitHeads.build(feats, self.s_layers, self.student.output_size, params["width"])
        return nn.ModuleDict({EXITS_KEY: heads}).to(self.device)

    def _evaluate(self) -> dict[str, float]:
        values = super()._evaluate()
        self.projectors.eval()
        heads = self.projectors[EXITS_KEY]
        assert isinstance(heads, ExitHeads)
        per_exit = exit_logits(self.student, heads, self.val_x)  # K × [N, C]
        for k, z in enumerate(per_exit, start=1):
            values[f"val_acc_exit{k}"] = accuracy(z, self.val_y)
        values["val_acc_exit_mean"] = accuracy(torch.stack(per_exit).mean(dim=0), self.val_y)
        return values
