"""`--shard full`: the data-parallel job (data_parallel.py) with the student sharded by FSDP2.

    torchrun --standalone --nproc-per-node 2 -m kdcore distill --teacher T --student S --data D --shard full

What is sharded: the Hugging Face student's parameters, gradients and optimizer state.
`torch.distributed.fsdp.fully_shard` is applied to each transformer layer (the model's own
`_no_split_modules` classes, e.g. LlamaDecoderLayer) and then to the root (embeddings, final norm,
output head: tied input/output embeddings stay one parameter, in the root's unit). The optimizer is
built after sharding. Each step's batch is split by rank exactly as in data_parallel.py (each slice's
loss carries its share of the global batch's units: samples or kept tokens, step_weights.py); FSDP reduce-scatters the gradients as a SUM (divide
factor 1, plain sum collectives, which gloo runs too), so a step is one process's step on the same
global batch. Learned projectors stay whole on every rank and are all-reduced as in data_parallel.py.

What is not sharded: the teacher (every rank holds it, in eval mode, under no_grad: it builds no
gradients or optimizer state, the memory FSDP saves); the chunked token objective (lm_chunked) is not
used, since it calls the student's head outside its forward, so the job takes the full logits.

Validation, probes and everything written to the store run on rank 0 on a whole copy of the student:
at each epoch end the full weights are gathered (get_model_state_dict, full_state_dict, cpu_offload)
into it, and, when the resume state is due, the optimizer state too (each sharded tensor gathered
whole), in one process's layout. So checkpoints, the final student and the resume state are full
tensors: the run resumes with any number of processes (one included) and the saved student loads
into the Hugging Face model (kdcore.adapters.load_hf, from_pretrained + load_state_dict).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from kdcore.adapters.base import ModelAdapter
from kdcore.jobs.config import JobConfig
from kdcore.jobs.data_parallel import DataParallelJob, DistEnv
from kdcore.jobs.perf_options import SHARD_NEEDS_PROCESSES
from kdcore.jobs.prepare import PreparedRun
from kdcore.jobs.reporting import Reporter
from kdcore.jobs.resume_state import make_optimizer


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The model's transformer layers: its submodules of the classes in `_no_split_modules` (Hugging Face)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if m is not model and type(m).__name__ in names]


def check_shardable(student: ModelAdapter, world: int) -> None:
    """Refuse a student FSDP cannot shard by layers, and a job of one process."""
    if world < 2:
        raise ValueError(SHARD_NEEDS_PROCESSES)
    if not transformer_layers(student.model):
        raise ValueError(
            f"'shard: full' shards a Hugging Face student's transformer layers, but the student {student.name} "
            f"({type(student.model).__name__}) names none (no _no_split_modules). Use --shard none."
        )


def shard_student(model: nn.Module, mesh: DeviceMesh) -> int:
    """fully_shard each transformer layer, then the root, gradients reduced as a plain sum; the number of layers."""
    layers = transformer_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)  # the slices' losses already carry their shares: sum, not mean
            m.set_force_sum_reduction_for_comms(True)  # SUM collectives (gloo has no PREMUL_SUM)
    return len(layers)


def full_model_state(model: nn.Module) -> dict[str, Any]:
    """The whole state dict on rank 0's CPU ({} elsewhere); every rank must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(opt: torch.optim.Optimizer, main: bool) -> dict:
    """The optimizer's state dict in one process's layout (index keys, whole tensors on CPU) on the main
    rank ({} elsewhere); each sharded tensor is gathered whole, so every rank must call it."""
    sd = opt.state_dict()
    state: dict[Any, dict] = {}
    for pid, values in sd["state"].items():  # the same order on every rank
        state[pid] = {k: v.full_tensor().cpu() if isinstance(v, DTensor) else v for k, v in values.items()}
    return {"state": state, "param_groups": sd["param_groups"]} if main else {}


def load_full_optimizer_state(opt: torch.optim.Optimizer, full: dict) -> None:
    """Load one process's optimizer state dict (the same on every rank) into an optimizer over sharded
    parameters: each tensor shaped like its sharded parameter is sharded like it."""
    opt.load_state_dict(full)
    for group in opt.param_groups:
        for p in group["params"]:
            if not isinstance(p, DTensor):
                continue
            state = opt.state.get(p, {})
            for k, v in list(state.items()):
                if isinstance(v, Tensor) and not isinstance(v, DTensor) and v.shape == p.shape:
                    state[k] = distribute_tensor(v.to(p.device), p.device_mesh, p.placements)


class ShardedJob(DataParallelJob):
    """The data-parallel job with the student's parameters, gradients and optimizer state sharded (FSDP2)."""

    def __init__(self, config: JobConfig, prep: PreparedRun, report: Reporter, *, env: DistEnv, resume: bool):
        super().__init__(config, prep, report, env=env, resume=resume)  # whole, rank 0's weights (and resume state)
        full_opt = self.opt.state_dict() if resume else None
        self.whole = self.student.clone(reinit=False) if env.main else None  # rank 0: validation and saving
        self._resume_now = False
        self._full_opt: dict = {}
        mesh = init_device_mesh(self.device.type, (env.world_size,))
        shard_student(self.student.model, mesh)
        self.params = list(self.student.model.parameters()) + list(self.projectors.parameters())
        self.opt = make_optimizer(config, self._param_groups())
        if full_opt is not None:
            load_full_optimizer_state(self.opt, full_opt)

    def _use_chunked(self) -> bool:
        return False  # the chunked objective calls the student's head outside its forward (see the module doc)

    def _replicated_params(self) -> list[nn.Parameter]:
        return [p for p in self.params if not isinstance(p, DTensor)]  # the projectors

    def _clip_gradients(self, max_norm: float) -> None:
        """clip_grad_norm_ over sharded and whole gradients: the same total 2-norm and scale as one process."""
        grads = [p.grad for p in self.params if p.grad is not None]
        sharded = [g for g in grads if isinstance(g, DTensor)]
        whole = [g for g in grads if not isinstance(g, DTensor)]
        sq = 0.0
        if sharded:
            norm: Any = torch.nn.utils.get_total_norm(sharded)  # a replicated DTensor
            sq += float(norm.full_tensor()) ** 2
        if whole:
            sq += float(torch.nn.utils.get_total_norm(whole)) ** 2
        coef = min(1.0, max_norm / (sq**0.5 + 1e-6))  # clip_grad_norm_'s
        for g in grads:
            g.mul_(coef)

    def _end_epoch(self, train_means: dict[str, float]) -> None:
        """Every rank: gather the full weights (and optimizer state when the resume state is due) to rank 0,
        which validates, checkpoints and writes on its whole copy of the student."""
        last = self.step >= self.total_steps or self.epoch == self.cfg.epochs
        due = [self.env.main and self.store is not None and super()._resume_due(last)]
        dist.broadcast_object_list(due, src=0, device=self._comm_device())
        self._resume_now = bool(due[0])
        weights = full_model_state(self.student.model)
        self._full_opt = full_optimizer_state(self.opt, self.env.main) if self._resume_now else {}
        if self.whole is None:
            self._check_teacher_mode = True
            return
        self.whole.model.load_state_dict(weights)
        sharded, self.student = self.student, self.whole
        try:
            super()._end_epoch(train_means)
        finally:
            self.student = sharded
            self._full_opt = {}

    def _resume_due(self, last: bool) -> bool:
        return self._resume_now

    def _optimizer_state(self) -> dict:
        return self._full_opt
