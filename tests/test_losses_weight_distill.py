"""Weight distillation's parameter generator (§14.2) against float64 numpy, the section's checks, the
refusals, and phase 1 / phase 2 on the digits pair (the student run with generated weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdcore.losses.weight_distill import (
    TensorGenerator,
    layer_groups,
    materialize,
    weight_distill_generator,
)
from kdcore.validation import InvalidParameterError


def _np(t):
    return t.detach().double().numpy()


def _randomise(g: TensorGenerator, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in g.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("shapes", [((6, 4, 3, 3), (4, 2, 3, 3)), ((5, 7), (3, 2)), ((8,), (5,))])
def test_generator_matches_float64_reference(shapes):
    t_shape, s_shape = shapes
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(*t_shape, generator=g) for _ in range(2)]
    gen = TensorGenerator(s_shape, ts)
    _randomise(gen, 1)
    c = _np(gen.lam) @ _np(gen.omega)
    mixed = c[0] * _np(ts[0]) + c[1] * _np(ts[1])
    if len(t_shape) == 1:
        u = mixed @ _np(gen.p_out)
    else:  # P_outᵀ T P_in at every kernel tap
        mt = mixed.reshape(*t_shape[:2], -1)
        u = np.stack([_np(gen.p_out).T @ mt[:, :, q] @ _np(gen.p_in) for q in range(mt.shape[2])], -1)
        u = u.reshape(s_shape)
    want = _np(gen.scale) * np.tanh(u) + _np(gen.shift)
    np.testing.assert_allclose(_np(gen()), want, rtol=1e-5, atol=1e-6)


def test_a_conv_tensor_is_the_2d_generator_per_tap():
    g = torch.Generator().manual_seed(2)
    ts = [torch.randn(6, 4, 3, 3, generator=g) for _ in range(2)]
    conv = TensorGenerator((4, 2, 3, 3), ts)
    _randomise(conv, 3)
    out = conv()
    for y, x in ((0, 0), (1, 2), (2, 1)):
        lin = TensorGenerator((4, 2), [t[:, :, y, x] for t in ts])
        with torch.no_grad():
            for name in ("lam", "omega", "p_out", "p_in"):  # k = 2: Λ and ω exist
                getattr(lin, name).copy_(getattr(conv, name))
            lin.scale.copy_(conv.scale[:, :, y, x])
            lin.shift.copy_(conv.shift[:, :, y, x])
        torch.testing.assert_close(out[:, :, y, x], lin())


def test_identities_of_the_section():
    g = torch.Generator().manual_seed(4)
    t = torch.randn(5, 3, 3, 3, generator=g)
    plain = TensorGenerator((5, 3, 3, 3), [t])  # teacher's shape, k = 1: no projections
    assert plain.p_out is None and plain.p_in is None
    torch.testing.assert_close(plain(), torch.tanh(t))
    small = TensorGenerator((4, 2, 3, 3), [t])  # k = 1, identity (truncated) projections
    assert small.lam is None and small.omega is None  # one tensor: c = 1
    with torch.no_grad():
        small.p_out.copy_(torch.eye(5, 4))
        small.p_in.copy_(torch.eye(3, 2))
    torch.testing.assert_close(small(), torch.tanh(t[:4, :2]))
    ts = [torch.randn(5, 3, generator=g) for _ in range(3)]
    mean = TensorGenerator((5, 3), ts)  # Λ = I, ω = 1/k (init), identity projections: tanh(mean_j T_j)
    with torch.no_grad():
        mean.lam.copy_(torch.eye(3))
        mean.p_out.copy_(torch.eye(5))
        mean.p_in.copy_(torch.eye(3))
    torch.testing.assert_close(mean(), torch.tanh(torch.stack(ts).mean(0)))
    assert mean.omega.tolist() == pytest.approx([1 / 3] * 3)


def test_layer_groups_and_refusals():
    assert layer_groups(2, 4) == [[0, 1], [2, 3]] and layer_groups(3, 3) == [[0], [1], [2]]
    with pytest.raises(InvalidParameterError, match="multiple of the student's"):
        layer_groups(2, 3)
    t = {"a": torch.randn(4, 2, 3, 3), "b": torch.randn(4, 4, 3, 3), "c": torch.randn(4, 2, 5, 5)}
    bad = [
        ({"s": ["a", "b"]}, "mixed shapes"),
        ({"s": ["c"]}, "kernel size"),
        ({"s": []}, "empty"),
        ({"s": ["z"]}, "no tensor 'z'"),
        ({"q": ["a"]}, "student has no tensor 'q'"),
    ]
    for groups, match in bad:
        with pytest.raises(InvalidParameterError, match=match):
            weight_distill_generator({"s": (2, 2, 3, 3)}, t, groups)


def test_phase_one_runs_the_digits_student_on_generated_weights_and_phase_two_materialises():
    from torch.func import functional_call

    from sample_models import load_pair

    pair = load_pair("digits")
    teacher, student = pair.teacher.model, pair.student.model
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    groups = {n: [n] for n in s_params}  # stage i <- teacher stage i (k = 1), the head <- the head
    gen = weight_distill_generator({n: p.shape for n, p in s_params.items()}, t_params, groups)
    x, y = pair.dataset.split("train").inputs[:16], pair.dataset.split("train").targets[:16]
    student.train()
    weights = {**gen(), **dict(student.named_buffers())}
    logits = functional_call(student, weights, (x,))
    F.cross_entropy(logits, y, label_smoothing=0.1).backward()
    grads = [p.grad for p in gen.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen
    state = materialize(gen)
    assert set(state) == set(s_params) and all(state[n].shape == s_params[n].shape for n in state)
    clone = type(student)()
    clone.load_state_dict({**state, **dict(student.named_buffers())})
    clone.eval()
    torch.testing.assert_close(clone(x), functional_call(student.eval(), weights, (x,)))
