"""Weight distillation's parameter generator (methods/14-feature-and-weight.md §14.2).

Lin, Li, Wang, Li, Du, Xiao, Zhu, "Weight Distillation: Transferring the Knowledge in Neural Network
Parameters", ACL 2021, arXiv 2009.09152; code github.com/Lollipop321/weight-distillation
(`fairseq/modules/wd_v52_linear.py`). Each student tensor is generated from its group of frozen
teacher tensors T_j (j ∈ G_i, k = |G_i|):

    c   = Λ ω                                   Λ ∈ R^{k×k} (Xavier-normal), ω = 1/k
    U   = Σ_j c_j · P_outᵀ T_j P_in              P_out ∈ R^{O_t×O_s}, P_in ∈ R^{I_t×I_s}, per kernel tap
    W_s = A ⊙ tanh(U) + B                        A = 1, B = 0 at init
    b_s = a ⊙ tanh((Σ_j c'_j b_j) Q_out) + d     1-D tensors (biases, norm scales and shifts)

A group of one tensor (k = 1) has c = 1 (no Λ, ω); a tensor of the teacher's shape with k = 1 is
generated without projections: A ⊙ tanh(T) + B.
`weight_distill_generator(student_shapes, teacher_params, groups)` builds the generator (phase 1:
run the student with its output, e.g. torch.func.functional_call); `materialize(generator)` gives
the student's weights once (phase 2 trains the plain student from them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from kdcore.validation import InvalidParameterError

WHERE = "weight_distill_generator"


def layer_groups(student_layers: int, teacher_layers: int) -> list[list[int]]:
    """G_i = {k·i, …, k·i + k − 1}, k = L_t / L_s; raises when L_t is not a multiple of L_s (the
    authors' int(L_t/L_s) would silently drop the last teacher layers)."""
    for name, v in (("student_layers", student_layers), ("teacher_layers", teacher_layers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidParameterError(f"The '{name}' parameter of layer_groups must be an integer >= 1. Got {v!r}.")
    if teacher_layers % student_layers:
        raise InvalidParameterError(
            f"layer_groups needs a teacher layer count that is a multiple of the student's: got {teacher_layers} "
            f"teacher and {student_layers} student layers. Choose a student depth dividing {teacher_layers}, or "
            f"pass explicit groups."
        )
    k = teacher_layers // student_layers
    return [list(range(k * i, k * i + k)) for i in range(student_layers)]


class TensorGenerator(nn.Module):
    """The generator of one student tensor from its group's frozen teacher tensors (see the module doc)."""

    teachers: Tensor  # [k, O_t, (I_t, kh, kw)] buffer

    def __init__(self, student_shape: Sequence[int], teachers: Sequence[Tensor]) -> None:
        super().__init__()
        stack = torch.stack([t.detach().float().clone() for t in teachers])  # [k, O_t, (I_t, kh, kw)]
        self.register_buffer("teachers", stack)  # frozen: a buffer, never trained
        k, shape = stack.shape[0], tuple(int(d) for d in student_shape)
        self.shape = shape
        # k = 1: c = 1 (no Λ, ω), so k = 1 with identity projections gives tanh(T) as §14.2 checks
        self.lam = nn.Parameter(nn.init.xavier_normal_(torch.empty(k, k))) if k > 1 else None
        self.omega = nn.Parameter(torch.full((k,), 1.0 / k)) if k > 1 else None
        self.plain = k == 1 and tuple(stack.shape[1:]) == shape  # no projections
        o_t = stack.shape[1]
        self.p_out = None if self.plain else nn.Parameter(nn.init.xavier_normal_(torch.empty(o_t, shape[0])))
        self.p_in = None
        if not self.plain and stack.dim() >= 3:
            self.p_in = nn.Parameter(nn.init.xavier_normal_(torch.empty(stack.shape[2], shape[1])))
        self.scale = nn.Parameter(torch.ones(shape))  # A (a)
        self.shift = nn.Parameter(torch.zeros(shape))  # B (d)

    def mix(self) -> Tensor:
        """c = Λ ω: the weight of each teacher tensor of the group, [k]."""
        if self.lam is None or self.omega is None:
            return torch.ones(1, device=self.teachers.device)
        return self.lam @ self.omega

    def forward(self) -> Tensor:
        t = torch.einsum("j,j...->...", self.mix(), self.teachers)  # Σ_j c_j T_j  [O_t, (I_t, kh, kw)]
        if self.p_out is not None:
            if t.dim() == 1:
                t = t @ self.p_out  # (Σ c'_j b_j) Q_out  [O_s]
            else:  # P_outᵀ T P_in per kernel tap: [O_s, I_s, (kh, kw)]
                t = torch.einsum("oa,oi...,ib->ab...", self.p_out, t, self.p_in)
        return self.scale * torch.tanh(t) + self.shift


class WeightGenerator(nn.Module):
    """One TensorGenerator per generated student tensor; forward() -> {student tensor name: tensor}."""

    def __init__(self, gens: Mapping[str, TensorGenerator]) -> None:
        super().__init__()
        self.names = list(gens)
        self.gens = nn.ModuleDict({n.replace(".", "__"): g for n, g in gens.items()})

    def forward(self) -> dict[str, Tensor]:
        return {n: self.gens[n.replace(".", "__")]() for n in self.names}

    def generator(self, name: str) -> TensorGenerator:
        """The TensorGenerator of one student tensor."""
        return cast(TensorGenerator, self.gens[name.replace(".", "__")])

    @torch.no_grad()
    def mix(self) -> dict[str, list[float]]:
        """c = Λω of every generated tensor (what the view shows)."""
        return {n: self.generator(n).mix().tolist() for n in self.names}


def weight_distill_generator(
    student_shapes: Mapping[str, Sequence[int]],
    teacher_params: Mapping[str, Tensor],
    groups: Mapping[str, Sequence[str]],
) -> WeightGenerator:
    """The generator of §14.2: `groups` maps each generated student tensor name to its teacher tensor
    names (one group); `student_shapes` gives each student tensor's shape."""
    gens = {}
    for name, members in groups.items():
        if name not in student_shapes:
            raise InvalidParameterError(f"{WHERE}: the student has no tensor {name!r} (it has {list(student_shapes)}).")
        if not members:
            raise InvalidParameterError(f"{WHERE}: the group of {name!r} is empty: name its teacher tensors.")
        missing = [m for m in members if m not in teacher_params]
        if missing:
            raise InvalidParameterError(f"{WHERE}: the teacher has no tensor {missing[0]!r} (group of {name!r}).")
        ts = [teacher_params[m] for m in members]
        _check_group(name, tuple(student_shapes[name]), ts, list(members))
        gens[name] = TensorGenerator(student_shapes[name], ts)
    return WeightGenerator(gens)


def _check_group(name: str, shape: tuple, ts: list[Tensor], members: list[str]) -> None:
    shapes = {tuple(t.shape) for t in ts}
    if len(shapes) != 1:
        raise InvalidParameterError(
            f"{WHERE}: the teacher tensors of {name!r} ({members}) have mixed shapes {sorted(shapes)}; a group "
            f"needs one shape (a width-changing conv forms its own group)."
        )
    t_shape = shapes.pop()
    if len(t_shape) != len(shape) or t_shape[2:] != shape[2:]:
        raise InvalidParameterError(
            f"{WHERE}: student tensor {name!r} of shape {shape} cannot come from teacher tensors of shape "
            f"{t_shape}: the number of dimensions and the kernel size must match."
        )


@torch.no_grad()
def materialize(generator: WeightGenerator) -> dict[str, Tensor]:
    """The generated student tensors, computed once and detached (phase 2 starts from them)."""
    if not isinstance(generator, WeightGenerator):
        raise InvalidParameterError(f"materialize takes a WeightGenerator. Got {type(generator).__name__}.")
    return {k: v.detach().clone() for k, v in generator().items()}
