"""The data-parallel job: the runner's job with each step's batch split by rank (distributed.py runs it).

    job = DataParallelJob(config, prep, reporter, env=DistEnv(rank, world, local_rank), resume=False)

Every rank builds the same job (same seed, same data, same student). Each step takes the same global
batch of indices (config.batch_size, the order of the one-process run) and rank r trains on its
contiguous slice; the slice's micro-batches carry their share of the GLOBAL batch's units
(step_weights.py: samples, or for token-mean causal-LM objectives the kept token positions, targets
≠ -100 and attention mask, counted over the whole global batch on every rank, so without
communication). Summing the gradients over ranks gives the one-process gradient exactly (unequal
slices and unequal padding or prompt masking included), for per-sample-mean and token-mean losses
alike; a mixed objective is exact for the parts in its chosen unit (step_weights.py says which). A
slice without any unit runs one row of the batch at weight 0, so every rank reduces the same
components. The gradients and the logged loss components are summed in one all_reduce after
backward, the data-parallel step of DistributedDataParallel; it is done on the job's own parameters
(student and projectors) rather than through a DDP wrapper because the adapters run the
student through hooks on its named layers, which a wrapper would rename. Teacher outputs are computed
per slice (or read from the teacher cache by global index). Batch-relational objectives (RKD, CKA)
and BatchNorm statistics see the rank's slice, as under DDP without SyncBatchNorm.

fsdp.ShardedJob subclasses it with the student sharded by FSDP2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from kdcore.jobs.config import JobConfig
from kdcore.jobs.job import _Job
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import Reporter


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank's contiguous slice of n items: sizes differ by at most one, the first ranks larger."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class DataParallelJob(_Job):
    """The runner's job with each step's batch sharded by rank and gradients summed over ranks."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, *, env: DistEnv, resume: bool):
        self.env = env
        super().__init__(config, prep, report, resume=resume and env.main)
        self._sync_from_main(resume)

    def _sync_from_main(self, resume: bool) -> None:
        """Every rank starts from rank 0's weights (and, on resume, its optimizer state and position)."""
        for t in [*self.student.model.state_dict().values(), *self.projectors.state_dict().values()]:
            dist.broadcast(t, src=0)
        if not resume:
            return
        box: list[Any] = [
            (self.opt.state_dict(), self.step, self.epoch, self.start_epoch, self.train_time) if self.env.main else None
        ]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        opt_state, self.step, self.epoch, self.start_epoch, self.train_time = box[0]
        if not self.env.main:
            self.opt.load_state_dict(opt_state)

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _initial_metrics(self) -> dict[str, float]:
        return super()._initial_metrics() if self.env.main else {}

    def _own_rows(self, idx: Tensor) -> Tensor:
        """This rank's contiguous slice of the global batch (its micro-batches weigh their share of the
        GLOBAL batch's units: _Job._weighted)."""
        lo, hi = shard_bounds(idx.shape[0], self.env.rank, self.env.world_size)
        return idx[lo:hi]

    def _replicated_params(self) -> list[torch.nn.Parameter]:
        """The parameters every rank holds whole, whose gradients _reduce_step sums (fsdp.py: the projectors)."""
        return self.params

    def _reduce_step(self, totals: Tensor) -> Tensor:
        """Sum the gradients and the logged components over ranks, in one all_reduce; a parameter that no
        rank gave a gradient keeps none (as in one process), one that some ranks did counts zeros elsewhere."""
        params = [p for p in self._replicated_params() if p.requires_grad]
        has = torch.tensor([float(p.grad is not None) for p in params])  # [P]
        grads = [p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel()) for p in params]
        comm = self._comm_device()
        buf = torch.cat([*(g.to(comm) for g in grads), has.to(comm), totals.float().to(comm)])
        dist.all_reduce(buf)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = buf[offset : offset + n].view_as(p).to(p.device, p.dtype).clone()
            offset += n
        for p, given in zip(params, buf[offset : offset + len(params)].tolist(), strict=True):
            if given == 0:
                p.grad = None
        return buf[offset + len(params) :].to(totals.device)

    def _end_epoch(self, train_means: dict[str, float]) -> None:
        if self.env.main:  # validation, checkpoints and the store: rank 0 only
            super()._end_epoch(train_means)
        else:
            self._check_teacher_mode = True

    def summary(self) -> dict:
        return super().summary() if self.env.main else {"steps": self.step, "epochs": self.epoch}
